"""config.json: each key's rule and message, warnings for unknown keys, every problem
reported at once, the README's example configs and the defaults (operations.md §5)."""

import copy
import json
import os

import pytest

from wireleap_relay import config, duration
from wireleap_relay.config import ConfigError

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data")
C = "https://c.example.com"
W = f'contracts["{C}"]'

BASE = {
    "address": "0.0.0.0:13490",
    "contracts": {C: {"role": "fronting", "address": "wireleap://relay.example.com:13490"}},
}


def build(top=None, entry=None, drop=(), drop_entry=()):
    obj = copy.deepcopy(BASE)
    obj.update(top or {})
    obj["contracts"][C].update(entry or {})
    for key in drop:
        del obj[key]
    for key in drop_entry:
        del obj["contracts"][C][key]
    return obj


def parse(obj):
    return config.parse(json.dumps(obj).encode())


def problems(obj):
    with pytest.raises(ConfigError) as info:
        parse(obj)
    return info.value.problems


def ok(obj):
    cfg, warnings = parse(obj)
    return cfg, warnings


# --- defaults ------------------------------------------------------------------------------

def test_defaults():
    cfg, warnings = ok(BASE)
    assert warnings == []
    assert cfg.address == "0.0.0.0:13490"
    assert duration.format(cfg.auto_submit_interval) == "5m0s"
    assert duration.format(cfg.timeout) == "5s"
    assert duration.format(cfg.maxtime) == "0s"
    assert cfg.bufsize == 4096
    assert cfg.auto_upgrade is True
    assert cfg.allow_loopback is False
    assert cfg.archive_dir is None
    assert cfg.upgrade_channel == "default"
    assert cfg.listen_host_port == ("0.0.0.0", 13490)
    assert cfg.network_usage == {"timeframe": 0, "global_limit": 0,
                                 "write_interval": None, "archive_dir": None}
    assert cfg.rest_api == {"address": None, "socket_umask": None}
    entry = cfg.contracts[C]
    assert entry == config.ContractEntry(url=C, role="fronting",
                                         address="wireleap://relay.example.com:13490")
    assert entry.key is None and entry.upgrade_channel is None


def test_all_keys_set():
    cfg, warnings = ok(build({
        "archive_dir": "/var/arch", "auto_submit_interval": "1h", "maxtime": "2d",
        "timeout": "1m30s", "bufsize": 65536, "auto_upgrade": False,
        "danger_zone": {"allow_loopback": True}, "network_usage": {"timeframe": "30d"},
    }, {"key": "user:pass", "upgrade_channel": "beta", "network_usage_limit": "500GB"}))
    assert warnings == []
    assert cfg.archive_dir == "/var/arch"
    assert cfg.auto_submit_interval == duration.HOUR
    assert cfg.maxtime == 2 * duration.DAY
    assert cfg.timeout == 90 * duration.SECOND
    assert cfg.bufsize == 65536
    assert cfg.auto_upgrade is False
    assert cfg.allow_loopback is True
    assert cfg.upgrade_channel == "beta"
    entry = cfg.contracts[C]
    assert (entry.key, entry.upgrade_channel, entry.network_usage_limit) == \
        ("user:pass", "beta", 500 << 30)


def test_null_means_default():
    cfg, _ = ok(build({"timeout": None, "bufsize": None, "auto_upgrade": None,
                       "danger_zone": None, "rest_api": None, "network_usage": None}))
    assert cfg.timeout == 5 * duration.SECOND
    assert cfg.bufsize == 4096
    assert cfg.auto_upgrade is True
    assert cfg.allow_loopback is False


def test_config_is_frozen():
    cfg, _ = ok(BASE)
    with pytest.raises(AttributeError):
        cfg.bufsize = 1  # type: ignore[misc]


# --- README examples -----------------------------------------------------------------------

def test_readme_two_contract_example_loads():
    cfg, warnings = config.load(os.path.join(DATA, "readme_2021_two_contracts.json"))
    assert warnings == ["contracts: no contract sets upgrade_channel; upgrades follow the "
                        "'default' channel"]
    assert cfg.address == "0.0.0.0:13490"
    assert cfg.archive_dir == "archive/sharetokens"
    assert cfg.auto_submit_interval == 5 * duration.MINUTE
    assert list(cfg.contracts) == ["https://contract1.example.com",
                                   "https://contract2.example.com"]
    backing = cfg.contracts["https://contract1.example.com"]
    assert (backing.role, backing.address, backing.key) == \
        ("backing", "wireleap://relay1.example.com:13490", "backing:secretkey")
    assert cfg.contracts["https://contract2.example.com"].role == "entropic"
    assert cfg.upgrade_channel == "default"


def test_readme_fronting_example_loads():
    cfg, warnings = config.load(os.path.join(DATA, "readme_2021_fronting.json"))
    assert warnings == []
    assert cfg.listen_host_port == ("127.0.0.1", 13490)
    entry = cfg.contracts["https://contract1.example.com"]
    assert (entry.role, entry.address) == ("fronting", "wireleap://www.example.com:443/wireleap")


# --- types ---------------------------------------------------------------------------------

TYPE_ERRORS = [
    ({"address": 13490}, "address: must be a string"),
    ({"archive_dir": 5}, "archive_dir: must be a string"),
    ({"auto_submit_interval": 300}, 'auto_submit_interval: must be a duration string like "5m0s"'),
    ({"maxtime": True}, 'maxtime: must be a duration string like "5m0s"'),
    ({"timeout": 5}, 'timeout: must be a duration string like "5m0s"'),
    ({"bufsize": "4096"}, "bufsize: must be a whole number of bytes"),
    ({"bufsize": True}, "bufsize: must be a whole number of bytes"),
    ({"bufsize": 4096.0}, "bufsize: must be a whole number of bytes"),
    ({"auto_upgrade": "true"}, "auto_upgrade: must be true or false"),
    ({"auto_upgrade": 1}, "auto_upgrade: must be true or false"),
    ({"danger_zone": {"allow_loopback": "yes"}},
     "danger_zone.allow_loopback: must be true or false"),
    ({"danger_zone": []}, "danger_zone: must be a JSON object"),
    ({"network_usage": "on"}, "network_usage: must be a JSON object"),
    ({"rest_api": 1}, "rest_api: must be a JSON object"),
    ({"network_usage": {"archive_dir": 1}}, "network_usage.archive_dir: must be a string"),
    ({"rest_api": {"socket_umask": 600}}, "rest_api.socket_umask: must be a string"),
    ({"rest_api": {"address": 8080}}, "rest_api.address: must be a string"),
]


@pytest.mark.parametrize("top,message", TYPE_ERRORS)
def test_type_rules(top, message):
    assert problems(build(top)) == [message]


ENTRY_TYPE_ERRORS = [
    ({"role": 1}, f"{W}.role: must be a string"),
    ({"address": ["x"]}, f"{W}.address: must be a string"),
    ({"key": 1}, f"{W}.key: must be a string"),
    ({"upgrade_channel": 1}, f"{W}.upgrade_channel: must be a string"),
    ({"update_channel": False}, f"{W}.update_channel: must be a string"),
    ({"network_usage_limit": 10}, f"{W}.network_usage_limit: must be a string"),
]


@pytest.mark.parametrize("entry,message", ENTRY_TYPE_ERRORS)
def test_entry_type_rules(entry, message):
    assert problems(build(entry=entry)) == [message]


# --- bufsize, timeout, durations -----------------------------------------------------------

@pytest.mark.parametrize("value", [0, -1, 16777217])
def test_bufsize_out_of_range(value):
    assert problems(build({"bufsize": value})) == \
        [f"bufsize: must be between 1 and 16777216 bytes, got {value}"]


@pytest.mark.parametrize("value", [1, 16777216])
def test_bufsize_bounds_accepted(value):
    assert ok(build({"bufsize": value}))[0].bufsize == value


def test_timeout_must_be_positive():
    assert problems(build({"timeout": "0s"})) == ["timeout: must be longer than 0s"]


def test_zero_durations_allowed_where_they_mean_off():
    cfg, _ = ok(build({"auto_submit_interval": "0s", "maxtime": "0s"}))
    assert cfg.auto_submit_interval == 0 and cfg.maxtime == 0


@pytest.mark.parametrize("key", ["auto_submit_interval", "maxtime", "timeout"])
@pytest.mark.parametrize("value,detail", [
    ("300ms", "invalid duration '300ms': unknown unit 'ms' (use s, m, h or d; "
              "sub-second units are not supported)"),
    ("-1h", "invalid duration '-1h': signs are not allowed"),
    ("10", "invalid duration '10': expected a number and a unit (h, m, s or d) at '10'"),
    ("", 'empty duration; write it like "5m0s" or "0s"'),
    ("1.5d", "invalid duration '1.5d': fractional days are not supported, use hours"),
])
def test_bad_durations(key, value, detail):
    assert problems(build({key: value})) == [f"{key}: {detail}"]


def test_network_usage_durations():
    cfg, _ = ok(build({"network_usage": {"timeframe": "30d", "write_interval": "1m",
                                         "global_limit": "2TB", "archive_dir": "usage"}}))
    assert cfg.network_usage == {"timeframe": 720 * duration.HOUR,
                                 "write_interval": duration.MINUTE,
                                 "global_limit": 2 << 40, "archive_dir": "usage"}
    assert problems(build({"network_usage": {"timeframe": "1ms"}}))[0].startswith(
        "network_usage.timeframe: invalid duration '1ms'")


# --- listen address ------------------------------------------------------------------------

@pytest.mark.parametrize("address,host_port", [
    ("0.0.0.0:13490", ("0.0.0.0", 13490)),
    ("[::1]:1", ("::1", 1)),
    ("[::]:13490", ("::", 13490)),
    (":13490", ("", 13490)),
    ("relay.example.com:65535", ("relay.example.com", 65535)),
    ("localhost:0", ("localhost", 0)),
])
def test_listen_address_valid(address, host_port):
    assert ok(build({"address": address}))[0].listen_host_port == host_port


@pytest.mark.parametrize("address", ["0.0.0.0", "::1:80", "[::1]", "host:", "", "h:abc",
                                     "h:1:2", "[::1]:"])
def test_listen_address_needs_host_port(address):
    assert problems(build({"address": address})) == \
        [f"address: must be host:port (e.g. 0.0.0.0:13490), got {address!r}"]


def test_listen_address_port_range():
    assert problems(build({"address": "h:65536"})) == ["address: port 65536 is out of range"]


def test_listen_address_brackets_need_ipv6():
    found = problems(build({"address": "[zz]:1"}))
    assert len(found) == 1 and found[0].startswith("address: ")


def test_address_required():
    assert problems(build(drop=("address",))) == ["address: has to be set"]
    assert problems(build({"address": None})) == ["address: has to be set"]


# --- contract entries ----------------------------------------------------------------------

@pytest.mark.parametrize("role,address", [
    ("fronting", "wireleap://www.example.com/wireleap"),
    ("fronting", "wireleap://www.example.com:443/wireleap"),
    ("entropic", "wireleap://relay.example.com:13490"),
    ("backing", "wireleap://relay.example.com:13490/path"),
    ("backing", "https://relay.example.com:443"),
    ("entropic", "wireleap://[2001:db8::1]:13490"),
])
def test_roles_and_addresses_accepted(role, address):
    cfg, _ = ok(build(entry={"role": role, "address": address}))
    assert (cfg.contracts[C].role, cfg.contracts[C].address) == (role, address)


@pytest.mark.parametrize("role", ["foo", "", "Fronting"])
def test_bad_role(role):
    assert problems(build(entry={"role": role})) == \
        [f"{W}.role: must be one of fronting, entropic, backing, got {role!r}"]


def test_missing_role_and_address():
    assert problems(build(drop_entry=("role", "address"))) == \
        [f"{W}.role: has to be set", f"{W}.address: has to be set"]


@pytest.mark.parametrize("address", ["http://relay.example.com:13490", "tcp://h:1",
                                     "relay.example.com:13490", "//h:1"])
def test_relay_url_scheme(address):
    assert problems(build(entry={"address": address})) == \
        [f"{W}.address: scheme must be wireleap:// (or legacy https://), got {address!r}"]


def test_relay_url_needs_host():
    assert problems(build(entry={"address": "wireleap:///path"})) == \
        [f"{W}.address: has no host: 'wireleap:///path'"]


@pytest.mark.parametrize("role", ["fronting", "entropic", "backing"])
@pytest.mark.parametrize("address", ["wireleap://h:abc", "wireleap://h:99999"])
def test_relay_url_invalid_port(role, address):
    assert problems(build(entry={"role": role, "address": address})) == \
        [f"{W}.address: invalid port in {address!r}"]


@pytest.mark.parametrize("role", ["entropic", "backing"])
def test_later_hops_need_a_port(role):
    assert problems(build(entry={"role": role, "address": "wireleap://relay.example.com"})) == \
        [f"{W}.address: an {role} relay needs an explicit port, "
         "e.g. wireleap://relay.example.com:13490"]


@pytest.mark.parametrize("url", ["ftp://c.example.com", "c.example.com", "https://",
                                 "file:///c"])
def test_contract_url_must_be_http(url):
    obj = {"address": "h:1", "contracts": {url: BASE["contracts"][C]}}
    assert problems(obj) == \
        [f"contracts[{json.dumps(url)}]: the contract URL must be http(s)://host[:port][/path]"]


def test_contract_url_http_accepted():
    obj = {"address": "h:1", "contracts": {"http://127.0.0.1:8080/c": BASE["contracts"][C]}}
    assert list(ok(obj)[0].contracts) == ["http://127.0.0.1:8080/c"]


def test_null_entry():
    obj = {"address": "h:1", "contracts": {C: None}}
    assert problems(obj) == [f"{W}: must be a JSON object (relay entry), got null"]


def test_non_object_entry():
    obj = {"address": "h:1", "contracts": {C: "wireleap://h:1"}}
    assert problems(obj) == [f"{W}: must be a JSON object (relay entry), got str"]


@pytest.mark.parametrize("contracts", [None, {}])
def test_contracts_required(contracts):
    obj = {"address": "h:1"} if contracts is None else {"address": "h:1", "contracts": contracts}
    assert problems(obj) == ["contracts: at least one service contract has to be set"]


@pytest.mark.parametrize("contracts", [[], ["https://c"], "https://c", 1])
def test_contracts_must_be_object(contracts):
    assert problems({"address": "h:1", "contracts": contracts}) == \
        ["contracts: must be a JSON object of contract URL to relay entry"]


def test_enrollment_fields_written_by_go_are_ignored():
    cfg, warnings = ok(build(entry={"pubkey": "abc", "version": "0.3.2",
                                    "versions": {"client-relay": "0.2.0"}}))
    assert warnings == []
    assert cfg.contracts[C].address == "wireleap://relay.example.com:13490"


# --- several contracts and upgrade channels -----------------------------------------------

def two(first=None, second=None):
    return {"address": "h:1", "contracts": {
        "https://a.example.com": {"role": "fronting", "address": "wireleap://h", **(first or {})},
        "https://b.example.com": {"role": "backing", "address": "wireleap://h:1",
                                  **(second or {})},
    }}


def test_several_contracts_one_channel():
    cfg, warnings = ok(two(second={"upgrade_channel": "beta"}))
    assert warnings == []
    assert cfg.upgrade_channel == "beta"
    assert len(cfg.contracts) == 2


def test_several_contracts_no_channel_is_a_warning():
    cfg, warnings = ok(two())
    assert warnings == ["contracts: no contract sets upgrade_channel; upgrades follow the "
                        "'default' channel"]
    assert cfg.upgrade_channel == "default"


def test_several_contracts_two_channels_is_an_error():
    assert problems(two({"upgrade_channel": "a"}, {"upgrade_channel": "b"})) == [
        "contracts: only one contract may set upgrade_channel (or the older "
        "update_channel), found 2 (https://a.example.com, https://b.example.com)"]


def test_several_contracts_update_channel_counts_as_a_channel():
    cfg, warnings = ok(two({"update_channel": "beta"}))
    assert cfg.upgrade_channel == "beta"
    assert not any("no contract sets" in w for w in warnings)
    assert problems(two({"update_channel": "a"}, {"upgrade_channel": "b"})) == [
        "contracts: only one contract may set upgrade_channel (or the older "
        "update_channel), found 2 (https://a.example.com, https://b.example.com)"]


def test_empty_channel_counts_as_unset():
    _, warnings = ok(two({"upgrade_channel": ""}, {"upgrade_channel": "b"}))
    assert warnings == []


def test_single_contract_channel():
    assert ok(build(entry={"upgrade_channel": "beta"}))[0].upgrade_channel == "beta"


def test_update_channel_is_deprecated_alias():
    cfg, warnings = ok(build(entry={"update_channel": "default"}))
    assert warnings == [f"{W}.update_channel: deprecated, use upgrade_channel"]
    assert cfg.contracts[C].upgrade_channel == "default"
    assert cfg.upgrade_channel == "default"


def test_upgrade_channel_wins_over_update_channel():
    cfg, warnings = ok(build(entry={"update_channel": "old", "upgrade_channel": "new"}))
    assert cfg.upgrade_channel == "new"
    assert warnings == [f"{W}.update_channel: deprecated, use upgrade_channel"]


# --- unknown keys --------------------------------------------------------------------------

def test_unknown_keys_are_warnings():
    cfg, warnings = ok(build({"colour": "blue", "danger_zone": {"allow_loopback": True,
                                                                "yolo": 1},
                              "network_usage": {"speed": 1}, "rest_api": {"port": 1}},
                             {"weight": 3}))
    assert cfg.allow_loopback is True
    assert warnings == [
        "colour: unknown key, ignored",
        "danger_zone.yolo: unknown key, ignored",
        "network_usage.speed: unknown key, ignored",
        "rest_api.port: unknown key, ignored",
        f"{W}.weight: unknown key, ignored",
    ]


def test_keys_are_case_sensitive_so_wrong_case_is_unknown():
    obj = build({"Bufsize": 1})
    _, warnings = ok(obj)
    assert warnings == ["Bufsize: unknown key, ignored (did you mean bufsize?)"]


@pytest.mark.parametrize("typo, meant", [
    ("adress", "address"), ("timout", "timeout"), ("auto_upgarde", "auto_upgrade"),
    ("max_conections", "max_connections"), ("danger_zone.allow_loopbak", "allow_loopback"),
])
def test_a_misspelt_key_gets_the_nearest_known_one(typo, meant):
    section, _, key = typo.rpartition(".")
    obj = build({section: {key: True}} if section else {typo: 1})
    obj.pop(meant, None)  # the misspelt key stands for the real one
    try:
        _, warnings = config.parse(json.dumps(obj).encode())
    except config.ConfigError as exc:
        warnings = exc.warnings  # `adress`: address is missing, and the warning says why
    prefix = f"{section}." if section else ""
    assert f"{typo}: unknown key, ignored (did you mean {prefix}{meant}?)" in warnings


# --- rest_api ------------------------------------------------------------------------------

@pytest.mark.parametrize("rest", [
    {"address": "http://127.0.0.1:8080"},
    {"address": "file:///run/wireleap-relay.sock", "socket_umask": "600"},
    {"socket_umask": "644"},
    {"socket_umask": "000"},
])
def test_rest_api_valid(rest):
    cfg, _ = ok(build({"rest_api": rest}))
    for key, value in rest.items():
        assert cfg.rest_api[key] == value


def test_rest_api_endpoint():
    cfg, _ = ok(build({"rest_api": {"address": "file:///run/r.sock", "socket_umask": "660"}}))
    assert (cfg.rest_api_endpoint.path, cfg.rest_api_endpoint.mode) == ("/run/r.sock", 0o660)
    assert ok(build({}))[0].rest_api_endpoint is None


def test_rest_api_http_needs_a_port():
    assert problems(build({"rest_api": {"address": "http://127.0.0.1"}})) == \
        ["rest_api.address: must be http://host:port with a port from 0 to 65535 and no "
         "path, got 'http://127.0.0.1'"]


def test_rest_api_file_with_host():
    assert problems(build({"rest_api": {"address": "file://host/x.sock"}})) == \
        ['rest_api.address: file path must start with "file:///"']


@pytest.mark.parametrize("address", ["localhost:8080", "0.0.0.0:8080", "https://h:1",
                                     "unix:///x.sock"])
def test_rest_api_scheme(address):
    assert problems(build({"rest_api": {"address": address}})) == \
        [f"rest_api.address: must be http://host:port or file:///path, got {address!r}"]


@pytest.mark.parametrize("umask", ["6000", "60", "800", "rw-", "", " 600"])
def test_rest_api_umask(umask):
    assert problems(build({"rest_api": {"socket_umask": umask}})) == \
        [f'rest_api.socket_umask: must be three octal digits like "600", got {umask!r}']


# --- byte sizes ----------------------------------------------------------------------------

@pytest.mark.parametrize("size, size_bytes", [
    ("500GB", 500 << 30), ("0", 0), ("0B", 0), ("1024", 1024), ("10 MB", 10 << 20),
    ("10mb", 10 << 20), ("10kB", 10 << 10), ("2TB", 2 << 40), ("1 byte", 1),
    ("3 gigabytes", 3 << 30), ("1kilobyte", 1024), ("7 PB", 7 << 50), ("1eb", 1 << 60),
    ("1b", 1)])
def test_byte_sizes_valid(size, size_bytes):
    cfg, _ = ok(build({"network_usage": {"global_limit": size}},
                      {"network_usage_limit": size}))
    assert cfg.network_usage["global_limit"] == size_bytes
    assert cfg.contracts[C].network_usage_limit == size_bytes


@pytest.mark.parametrize("size", ["1.5GB", "10 XB", "-1GB", "", "GB", "10GB!", "ten",
                                  "1kib"])
def test_byte_sizes_invalid(size):
    detail = f"must be a whole number of bytes with an optional unit (B, KB, MB, GB, TB, " \
             f"PB, EB), got {size!r}"
    assert problems(build({"network_usage": {"global_limit": size}},
                          {"network_usage_limit": size})) == [
        f"network_usage.global_limit: {detail}",
        f"{W}.network_usage_limit: {detail}",
    ]


@pytest.mark.parametrize("size", ["10Mb", "10 Mb", "10Kb", "10Gb", "10Tb", "10Pb", "10Eb"])
def test_byte_sizes_in_bits_are_refused(size):
    unit = size.lstrip("0123456789 ")
    assert problems(build({}, {"network_usage_limit": size})) == [
        f"{W}.network_usage_limit: {unit!r} means bits; write {unit[0]}B for bytes, "
        f"got {size!r}"]


def test_limits_without_a_timeframe_are_a_warning():
    _, warnings = ok(build({"network_usage": {"global_limit": "1TB"}}))
    assert warnings == ["network_usage.timeframe: not set, so usage is not tracked and the "
                        "usage limits are ignored"]
    _, warnings = ok(build({}, {"network_usage_limit": "1TB"}))
    assert len(warnings) == 1
    _, warnings = ok(build({"network_usage": {"timeframe": "30d"}}, {"network_usage_limit":
                                                                     "1TB"}))
    assert warnings == []


def test_write_interval_zero_is_a_warning():
    _, warnings = ok(build({"network_usage": {"timeframe": "30d", "write_interval": "0s"}}))
    assert warnings == ["network_usage.write_interval: 0s turns usage tracking off, and "
                        "with it the limits (the default is 1m0s)"]


# --- files ---------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = str(tmp_path / "config.json")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.problems == [
        f"{path}: no such file (create it, see the README's Configuration section)"]


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path))
    assert info.value.problems == [f"{tmp_path}: cannot read: Is a directory"]


@pytest.mark.parametrize("raw", [b"", b"{", b"{'address': 1}", b'{"address": "h:1",}',
                                 b"\xff\xfe"])
def test_not_json(tmp_path, raw):
    path = tmp_path / "config.json"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}: not valid JSON: ")


@pytest.mark.parametrize("raw", [b"[]", b'"config"', b"null", b"42", b"true"])
def test_not_an_object(raw):
    with pytest.raises(ConfigError) as info:
        config.parse(raw, "/h/config.json")
    assert info.value.problems == ["/h/config.json: must hold a JSON object"]


def test_load_from_file_with_trailing_newline(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BASE, indent=4) + "\n")
    cfg, warnings = config.load(str(path))
    assert cfg.address == "0.0.0.0:13490" and warnings == []


# --- every problem at once -----------------------------------------------------------------

def test_all_problems_reported_together():
    obj = {
        "address": "nohostport",
        "bufsize": 0,
        "timeout": "0s",
        "maxtime": "300ms",
        "auto_upgrade": "yes",
        "colour": "ignored",
        "danger_zone": {"allow_loopback": 1},
        "rest_api": {"address": "localhost:8080", "socket_umask": "800"},
        "network_usage": {"global_limit": "1.5GB"},
        "contracts": {
            "ftp://c": {"role": "x", "address": "http://h"},
            "https://d": {"role": "entropic", "address": "wireleap://h",
                          "upgrade_channel": "a"},
            "https://e": {"upgrade_channel": "b"},
            "https://f": None,
        },
    }
    with pytest.raises(ConfigError) as info:
        parse(obj)
    expected = [
        "address: must be host:port (e.g. 0.0.0.0:13490), got 'nohostport'",
        "maxtime: invalid duration '300ms': unknown unit 'ms' (use s, m, h or d; "
        "sub-second units are not supported)",
        "timeout: must be longer than 0s",
        "bufsize: must be between 1 and 16777216 bytes, got 0",
        "auto_upgrade: must be true or false",
        "danger_zone.allow_loopback: must be true or false",
        "network_usage.global_limit: must be a whole number of bytes with an optional unit "
        "(B, KB, MB, GB, TB, PB, EB), got '1.5GB'",
        'contracts["ftp://c"]: the contract URL must be http(s)://host[:port][/path]',
        "contracts[\"ftp://c\"].role: must be one of fronting, entropic, backing, got 'x'",
        "contracts[\"ftp://c\"].address: scheme must be wireleap:// (or legacy https://), "
        "got 'http://h'",
        'contracts["https://d"].address: an entropic relay needs an explicit port, '
        "e.g. wireleap://h:13490",
        'contracts["https://e"].role: has to be set',
        'contracts["https://e"].address: has to be set',
        'contracts["https://f"]: must be a JSON object (relay entry), got null',
        "contracts: only one contract may set upgrade_channel (or the older "
        "update_channel), found 2 (https://d, https://e)",
        "rest_api.address: must be http://host:port or file:///path, got 'localhost:8080'",
        'rest_api.socket_umask: must be three octal digits like "600", got \'800\'',
    ]
    assert info.value.problems == expected
    assert str(info.value) == "\n".join(expected)


def test_split_host_port_helper():
    assert config.split_host_port("[2001:db8::1]:443") == ("2001:db8::1", 443)
    assert config.split_host_port("[fe80::1%eth0]:80") == ("fe80::1%eth0", 80)
    with pytest.raises(ValueError):
        config.split_host_port("example.com")


def test_readme_usage_caps_example_loads():
    with open(os.path.join(os.path.dirname(DATA), "..", "README.md")) as f:
        section = f.read().split("## Usage caps", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    cfg, warnings = parse(json.loads(example))
    assert warnings == []
    assert cfg.network_usage == {"timeframe": 30 * duration.DAY, "global_limit": 20 << 40,
                                 "write_interval": None, "archive_dir": "usage"}
    assert cfg.contracts["https://contract1.example.com"].network_usage_limit == 5 << 40
