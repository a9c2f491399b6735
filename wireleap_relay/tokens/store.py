"""The pending sharetoken store, in the Go relay's layout (wire.md §4.7, control.md §4.4):
`sharetokens/<contract pk>/<token signature>.json`, compact JSON, files 0644.

Money is durable: a token is on disk (temp file, flush, link into place) before the relay
dials; tokens that arrive together share their flushes (commit.py). The file name is the
duplicate check, made with exclusive creation, so it holds across worker processes and
across restarts, and a token is accepted at most once. A token
leaves the pending store only once the contract took it (it is then archived, if an archive
is configured) or definitively refused it (it is then moved to `expired/`).
"""

import json
import os
import time

from wireleap_relay.fsutil import create_exclusive_many, ensure_dir, fsync_dir, write_atomic
from wireleap_relay.wire import b64
from wireleap_relay.wire.sharetoken import Sharetoken

# Folders common v0.3.8 keeps beside the per-contract ones; they hold no pending tokens.
MALFORMED = "malformed"
EXPIRED = "expired"
# Beside the store (`sharetokens.contracts.json`), not in it, where the Go relay expects
# only folders: the URL of every contract whose tokens were stored. A token names its
# contract only by key, and one removed from the config must still be submitted while its
# window is open.
CONTRACT_URLS_SUFFIX = ".contracts.json"
# A temp file (`.<name>.<pid>.<n>`) this old is a crashed write's: the link that makes a
# token pending never happened, so nothing was accepted from it.
LEFTOVER_AGE = 3600.0


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
        failure = self.accept_many([token])[0]
        if failure is not None:
            raise failure

    def accept_many(self, tokens: list[Sharetoken]) -> list[Exception | None]:
        """Store tokens durably with shared flushes (fsutil.create_exclusive_many); per
        token None once it is on disk, DuplicateSharetoken if it was accepted before (also
        earlier in this list), or the OSError that kept it off the disk."""
        failures: list[Exception | None] = [None] * len(tokens)
        files, where = [], []
        for i, token in enumerate(tokens):
            path = self.path_for(token)
            try:
                ensure_dir(os.path.dirname(path))
            except OSError as exc:
                failures[i] = exc
                continue
            files.append((path, token.to_json().encode()))
            where.append(i)
        for i, created in zip(where, create_exclusive_many(files, mode=0o644), strict=True):
            if isinstance(created, OSError):
                failures[i] = created
            elif not created:
                failures[i] = DuplicateSharetoken()
        return failures

    @property
    def urls_file(self) -> str:
        return self.root.rstrip("/") + CONTRACT_URLS_SUFFIX

    def known_urls(self) -> dict[bytes, str]:
        """Contract key -> URL of every contract this relay has stored tokens for."""
        try:
            with open(self.urls_file, "rb") as f:
                saved = json.loads(f.read())
            return {b64.decode(key): url for key, url in saved.items()
                    if isinstance(url, str)}
        except (OSError, ValueError, AttributeError):
            return {}  # none yet, or unreadable: the config's contracts still work

    def remember_urls(self, urls: dict[bytes, str]) -> dict[bytes, str]:
        """Add the config's contracts to the known ones (written only when it changes);
        every known one, the config's first. Raises OSError if it cannot be written."""
        known = self.known_urls()
        merged = {**known, **urls}
        if merged != known:
            write_atomic(self.urls_file, json.dumps(
                {b64.encode(key): url for key, url in sorted(merged.items())},
                indent=4).encode())
        return merged

    def remove_leftovers(self, now: float | None = None) -> list[str]:
        """Delete temp files of writes that crashed (LEFTOVER_AGE old); their paths."""
        now = time.time() if now is None else now
        removed = []
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    if name.startswith(".") and now - os.stat(path).st_mtime > LEFTOVER_AGE:
                        os.unlink(path)
                        removed.append(path)
                except OSError:
                    continue
        return removed

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
