"""The relay identity and its home (operations.md §2.1, §3.2): Go file formats, modes, the
certificate, reading homes laid out by the Go relay, and where the home is."""

import datetime
import json
import os
import re
import stat
import sys

import nacl.signing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from wireleap_relay import home, identity
from wireleap_relay.relay import tls
from wireleap_relay.wire import b64

# Relay seed and public key of the wire.md §8 vectors.
RELAY_SEED = bytes.fromhex("404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f")
RELAY_PK_B64 = "JUO5L_EJVRFHatyDadtt3JM2ZaEZeN2hQE7hBmypVZ0"
JSON_B64 = re.compile(rb'"[A-Za-z0-9_-]{43}"')


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def created(tmp_path):
    where = home.Home(str(tmp_path))
    logged = []
    ident = identity.create(where, logged.append)
    return where, ident, logged


# --- init ----------------------------------------------------------------------------------

def test_create_logs_in_go_order(created):
    where, _, logged = created
    assert logged == [
        f"writing ed25519 private key seed to {where.root}/key.seed",
        f"writing ed25519 public key to {where.root}/key.pub",
        f"Writing ed25519 certificate to {where.root}/relay-cert.pem",
        f"Writing ed25519 certificate key to {where.root}/relay-key.pem",
    ]


def test_create_writes_go_key_files(created):
    where, ident, _ = created
    seed_raw = open(where.key_seed, "rb").read()
    pub_raw = open(where.key_pub, "rb").read()
    for raw in (seed_raw, pub_raw):
        assert len(raw) == 45
        assert JSON_B64.fullmatch(raw)
    seed = b64.decode(json.loads(seed_raw))
    pub = b64.decode(json.loads(pub_raw))
    assert bytes(nacl.signing.SigningKey(seed).verify_key) == pub
    assert ident.public_key == pub
    assert ident.public_key_b64 == json.loads(pub_raw)
    assert bytes(ident.signing_key) == seed


def test_create_modes(created):
    where, _, _ = created
    assert mode(where.key_seed) == 0o600
    assert mode(where.tls_key) == 0o600
    assert mode(where.key_pub) == 0o644
    assert mode(where.tls_cert) == 0o644


def test_create_leaves_no_temp_files(created):
    where, _, _ = created
    assert sorted(os.listdir(where.root)) == ["key.pub", "key.seed", "relay-cert.pem",
                                              "relay-key.pem"]


def test_create_makes_missing_home(tmp_path):
    where = home.Home(str(tmp_path / "new" / "home"))
    identity.create(where, lambda _msg: None)
    assert os.path.isfile(where.key_seed)


def test_each_create_is_a_new_identity(tmp_path):
    where = home.Home(str(tmp_path))
    first = identity.create(where, lambda _msg: None)
    second = identity.create(where, lambda _msg: None)
    assert first.public_key != second.public_key
    assert identity.load(where).public_key == second.public_key


def test_exists(tmp_path):
    where = home.Home(str(tmp_path))
    assert identity.exists(where) == []
    open(where.key_pub, "w").close()
    assert identity.exists(where) == [where.key_pub]
    identity.create(where, lambda _msg: None)
    assert identity.exists(where) == [where.key_seed, where.key_pub, where.tls_cert,
                                      where.tls_key]


def test_sign(created):
    _, ident, _ = created
    sig = ident.sign(b"message")
    assert len(sig) == 64
    nacl.signing.VerifyKey(ident.public_key).verify(b"message", sig)


# --- certificate ---------------------------------------------------------------------------

def test_certificate(created):
    where, ident, _ = created
    pem = open(where.tls_cert, "rb").read()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert pem.endswith(b"-----END CERTIFICATE-----\n")
    cert = x509.load_pem_x509_certificate(pem)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Wireleap")])
    assert cert.subject == name
    assert cert.issuer == name
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == []
    assert cert.version == x509.Version.v3
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ED25519
    assert 0 < cert.serial_number < 2**128

    public = cert.public_key()
    assert isinstance(public, ed25519.Ed25519PublicKey)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == ident.public_key
    assert b64.encode(raw) == json.loads(open(where.key_pub).read())
    public.verify(cert.signature, cert.tbs_certificate_bytes)  # self-signed

    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert validity == datetime.timedelta(days=36500)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert cert.not_valid_before_utc <= now < cert.not_valid_before_utc + datetime.timedelta(1)


def test_certificate_extensions(created):
    where, _, _ = created
    cert = x509.load_pem_x509_certificate(open(where.tls_cert, "rb").read())
    exts = {ext.oid: ext for ext in cert.extensions}
    assert set(exts) == {x509.oid.ExtensionOID.KEY_USAGE,
                         x509.oid.ExtensionOID.EXTENDED_KEY_USAGE,
                         x509.oid.ExtensionOID.BASIC_CONSTRAINTS,
                         x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME}

    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical is True
    assert ku.value.digital_signature and ku.value.key_encipherment
    assert not (ku.value.content_commitment or ku.value.data_encipherment
                or ku.value.key_agreement or ku.value.key_cert_sign or ku.value.crl_sign)

    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical is False
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]

    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical is True and bc.value.ca is False

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical is False
    assert san.value.get_values_for_type(x509.DNSName) == ["wireleap.com"]


def test_certificate_key_file(created):
    where, ident, _ = created
    pem = open(where.tls_key, "rb").read()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    assert len(der) == 48
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    assert raw == bytes(ident.signing_key)


def test_certificate_serials_are_random(tmp_path):
    ident = identity.Identity(nacl.signing.SigningKey(RELAY_SEED))
    first = x509.load_pem_x509_certificate(identity.make_certificate(ident)[0])
    second = x509.load_pem_x509_certificate(identity.make_certificate(ident)[0])
    assert first.serial_number != second.serial_number


def test_certificate_is_usable_by_the_tls_listener(created):
    where, _, _ = created
    ctx = tls.server_context(where.tls_cert, where.tls_key)
    assert ctx.minimum_version.name == "TLSv1_3"


# --- loading a home the Go relay wrote -----------------------------------------------------

def write_go_home(root, seed_content):
    with open(os.path.join(root, "key.seed"), "wb") as f:
        f.write(seed_content)
    os.chmod(os.path.join(root, "key.seed"), 0o600)
    with open(os.path.join(root, "key.pub"), "wb") as f:
        f.write(json.dumps(RELAY_PK_B64).encode())
    return home.Home(str(root))


def test_load_go_json_seed(tmp_path):
    content = b'"' + b64.encode(RELAY_SEED).encode() + b'"'
    where = write_go_home(tmp_path, content)
    ident = identity.load(where)
    assert ident.public_key_b64 == RELAY_PK_B64
    assert bytes(ident.signing_key) == RELAY_SEED
    assert open(where.key_seed, "rb").read() == content  # not rewritten


def test_load_go_2021_indented_json_seed_with_newline(tmp_path):
    content = b'"' + b64.encode(RELAY_SEED).encode() + b'"\n'
    where = write_go_home(tmp_path, content)
    assert identity.load(where).public_key_b64 == RELAY_PK_B64


def test_load_legacy_unquoted_seed_rewrites_json(tmp_path):
    where = write_go_home(tmp_path, b64.encode(RELAY_SEED).encode())
    os.chmod(where.key_seed, 0o640)
    ident = identity.load(where)
    assert ident.public_key_b64 == RELAY_PK_B64
    rewritten = open(where.key_seed, "rb").read()
    assert rewritten == b'"' + b64.encode(RELAY_SEED).encode() + b'"'
    assert mode(where.key_seed) == 0o600
    assert identity.load(where).public_key_b64 == RELAY_PK_B64


@pytest.mark.parametrize("content,size", [
    (json.dumps(b64.encode(bytes(16))).encode(), 16),
    (json.dumps(b64.encode(bytes(33))).encode(), 33),
    (json.dumps(b64.encode(bytes(64))).encode(), 64),
    (b64.encode(bytes(31)).encode(), 31),  # legacy form, too short
    (json.dumps(b64.encode(RELAY_SEED) + "=").encode(), 0),  # padded: invalid base64
    (json.dumps("+" * 43).encode(), 0),
    (b"42", 0),  # JSON, but not a string
    (b"null", 0),
    (b"", 0),
    (b"not base64 at all!", 0),
])
def test_load_rejects_wrong_sizes(tmp_path, content, size):
    where = write_go_home(tmp_path, content)
    with pytest.raises(identity.IdentityError) as info:
        identity.load(where)
    assert str(info.value) == f"{where.key_seed} has invalid seed size: {size}, should be 32"
    assert open(where.key_seed, "rb").read() == content  # a bad file is never rewritten


def test_load_missing_seed(tmp_path):
    where = home.Home(str(tmp_path))
    with pytest.raises(identity.IdentityError) as info:
        identity.load(where)
    assert str(info.value) == \
        f"{where.key_seed} does not exist: run `wireleap-relay init` first"


# --- the home ------------------------------------------------------------------------------

def test_home_paths():
    h = home.Home("/opt/relay")
    assert h.config == "/opt/relay/config.json"
    assert h.key_seed == "/opt/relay/key.seed"
    assert h.key_pub == "/opt/relay/key.pub"
    assert h.tls_cert == "/opt/relay/relay-cert.pem"
    assert h.tls_key == "/opt/relay/relay-key.pem"
    assert h.license == "/opt/relay/LICENSE"
    assert h.pid_file == "/opt/relay/wireleap-relay.pid"
    assert h.log_file == "/opt/relay/wireleap-relay.log"
    assert h.sharetokens == "/opt/relay/sharetokens"


def test_home_reroots_absolute_config_paths():
    h = home.Home("/opt/relay")
    assert h.path("/var/arch") == "/opt/relay/var/arch"
    assert h.path("archive/sharetokens") == "/opt/relay/archive/sharetokens"
    assert h.path("a", "/b") == "/opt/relay/a/b"


def test_home_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("WIRELEAP_HOME", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["/somewhere/else/wireleap-relay"])
    assert home.find_home() == str(tmp_path)
    assert home.current() == home.Home(str(tmp_path))


def test_home_env_override_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WIRELEAP_HOME", "relayhome")
    assert home.find_home() == str(tmp_path / "relayhome")


def test_home_is_folder_of_executable(tmp_path, monkeypatch):
    monkeypatch.delenv("WIRELEAP_HOME", raising=False)
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "wireleap-relay"
    exe.write_text("")
    monkeypatch.chdir("/")
    monkeypatch.setattr(sys, "argv", [str(exe), "start"])
    assert home.find_home() == str(tmp_path / "bin")


def test_home_empty_env_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("WIRELEAP_HOME", "")
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "wireleap-relay.pyz")])
    assert home.find_home() == str(tmp_path)


def test_home_follows_symlinks(tmp_path, monkeypatch):
    monkeypatch.delenv("WIRELEAP_HOME", raising=False)
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "real" / "wireleap-relay"
    target.write_text("")
    link = tmp_path / "links" / "wireleap-relay"
    link.symlink_to(target)
    monkeypatch.setattr(sys, "argv", [str(link)])
    assert home.find_home() == str(tmp_path / "real")


def test_home_relative_argv0(tmp_path, monkeypatch):
    monkeypatch.delenv("WIRELEAP_HOME", raising=False)
    (tmp_path / "wireleap-relay").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["./wireleap-relay"])
    assert home.find_home() == str(tmp_path)


@pytest.mark.parametrize("argv", [["/x/wireleap_relay/__main__.py"], [""], []])
def test_home_python_m_uses_cwd(tmp_path, monkeypatch, argv):
    monkeypatch.delenv("WIRELEAP_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", argv)
    assert home.find_home() == str(tmp_path)
