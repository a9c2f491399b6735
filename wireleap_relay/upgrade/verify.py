"""The release hash file: a PGP clear-signed text (operations.md §6.5, §8.4) checked the way
apt checks its archives, with gpgv and a keyring that holds only the key pinned in this
binary. The user's own keyring and trust settings are never consulted. The sha512 sum is
taken from the text gpgv verified, never from the file as downloaded."""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from wireleap_relay.upgrade import UpgradeError
from wireleap_relay.upgrade.release import ARTIFACT

BEGIN = b"-----BEGIN PGP SIGNED MESSAGE-----"
_SHA512_LINE = re.compile(rf"^[ \t]*([0-9a-f]{{128}})  {re.escape(ARTIFACT)}[ \t\r]*$",
                          re.MULTILINE)


@dataclass(frozen=True)
class Verified:
    text: str  # the signed text, as signed
    signer: str  # `[user id] KEYID (signed <date>)`


def clearsigned(path: str, keyring: bytes) -> Verified:
    """Check `path` against `keyring`; raises UpgradeError saying what is wrong."""
    with open(path, "rb") as f:
        raw = f.read()
    # One signed message and nothing before it: gpgv would also accept other OpenPGP forms
    # and several messages in one file, which a hash file never is.
    if not raw.lstrip().startswith(BEGIN) or raw.count(BEGIN) != 1:
        raise UpgradeError(f"{path} is not a clear-signed text (no single '{BEGIN.decode()}' "
                           "at its start)")
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise UpgradeError("gpgv is not installed, so the release signature cannot be "
                           "checked (install the gpgv package)")
    with tempfile.TemporaryDirectory(prefix="wireleap-gpgv-") as scratch:
        keyring_path = os.path.join(scratch, "release-key.gpg")
        with open(keyring_path, "wb") as f:
            f.write(keyring)
        cleartext = os.path.join(scratch, "cleartext")
        # --homedir: an empty folder, so no default keyring or option file takes part.
        result = subprocess.run([gpgv, "--homedir", scratch, "--keyring", keyring_path,
                                 "--status-fd", "1", "--output", cleartext, path],
                                capture_output=True, timeout=60)
        status = _status(result.stdout)
        if result.returncode != 0 or "GOODSIG" not in status or "VALIDSIG" not in status:
            raise UpgradeError(_refusal(path, status, result.stderr))
        with open(cleartext, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    keyid, _, uid = status["GOODSIG"].partition(" ")
    signed = status["VALIDSIG"].split(" ")[1]
    return Verified(text, f"[{uid}] {keyid} (signed {signed})")


def sha512_in(text: str) -> str:
    """The first `<128 hex>  wireleap-relay_linux-amd64` line of the verified text."""
    match = _SHA512_LINE.search(text)
    if match is None:
        raise UpgradeError(f"sha512 sum of {ARTIFACT} not found in the signed text")
    return match.group(1)


def file_sha512(path: str) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _status(output: bytes) -> dict[str, str]:
    """gpgv's `[GNUPG:] KEYWORD args` lines as keyword → args (the last one wins)."""
    status = {}
    for line in output.decode("utf-8", "replace").splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, _, args = line[9:].partition(" ")
            status[keyword] = args
    return status


def _refusal(path: str, status: dict[str, str], stderr: bytes) -> str:
    if "BADSIG" in status:
        return f"BAD signature on {path}: its text was changed after it was signed"
    if "NO_PUBKEY" in status:
        return (f"{path} is signed by key {status['NO_PUBKEY']}, which is not the release "
                "key pinned in this binary")
    if "NODATA" in status:
        return f"{path} holds no OpenPGP signature"
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return f"gpgv could not verify {path}: {lines[-1] if lines else 'no output'}"
