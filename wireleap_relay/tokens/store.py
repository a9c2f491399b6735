"""The pending sharetoken store, in the Go relay's layout (wire.md §4.7):
`sharetokens/<contract pk>/<token signature>.json`, compact JSON, files 0644.

Money is durable: a token is on disk (temp file, fsync, link into place) before the relay
dials. The file name is the duplicate check, made with exclusive creation, so it holds
across worker processes and across restarts, and a token is accepted at most once.
"""

import os

from wireleap_relay.fsutil import create_exclusive
from wireleap_relay.wire.sharetoken import Sharetoken


class DuplicateSharetoken(Exception):
    def __init__(self) -> None:
        super().__init__("duplicate sharetoken")


class TokenStore:
    def __init__(self, root: str):
        self.root = root

    def path_for(self, token: Sharetoken) -> str:
        return os.path.join(self.root, token.contract_key_b64, token.signature_b64 + ".json")

    def accept(self, token: Sharetoken) -> None:
        """Store the token durably; raise DuplicateSharetoken if it was accepted before."""
        path = self.path_for(token)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if not create_exclusive(path, token.to_json().encode(), mode=0o644):
            raise DuplicateSharetoken()
