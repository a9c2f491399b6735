#!/usr/bin/env bash
# Builds the single-file relay with shiv: OUTDIR/wireleap-relay_linux-amd64 (an executable
# zipapp) and its .hash in `sha512sum` format, so `sha512sum -c` accepts it.
set -euo pipefail
OUTDIR=${1:-build}
cd "$(dirname "$0")/.."
PY=.venv/bin/python
NAME=wireleap-relay_linux-amd64
VERSION=$($PY -c 'from wireleap_relay.version import git_version, BASE_VERSION; print(git_version(".") or BASE_VERSION)')
UPGRADE=${WIRELEAP_UPGRADE_SUPPORT:-False}

# Bake the version into the artifact: a .pyz cannot ask git at run time.
printf 'VERSION = "%s"\nUPGRADE_SUPPORT = %s\n' "$VERSION" "$UPGRADE" > wireleap_relay/_build.py
trap 'rm -f wireleap_relay/_build.py' EXIT

mkdir -p "$OUTDIR"
rm -f "$OUTDIR/$NAME" "$OUTDIR/$NAME.hash"
$PY -m shiv --quiet -p '/usr/bin/env python3' -e wireleap_relay.__main__:main \
    --reproducible -o "$OUTDIR/$NAME" . >/dev/null
chmod 0755 "$OUTDIR/$NAME"
(cd "$OUTDIR" && sha512sum "$NAME" > "$NAME.hash")
echo "built $OUTDIR/$NAME version $VERSION"
