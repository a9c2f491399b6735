"""The relay's ed25519 identity and its TLS certificate, in the Go relay's file formats
(operations.md §3.2), so a home made by either relay works with the other."""

import datetime
import json
import os
import secrets
from dataclasses import dataclass

import nacl.signing

from wireleap_relay.fsutil import write_atomic
from wireleap_relay.home import Home
from wireleap_relay.wire import b64

SEED_SIZE = 32
CERT_VALIDITY = datetime.timedelta(days=36500)


class IdentityError(Exception):
    pass


@dataclass(frozen=True)
class Identity:
    signing_key: nacl.signing.SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def public_key_b64(self) -> str:
        return b64.encode(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature


def exists(home: Home) -> list[str]:
    """The identity files already present in the home."""
    files = (home.key_seed, home.key_pub, home.tls_cert, home.tls_key)
    return [f for f in files if os.path.exists(f)]


def create(home: Home, log) -> Identity:
    """Generate a new identity and write key.seed, key.pub, relay-cert.pem, relay-key.pem."""
    os.makedirs(home.root, exist_ok=True)
    key = nacl.signing.SigningKey(secrets.token_bytes(SEED_SIZE))
    log(f"writing ed25519 private key seed to {home.key_seed}")
    write_atomic(home.key_seed, _json_string(bytes(key)), mode=0o600)
    log(f"writing ed25519 public key to {home.key_pub}")
    write_atomic(home.key_pub, _json_string(bytes(key.verify_key)), mode=0o644)
    identity = load(home)
    cert_pem, key_pem = make_certificate(identity)
    log(f"Writing ed25519 certificate to {home.tls_cert}")
    write_atomic(home.tls_cert, cert_pem, mode=0o644)
    log(f"Writing ed25519 certificate key to {home.tls_key}")
    write_atomic(home.tls_key, key_pem, mode=0o600)
    return identity


def load(home: Home) -> Identity:
    """Read key.seed: a JSON string of unpadded base64url; the older unquoted form is
    accepted and rewritten as JSON, as the Go relay does."""
    path = home.key_seed
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise IdentityError(f"{path} does not exist: run `wireleap-relay init` first") from None
    try:
        text = json.loads(raw)
        legacy = False
    except ValueError:
        text, legacy = raw.decode("ascii", "replace"), True
    try:
        seed = b64.decode(text) if isinstance(text, str) else b""
    except b64.B64Error:
        seed = b""
    if len(seed) != SEED_SIZE:
        raise IdentityError(f"{path} has invalid seed size: {len(seed)}, should be {SEED_SIZE}")
    if legacy:
        write_atomic(path, _json_string(seed), mode=0o600)
    return Identity(nacl.signing.SigningKey(seed))


def make_certificate(identity: Identity) -> tuple[bytes, bytes]:
    """A self-signed certificate for the identity key, laid out like the Go relay's:
    O=Wireleap, SAN wireleap.com, 100 years, random 128-bit serial."""
    # Imported here: only `init` makes certificates, and cryptography (with bcrypt, which
    # it pulls in) would cost every worker process several MiB.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(identity.signing_key))
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Wireleap")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(127) + 1)
        .not_valid_before(now)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=True, content_commitment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("wireleap.com")]),
                       critical=False)
        .sign(key, None)
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


def _json_string(raw: bytes) -> bytes:
    return json.dumps(b64.encode(raw)).encode()
