#!/bin/sh
# python314-chroot.sh DIR -- build (once) a minimal Debian sid chroot in DIR
# holding CPython 3.14 (ssl, zlib, ctypes), to check that the single-file
# .pyz runs on 3.14 on a bookworm host.  Needs root and Debian's archive
# (debootstrap's default mirror, or the one in $MIRROR).
# Idempotent: does nothing when DIR already has a working python3.14.
# Nothing is left mounted.  Use it as:
#   cp build/wireleap-relay_linux-amd64 DIR/tmp/ && chroot DIR python3.14 /tmp/wireleap-relay_linux-amd64
# No mount is needed for that: os.urandom/ssl use getrandom(2) and
# os.cpu_count() falls back to sched_getaffinity(2).  The chroot shares the
# host network namespace, so a server inside bound to 127.0.0.1 is reachable
# from outside.  Code that reads /proc (e.g. /proc/self/fd) needs it mounted:
#   unshare -m sh -c 'mount -t proc proc DIR/proc && exec chroot DIR ...'
# (unshare -m: the mount goes away with the process, no cleanup needed).
set -eu
die() { echo "python314-chroot: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 DIR"
[ "$(id -u)" -eq 0 ] || die "must run as root"
DIR=$(realpath -m "$1"); PY=$DIR/usr/bin/python3.14
[ "$DIR" != / ] || die "refusing DIR=/"
check() { chroot "$DIR" /usr/bin/python3.14 -c 'import ssl, zlib, ctypes, socket' 2>/dev/null; }
if [ -x "$PY" ] && check; then echo "$PY"; exit 0; fi
if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
  findmnt -rno TARGET | grep -q "^$DIR/" && die "$DIR has mounts below it; unmount them first"
  [ -d "$DIR/debootstrap" ] || die "$DIR is not empty and has no working python3.14; remove it"
  rm -rf --one-file-system "$DIR"   # leftover of an interrupted debootstrap
fi
if ! command -v debootstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq debootstrap >/dev/null 2>&1; } ||
    die "cannot install debootstrap"
fi
# debootstrap checks the gpg signature but not Release's Valid-Until.
LOG=$(mktemp); trap 'rm -f "$LOG"' EXIT
debootstrap --variant=minbase --include=python3.14 \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  sid "$DIR" ${MIRROR:-} >"$LOG" 2>&1 ||
  die "debootstrap failed: $(grep -E '^[EW]:' "$LOG" | tail -1 | grep . || tail -1 "$LOG")"
# for any later apt-get inside: sid snapshots on mirrors may carry an expired Release
echo 'Acquire::Check-Valid-Until "false";' >"$DIR/etc/apt/apt.conf.d/99no-check-valid-until"
rm -rf "$DIR"/var/cache/apt/archives/*.deb "$DIR"/var/lib/apt/lists/*_Packages
check || die "$PY was installed but does not import ssl/zlib/ctypes"
echo "$PY"
