#!/usr/bin/env bash
# `make release`: a signed release of the single-file relay, laid out in OUTDIR
# (default build/release) the way it is published under WIRELEAP_RELEASE_URL:
#
#   v<version>/wireleap-relay_linux-amd64               built with upgrade support
#   v<version>/wireleap-relay_linux-amd64.hash          clear-signed sha256sum + sha512sum
#   v<version>/wireleap-relay-release-key.asc           the public key, for `gpg --import`
#   changelogs/<version>.md                             copy of changelogs/<version>.md
#
# Environment (the signing key never leaves the releaser's gpg):
#   WIRELEAP_RELEASE_KEY    fingerprint of the signing key in gpg's keyring ($GNUPGHOME or
#                           ~/.gnupg); its public key is pinned in the binary
#   WIRELEAP_RELEASE_URL    base URL the files are published under (baked in)
#   WIRELEAP_CHANGELOG_URL  optional, default <WIRELEAP_RELEASE_URL>/changelogs
#   WIRELEAP_VERSION        optional, default: the release tag v<version> on HEAD
#   WIRELEAP_CHANGELOG_DIR  optional, default changelogs
set -euo pipefail
OUTDIR=$(realpath -m "${1:-build/release}")
cd "$(dirname "$0")/.."
NAME=wireleap-relay_linux-amd64
KEY=${WIRELEAP_RELEASE_KEY:?set WIRELEAP_RELEASE_KEY to the fingerprint of the signing key}
: "${WIRELEAP_RELEASE_URL:?set WIRELEAP_RELEASE_URL to the base URL of the release files}"
VERSION=${WIRELEAP_VERSION:-$(.venv/bin/python -c 'from wireleap_relay.version import git_version; print(git_version(".") or "")')}
if ! [[ $VERSION =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$ ]]; then
    # A development build (0.7.1-dev.3+gabc1234) is no release: tag the commit.
    echo "a release version is MAJOR.MINOR.PATCH, not '$VERSION': tag the commit v<version>" >&2
    exit 1
fi
CHANGELOG=${WIRELEAP_CHANGELOG_DIR:-changelogs}/$VERSION.md
[ -f "$CHANGELOG" ] || { echo "no changelog $CHANGELOG: write it first" >&2; exit 1; }
FPR=$(gpg --batch --with-colons --fingerprint "$KEY" | awk -F: '/^fpr/ {print $10; exit}')
USERID=$(gpg --batch --with-colons --list-keys "$KEY" | awk -F: '/^uid/ {print $10; exit}')
[ -n "$FPR" ] || { echo "gpg has no key $KEY" >&2; exit 1; }

DIR=$OUTDIR/v$VERSION
WIRELEAP_VERSION=$VERSION WIRELEAP_UPGRADE_SUPPORT=True contrib/build-bin.sh "$DIR"
mkdir -p "$OUTDIR/changelogs"
cp "$CHANGELOG" "$OUTDIR/changelogs/$VERSION.md"
cd "$DIR"
gpg --batch --armor --export "$FPR" > wireleap-relay-release-key.asc

# The signed text (operations.md §8.4): how to check it, and the two sums, indented, in the
# coreutils format that `sha256sum -c` and `sha512sum -c` pick out of the whole file.
cat > "$NAME.hash.txt" <<EOF
wireleap-relay $VERSION ($NAME), signed with the wireleap-relay release key
$FPR ($USERID).

The relay checks this file itself before an upgrade. To check it by hand:

    \$ gpg --import wireleap-relay-release-key.asc
    \$ gpg --verify $NAME.hash
    gpg: Good signature from "$USERID"

and the binary against the sums below:

    \$ sha256sum $NAME
      $(sha256sum "$NAME")

    \$ sha512sum $NAME
      $(sha512sum "$NAME")

    \$ sha256sum -c $NAME.hash
    $NAME: OK
    \$ sha512sum -c $NAME.hash
    $NAME: OK

It rebuilds byte for byte from its source (README, "Rebuilding a release"), with the
release key imported as above:

    \$ git checkout v$VERSION
    \$ make build WIRELEAP_VERSION=$VERSION WIRELEAP_UPGRADE_SUPPORT=True \\
          WIRELEAP_RELEASE_KEY=$FPR \\
          WIRELEAP_RELEASE_URL=$WIRELEAP_RELEASE_URL \\
          WIRELEAP_CHANGELOG_URL=${WIRELEAP_CHANGELOG_URL:-$WIRELEAP_RELEASE_URL/changelogs}
    \$ (cd build && sha512sum -c /path/to/$NAME.hash)
    $NAME: OK
EOF
gpg --batch --yes --local-user "$FPR" --digest-algo SHA512 --clearsign \
    --output "$NAME.hash" "$NAME.hash.txt"
rm "$NAME.hash.txt"

# Check the files the way an operator will, before anyone downloads them.
gpg --batch --verify "$NAME.hash" 2>/dev/null || { echo "the signature does not verify" >&2; exit 1; }
sha256sum --quiet -c "$NAME.hash" 2>/dev/null
sha512sum --quiet -c "$NAME.hash" 2>/dev/null
# It unpacks into its home: a scratch one, so the published folder holds only the release.
SCRATCH=$(mktemp -d)
said=$(WIRELEAP_HOME=$SCRATCH ./$NAME version) || said=""
rm -rf "$SCRATCH"
[ "$said" = "$VERSION" ] || { echo "the binary is not version $VERSION" >&2; exit 1; }
echo "release $VERSION in $OUTDIR, signed by $FPR"
