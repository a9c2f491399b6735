"""The pending sharetoken store, in the Go relay's layout (wire.md §4.7, control.md §4.4):
`sharetokens/<contract pk>/<token signature>.json`, compact JSON, files 0644.

Money is durable: a token is on disk (temp file, fsync, link into place) before the relay
dials. The file name is the duplicate check, made with exclusive creation, so it holds
across worker processes and across restarts, and a token is accepted at most once. A token
leaves the pending store only once the contract took it (it is then archived, if an archive
is configured) or definitively refused it (it is then moved to `expired/`).
"""

import json
import os

from wireleap_relay.fsutil import create_exclusive, ensure_dir, fsync_dir, write_atomic
from wireleap_relay.wire.sharetoken import Sharetoken

# Folders common v0.3.8 keeps beside the per-contract ones; they hold no pending tokens.
MALFORMED = "malformed"
EXPIRED = "expired"


class DuplicateSharetoken(Exception):
    def __init__(self) -> None:
        super().__init__("duplicate sharetoken")


class TokenStore:
    def __init__(self, root: str):
        self.root = root

    def path_for(self, token: Sharetoken, root: str | None = None) -> str:
        return os.path.join(root or self.root, token.contract_key_b64,
                            token.signature_b64 + ".json")

    def accept(self, token: Sharetoken) -> None:
        """Store the token durably; raise DuplicateSharetoken if it was accepted before."""
        path = self.path_for(token)
        ensure_dir(os.path.dirname(path))
        if not create_exclusive(path, token.to_json().encode(), mode=0o644):
            raise DuplicateSharetoken()

    def pending(self) -> list[str]:
        """Paths of every pending token (the reserved folders and temp files left out)."""
        found: list[str] = []
        if not os.path.isdir(self.root):
            return found
        for contract in sorted(os.listdir(self.root)):
            folder = os.path.join(self.root, contract)
            if contract in (MALFORMED, EXPIRED) or not os.path.isdir(folder):
                continue
            found += [os.path.join(folder, name) for name in sorted(os.listdir(folder))
                      if name.endswith(".json") and not name.startswith(".")]
        return found

    @staticmethod
    def load(path: str) -> Sharetoken:
        """A stored token (compact or Go 2021's indented JSON); ValueError if malformed."""
        with open(path, "rb") as f:
            return Sharetoken.from_dict(json.loads(f.read()))

    def archive(self, path: str, archive_root: str) -> None:
        """Copy a submitted token into the archive (same layout), then drop it from
        pending. A crash in between leaves it in both places, never in neither."""
        token = self.load(path)
        target = self.path_for(token, archive_root)
        ensure_dir(os.path.dirname(target))
        write_atomic(target, token.to_json().encode())
        self.remove(path)

    def set_aside(self, path: str, kind: str) -> str:
        """Move a token out of pending into `<root>/<kind>/<contract>/` (v0.3.8 layout)."""
        contract = os.path.basename(os.path.dirname(path))
        folder = os.path.join(self.root, kind, contract)
        ensure_dir(folder)
        target = os.path.join(folder, os.path.basename(path))
        os.replace(path, target)
        fsync_dir(folder)
        fsync_dir(os.path.dirname(path))
        return target

    @staticmethod
    def remove(path: str) -> None:
        os.unlink(path)
        fsync_dir(os.path.dirname(path))
