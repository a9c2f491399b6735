"""The local status API (control.md §6.2) and /metrics of a running relay: over TCP and a
unix socket with its mode, Go's exact refusals, counters that move by what was relayed, a
listener that follows reload and hand-over, and clients that cannot hold it up."""

import json
import os
import socket
import stat

import pytest
from conftest import (
    FAST,
    echo_byte_then_replay,
    echo_once,
    random_bytes,
    run_cli,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

from wireleap_relay import pidfile
from wireleap_relay.restapi.http import MAX_CLIENTS
from wireleap_relay.testing import circuit
from wireleap_relay.testing.relayproc import RelayProcess, free_port, make_home, write_config
from wireleap_relay.wire import b64

TEXT = "text/plain; charset=utf-8"


def tcp_api() -> dict:
    return {"address": f"http://127.0.0.1:{free_port()}"}


def unix_api(folder, mode: str | None = None) -> dict:
    api = {"address": f"file://{folder}/api.sock"}
    if mode:
        api["socket_umask"] = mode
    return api


def connect_api(api: dict) -> socket.socket:
    address = api["address"]
    if address.startswith("file://"):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(20)
        sock.connect(address.removeprefix("file://"))
    else:
        host, port = address.removeprefix("http://").rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=20)
    return sock


def request(api: dict, method: str, path: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """(status, headers, body) of one HTTP/1.1 exchange, read until the server closes."""
    with connect_api(api) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: relay\r\nContent-Length: "
                     f"{len(body)}\r\n\r\n".encode() + body)
        return parse_response(read_all(sock))


def read_all(sock: socket.socket) -> bytes:
    parts = []
    while data := sock.recv(65536):
        parts.append(data)
    return b"".join(parts)


def parse_response(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def metrics(api: dict) -> dict[tuple, float]:
    """Every sample as {(name, sorted labels): value}."""
    code, _, body = request(api, "GET", "/metrics")
    assert code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def start(tmp_path, contract, api: dict, **settings) -> RelayProcess:
    home = make_home(str(tmp_path), "relay", contract.url, "backing", rest_api=api,
                     **settings)
    return RelayProcess(home, env=FAST).start()


@pytest.fixture
def stopping():
    started: list[RelayProcess] = []
    yield started
    for proc in started:
        proc.stop()


def test_status_over_tcp_in_the_shape_of_relay_0_6_1(tmp_path, contract, stopping):
    api = tcp_api()
    relay = start(tmp_path, contract, api)
    stopping.append(relay)
    code, headers, body = request(api, "GET", "/api/status")
    assert (code, headers["content-type"]) == (200, TEXT)
    assert json.loads(body) == {
        "controller_started": True,
        "network_usage": None,
        "relay_status": [{
            "id": b64.encode(contract.contract_pubkey), "address": relay.relay.address,
            "role": "backing", "status": {"enrolled": True, "network_cap_reached": False},
            "network_cap": None, "network_usage": 0}],
    }
    assert body == json.dumps(json.loads(body), separators=(",", ":")).encode()  # compact


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_and_paths_get_go_s_answers(tmp_path, contract, stopping, method):
    api = tcp_api()
    stopping.append(start(tmp_path, contract, api))
    code, headers, body = request(api, method, "/api/status", b'{"x": 1}')
    assert (code, headers["content-type"]) == (405, TEXT)
    assert body == (b'{"code":405,"description":"HTTP method not allowed","cause":"request '
                    b"uses unsupported HTTP method '" + method.encode() +
                    b"', supported methods are: [GET]\"}\n\n")
    for path in ("/", "/api", "/api/status/", "/api/statusx"):
        assert request(api, "GET", path)[::2] == (404, b"404 page not found\n")


def test_status_over_a_unix_socket_with_its_mode(tmp_path, contract, stopping):
    path = tmp_path / "api.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file a crashed relay left: replaced
    stale.close()
    api = unix_api(tmp_path, "640")
    relay = start(tmp_path, contract, api)
    stopping.append(relay)
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o640
    code, _, body = request(api, "GET", "/api/status")
    assert code == 200 and json.loads(body)["controller_started"] is True
    assert relay.stop() == 0
    assert not path.exists()


def test_the_default_socket_mode_is_600(tmp_path, contract, stopping):
    stopping.append(start(tmp_path, contract, unix_api(tmp_path)))
    assert stat.S_IMODE(os.stat(tmp_path / "api.sock").st_mode) == 0o600


def test_a_file_in_the_way_of_the_socket_is_kept_and_start_says_why(tmp_path, contract):
    (tmp_path / "api.sock").write_text("precious")
    home = make_home(str(tmp_path), "relay", contract.url, "backing",
                     rest_api=unix_api(tmp_path))
    started = run_cli(home.home, "start", env=FAST)
    assert started.returncode == 1
    assert "could not listen on rest_api.address" in started.stdout + started.stderr
    assert "exists and is not a socket" in started.stdout + started.stderr
    assert (tmp_path / "api.sock").read_text() == "precious"


def test_metrics_count_what_was_relayed(tmp_path, contract, wallet, echo_server, stopping):
    api = tcp_api()
    relay = start(tmp_path, contract, api, workers=2)
    stopping.append(relay)
    pk = b64.encode(contract.contract_pubkey)
    before = metrics(api)
    block = random_bytes(50_000)
    for _ in range(3):
        assert echo_once(relay, wallet, echo_server, block)
    assert echo_byte_then_replay(relay, wallet, echo_server) == "duplicate sharetoken"
    sent = 3 * len(block) + 1
    key = {"sent": ("wireleap_relay_relayed_bytes_total",
                    (("contract", pk), ("direction", "from_client"))),
           "received": ("wireleap_relay_relayed_bytes_total",
                        (("contract", pk), ("direction", "from_remote"))),
           "ok": ("wireleap_relay_streams_total", (("outcome", "ok"),)),
           "refused": ("wireleap_relay_streams_total", (("outcome", "refused"),)),
           "tokens": ("wireleap_relay_sharetokens_accepted_total", ()),
           "connections": ("wireleap_relay_connections_total", ())}
    expected = {"sent": sent, "received": sent, "ok": 4, "refused": 1, "tokens": 4,
                "connections": 5}
    now: dict = {}

    def moved() -> dict:
        return {name: now.get(k, 0) - before.get(k, 0) for name, k in key.items()}

    assert wait_for(lambda: now.update(metrics(api)) or moved() == expected), moved()
    assert now[("wireleap_relay_contract_enrolled", (("contract", pk), ("role", "backing"),
                                                    ("url", contract.url)))] == 1
    assert now[("wireleap_relay_controller_started", ())] == 1
    assert now[("wireleap_relay_workers", ())] == 2
    assert now[("wireleap_relay_streams_active", ())] == 0
    assert ("wireleap_relay_contract_last_heartbeat_timestamp_seconds",
            (("contract", pk),)) in now
    assert any(name == "wireleap_relay_build_info" for name, _ in now)


def test_reload_moves_the_listener(tmp_path, contract, stopping):
    first = tcp_api()
    relay = start(tmp_path, contract, first)
    stopping.append(relay)
    second = unix_api(tmp_path)
    write_config(relay.relay, contract.url, rest_api=second)
    reloaded = run_cli(relay.relay.home, "reload", env=FAST)
    assert reloaded.returncode == 0, reloaded.stderr
    assert request(second, "GET", "/api/status")[0] == 200
    with pytest.raises(ConnectionRefusedError):
        connect_api(first)
    third = tcp_api()
    write_config(relay.relay, contract.url, rest_api=third)
    assert run_cli(relay.relay.home, "reload", env=FAST).returncode == 0
    assert request(third, "GET", "/api/status")[0] == 200
    assert not (tmp_path / "api.sock").exists()


def test_a_reload_to_a_taken_address_keeps_the_api_where_it_was(tmp_path, contract,
                                                               stopping):
    api = tcp_api()
    relay = start(tmp_path, contract, api)
    stopping.append(relay)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        write_config(relay.relay, contract.url,
                     rest_api={"address": f"http://127.0.0.1:{taken.getsockname()[1]}"})
        reloaded = run_cli(relay.relay.home, "reload", env=FAST)
    assert reloaded.returncode == 0
    assert f"config reloaded, but the status API stays on {api['address']}: could not " \
        "listen on" in relay.log_text()
    assert request(api, "GET", "/api/status")[0] == 200


def started_at(api: dict) -> float | None:
    """The answering master's start time; None while nothing answers."""
    try:
        return metrics(api)[("wireleap_relay_start_time_seconds", ())]
    except OSError:
        return None


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_the_api_survives_a_restart_hand_over(tmp_path, contract, wallet, echo_server, kind):
    """The new master serves the API while the old one still drains a stream: the old
    one let go of it at the hand-over, not at its exit."""
    api = tcp_api() if kind == "tcp" else unix_api(tmp_path)
    relay = make_home(str(tmp_path), "relay", contract.url, "backing", rest_api=api)
    home = relay.home
    try:
        assert run_cli(home, "start", env=FAST).returncode == 0
        old_pid = pidfile.read(home.pid_file)
        old = started_at(api)
        assert old is not None
        draining = circuit.dial([(relay.address, relay.pubkey)], echo_server, "tcp",
                                *wallet.current(), pool=circuit.ConnectionPool())
        draining.settimeout(20)
        draining.sendall(b"x")
        assert draining.recv(1) == b"x"
        restarted = run_cli(home, "restart", env=FAST)
        assert restarted.returncode == 0, restarted.stderr
        assert wait_for(lambda: started_at(api) not in (None, old))
        assert pidfile.alive(old_pid)  # still draining
        draining.close()
        assert wait_for(lambda: not pidfile.alive(old_pid))
        assert started_at(api) not in (None, old)  # the old master left it to the new one
    finally:
        run_cli(home, "stop", env=FAST)
    if kind == "unix":
        assert not (tmp_path / "api.sock").exists()


def test_clients_that_hold_on_or_send_garbage_do_not_block_others(tmp_path, contract,
                                                                  stopping):
    api = tcp_api()
    stopping.append(start(tmp_path, contract, api))
    # As many clients as are served at once, each sending half a request and waiting.
    holders = [connect_api(api) for _ in range(MAX_CLIENTS)]
    for holder in holders:
        holder.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
    with connect_api(api) as garbage:
        garbage.sendall(b"\x16\x03\x01\x02\x00 not http\r\n\r\n")
        assert parse_response(read_all(garbage))[0] == 400
    with connect_api(api) as huge:
        huge.sendall(b"GET /api/status HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n")
        assert parse_response(read_all(huge))[0] == 431
    # Each holder is dropped at its deadline, so a good client gets its answer.
    assert request(api, "GET", "/api/status")[0] == 200
    for holder in holders:
        assert read_all(holder) == b""
        holder.close()
