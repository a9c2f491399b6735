#!/usr/bin/env bash
# Builds the single-file relay: OUTDIR/wireleap-relay_linux-amd64 (an executable zipapp for
# CPython 3.10-3.14, see contrib/singlefile.py) and its .hash in `sha512sum` format, so
# `sha512sum -c` accepts it. Two builds of one commit give the same bytes.
#
# Settings baked into the binary (wireleap_relay/_build.py), taken from the environment:
#   WIRELEAP_VERSION          the version; default: from git (wireleap_relay/version.py)
#   WIRELEAP_UPGRADE_SUPPORT  True: the binary may upgrade itself (release builds, see
#                             contrib/release.sh); default False, like `make build`
# With upgrade support also:
#   WIRELEAP_RELEASE_URL      base URL of the release files, <url>/v<version>/<file>
#   WIRELEAP_CHANGELOG_URL    base URL of the changelogs, <url>/<version>.md;
#                             default <WIRELEAP_RELEASE_URL>/changelogs
#   WIRELEAP_RELEASE_KEY      fingerprint of the signing key; its public key, exported from
#                             gpg's keyring ($GNUPGHOME or ~/.gnupg), is pinned in the binary
set -euo pipefail
OUTDIR=$(realpath -m "${1:-build}")
cd "$(dirname "$0")/.."
PY=$PWD/.venv/bin/python
NAME=wireleap-relay_linux-amd64
VERSION=${WIRELEAP_VERSION:-$($PY -c 'from wireleap_relay.version import git_version, BASE_VERSION; print(git_version(".") or BASE_VERSION)')}
UPGRADE=${WIRELEAP_UPGRADE_SUPPORT:-False}
RELEASE_URL="" CHANGELOG_URL="" KEYRING=""
if [ "$UPGRADE" = True ]; then
    RELEASE_URL=${WIRELEAP_RELEASE_URL:?a build with upgrade support needs WIRELEAP_RELEASE_URL}
    CHANGELOG_URL=${WIRELEAP_CHANGELOG_URL:-$RELEASE_URL/changelogs}
    KEY=${WIRELEAP_RELEASE_KEY:?a build with upgrade support needs WIRELEAP_RELEASE_KEY}
    KEYRING=$(gpg --batch --export "$KEY" | base64 -w0)
    [ -n "$KEYRING" ] || { echo "gpg has no public key $KEY" >&2; exit 1; }
elif [ "$UPGRADE" != False ]; then
    echo "WIRELEAP_UPGRADE_SUPPORT must be True or False, not '$UPGRADE'" >&2
    exit 1
fi

SETTINGS=$(mktemp)
trap 'rm -f "$SETTINGS"' EXIT

# Bake the settings in: a .pyz cannot ask git at run time.
VERSION=$VERSION UPGRADE=$UPGRADE RELEASE_URL=$RELEASE_URL CHANGELOG_URL=$CHANGELOG_URL \
KEYRING=$KEYRING $PY - "$SETTINGS" <<'EOF'
import os
import sys

from wireleap_relay.semver import is_semver

env = os.environ
if not is_semver(env["VERSION"]):
    sys.exit(f"version '{env['VERSION']}' is not a semantic version (like 1.2.3)")
with open(sys.argv[1], "w") as f:
    f.write("# Written by contrib/build-bin.sh: the settings of this build.\n")
    f.write(f"VERSION = {env['VERSION']!r}\n")
    f.write(f"UPGRADE_SUPPORT = {env['UPGRADE'] == 'True'}\n")
    f.write(f"RELEASE_URL = {env['RELEASE_URL']!r}\n")
    f.write(f"CHANGELOG_URL = {env['CHANGELOG_URL']!r}\n")
    f.write("# The release public key (gpg --export), base64: gpgv's only keyring.\n")
    f.write(f"RELEASE_KEYRING = {env['KEYRING']!r}\n")
EOF

mkdir -p "$OUTDIR"
rm -f "$OUTDIR/$NAME" "$OUTDIR/$NAME.hash"
$PY contrib/singlefile.py build "$OUTDIR/$NAME" "$SETTINGS"
(cd "$OUTDIR" && sha512sum "$NAME" > "$NAME.hash")
echo "built $OUTDIR/$NAME version $VERSION$([ "$UPGRADE" = True ] && echo ', upgrade support on')"
