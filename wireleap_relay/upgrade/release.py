"""What a release build bakes into the binary (contrib/build-bin.sh writes `_build.py`):
whether it may upgrade itself, where the release files are, and the one OpenPGP key that
may sign them.

Layout of the release files, the Go relay's with our artifact name:

    <RELEASE_URL>/v<version>/wireleap-relay_linux-amd64        the executable .pyz
    <RELEASE_URL>/v<version>/wireleap-relay_linux-amd64.hash   clear-signed sha256/sha512
    <CHANGELOG_URL>/<version>.md                              the changelog
"""

import base64
from dataclasses import dataclass

ARTIFACT = "wireleap-relay_linux-amd64"


@dataclass(frozen=True)
class Release:
    url: str
    changelog_url: str
    keyring: bytes  # `gpg --export` of the release key: a keyring gpgv reads as it is

    def binary_url(self, version: str) -> str:
        return f"{self.url}/v{version}/{ARTIFACT}"

    def hash_url(self, version: str) -> str:
        return self.binary_url(version) + ".hash"

    def changelog(self, version: str) -> str:
        return f"{self.changelog_url}/{version}.md"


def settings() -> Release | None:
    """The baked-in release, or None for a binary without upgrade support (`make build`,
    a source checkout, `pip install`)."""
    try:
        from wireleap_relay import _build
    except ImportError:
        return None
    if not getattr(_build, "UPGRADE_SUPPORT", False):
        return None
    return Release(_build.RELEASE_URL.rstrip("/"), _build.CHANGELOG_URL.rstrip("/"),
                   base64.b64decode(_build.RELEASE_KEYRING))
