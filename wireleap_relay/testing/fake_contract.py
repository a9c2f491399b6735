"""Fake service contract + directory on one loopback port (control.md §7): the HTTP layer,
test hooks under /_fake, the `FakeContract` API and the command line.

Contract at `/`, directory under `/dir`. Standard library HTTP/1.1 with keep-alive and
threads only, so it runs in plain processes and in gevent-monkey-patched ones alike.

    python -m wireleap_relay.testing.fake_contract --state-dir DIR [--port N] [--ready-file F]
"""

import argparse
import copy
import ipaddress
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from wireleap_relay.fsutil import write_atomic
from wireleap_relay.testing.fake_directory import Directory
from wireleap_relay.testing.fake_ledger import ContractLedger
from wireleap_relay.testing.fake_state import (
    DESCRIPTIONS,
    ROLES,
    FakeError,
    FakeSettings,
    FakeStore,
    Reply,
    json_reply,
    ok_reply,
    parse_object,
    relay_auth,
    semver_key,
    status_reply,
)
from wireleap_relay.wire.status import Status

# Interface versions (control.md §1.2) per area: sent on responses, checked on requests.
_VERSION_HEADERS = {
    "contract": {"Wireleap-Relay-Contract-Version": "0.1.0",
                 "Wireleap-Client-Contract-Version": "0.1.0"},
    "dir": {"Wireleap-Relay-Dir-Version": "0.2.0", "Wireleap-Client-Dir-Version": "0.2.0"},
    "hook": {},
}
_WITHDRAWAL_OUTCOMES = ("complete", "failed")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Message
    body: bytes


Handler = Callable[[Request], Reply]


@dataclass(frozen=True)
class Fault:
    """How the fake misbehaves toward the relay (every path but the /_fake hooks): late by
    `delay` seconds, then, if set, `reply` instead of the real answer."""

    delay: float = 0.0
    reply: Reply | None = None


SERVER_ERROR = Fault(reply=Reply(500, b"internal server error\n"))
GARBAGE = Fault(reply=Reply(200, b"\x00{not json at all"))


class FakeApp:
    """Routes one request to the ledger, the directory or a hook, under the store lock."""

    def __init__(self, store: FakeStore, settings: FakeSettings, base_url: str) -> None:
        self.store = store
        self.fault: Fault | None = None  # tests set it to make the fake misbehave
        self.submit_delay = settings.submit_delay
        self.ledger = ContractLedger(store, settings)
        self.directory = Directory(store, settings)
        self.routes: dict[str, dict[str, Handler]] = {
            "/info": {"GET": lambda r: json_reply(self.ledger.info(base_url))},
            "/servicekey/activate": {"POST": lambda r: json_reply(self.ledger.activate(r.body))},
            "/submit": {"POST": self._submit},
            "/payout/balance": {"GET": self._payout(self.ledger.balance)},
            "/payout/tokens": {"GET": self._payout(self.ledger.tokens)},
            "/payout/withdrawals": {"GET": self._payout(self.ledger.last_withdrawal),
                                    "POST": self._withdraw},
            "/dir/info": {"GET": lambda r: json_reply(self.directory.info(f"{base_url}/dir"))},
            "/dir/relays": {"GET": lambda r: self.directory.relay_list(),
                            "POST": lambda r: self.directory.enroll(r.headers, r.body),
                            "DELETE": lambda r: self.directory.disenroll(r.headers, r.body)},
            "/_fake/clock": {"POST": self._hook_clock},
            "/_fake/upgrade": {"POST": self._hook_upgrade},
            "/_fake/payments": {"POST": self._hook_payments},
            "/_fake/withdrawal": {"POST": self._hook_withdrawal},
            "/_fake/state": {"GET": lambda r: json_reply(self.snapshot())},
            "/_fake/expire_relays": {
                "POST": lambda r: json_reply({"expired": self.directory.expire_all()})},
        }

    def handle(self, request: Request) -> Reply:
        area = _area(request.path)
        fault = self.fault
        if fault is not None and not request.path.startswith("/_fake/"):
            time.sleep(fault.delay)
            if fault.reply is not None:
                return fault.reply
        try:
            handler = self._route(request)
            _check_versions(area, request.headers)
            if request.path == "/submit" and self.submit_delay:
                time.sleep(self.submit_delay)  # outside the lock: slow, not serialised
            with self.store.lock:
                reply = handler(request)
        except FakeError as err:
            reply = status_reply(err.status)
        except Exception as exc:  # a fake bug must still answer, and loudly
            traceback.print_exc()
            reply = status_reply(Status(500, DESCRIPTIONS[500], cause=repr(exc)))
        reply.headers.update(_VERSION_HEADERS[area])
        return reply

    def snapshot(self) -> dict[str, Any]:
        with self.store.lock:
            return {"now": self.store.now(), **copy.deepcopy(self.store.data)}

    def _route(self, request: Request) -> Handler:
        methods = self.routes.get(request.path)
        if methods is None:
            raise FakeError(404)
        if request.method not in methods:
            raise FakeError(405, f"request uses unsupported HTTP method '{request.method}', "
                                 f"supported methods are: [{' '.join(methods)}]")
        return methods[request.method]

    def _submit(self, request: Request) -> Reply:
        self.ledger.submit(request.headers, request.body)
        return ok_reply()

    def _payout(self, read: Callable[[str], Any]) -> Handler:
        return lambda r: json_reply(read(relay_auth(r.headers, r.body)))

    def _withdraw(self, request: Request) -> Reply:
        relay = relay_auth(request.headers, request.body)
        return json_reply(self.ledger.withdraw(relay, request.body))

    def _hook_clock(self, request: Request) -> Reply:
        offset = _hook_value(request, "offset", int)
        self.store.data["clock_offset"] = offset
        self.store.save()
        return json_reply({"offset": offset, "now": self.store.now()})

    def _hook_upgrade(self, request: Request) -> Reply:
        """{"relay": version, "channel"?: name, "force"?: bool}; force skips the comparison."""
        version = _hook_value(request, "relay", str)
        if semver_key(version) is None:
            raise FakeError(400, f"'{version}' is not a semver version")
        body = parse_object(request.body, "hook body")
        hooks = self.store.data["hooks"]
        hooks["upgrade_channels"][str(body.get("channel", "default"))] = version
        hooks["force_upgrade"] = bool(body.get("force", False))
        self.store.save()
        return json_reply({"relay": self.directory.upgrade_channels(),
                           "force": hooks["force_upgrade"]})

    def _hook_payments(self, request: Request) -> Reply:
        unreachable = _hook_value(request, "unreachable", bool)
        self.store.data["hooks"]["payments_unreachable"] = unreachable
        self.store.save()
        return json_reply({"unreachable": unreachable})

    def _hook_withdrawal(self, request: Request) -> Reply:
        """Sets how due withdrawals end from now on; they finish at the next settle."""
        outcome = _hook_value(request, "outcome", str)
        if outcome not in _WITHDRAWAL_OUTCOMES:
            raise FakeError(400, f"outcome must be one of {list(_WITHDRAWAL_OUTCOMES)}")
        self.store.data["hooks"]["withdrawal_outcome"] = outcome
        self.store.save()
        return json_reply({"outcome": outcome})


def _area(path: str) -> str:
    if path == "/dir" or path.startswith("/dir/"):
        return "dir"
    return "hook" if path.startswith("/_fake/") else "contract"


def _check_versions(area: str, headers: Message) -> None:
    """What a Go VersionGate does (§7.2.5): same minor, or 400."""
    for name, ours in _VERSION_HEADERS[area].items():
        theirs = headers.get(name)
        if theirs is None:
            continue
        key = semver_key(theirs)
        minor = ours.split(".")[1]
        if key is None or key[0][1] != int(minor):
            raise FakeError(400, f"invalid client API version: expecting version 0.{minor}.x, "
                                 f"got {theirs}")


def _hook_value(request: Request, name: str, kind: type) -> Any:
    value = parse_object(request.body, "hook body").get(name)
    # bool is an int in Python; a JSON true is no clock offset.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FakeError(400, f"hook needs '{name}' of type {kind.__name__}")
    return value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    # Headers and body go out in two writes; Nagle + delayed ACK would add 40 ms to each.
    disable_nagle_algorithm = True
    server: "_Server"

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.send_error(400, "bad Content-Length")
            return
        # Always drain the body (Go sends `null` even with GET) or keep-alive desyncs.
        body = self.rfile.read(length) if length > 0 else b""
        # Collapse slashes before splitting off the query: "//info" is a path, not a host.
        path = re.sub("/+", "/", self.path).split("?", 1)[0]
        reply = self.server.app.handle(Request(self.command, path, self.headers, body))
        self.send_response(reply.code)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        if self.server.log_requests:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    """Remembers open connections so stop() can cut keep-alive clients of a stale app."""

    daemon_threads = True
    app: FakeApp  # set right after binding: the app needs the bound port for its URLs

    def __init__(self, address: tuple[str, int], log_requests: bool) -> None:
        super().__init__(address, _Handler)
        self.log_requests = log_requests
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._closing = False

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self._closing:  # a cut keep-alive connection is no error worth a traceback
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._connections_lock:
            self._closing = True
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone


class FakeContract:
    """The fake on a loopback port, bound at construction so `url` is known at once.

    `settings` are the fields of `FakeSettings` (servicekey_duration=30, relay_ttl=900, ...).
    """

    def __init__(self, state_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
                 log_requests: bool = False, **settings: Any) -> None:
        if not ipaddress.IPv4Address(host).is_loopback:
            raise ValueError(f"the fake binds loopback addresses only, not {host}")
        self.settings = FakeSettings(**settings)
        self.store = FakeStore(state_dir)
        self._server = _Server((host, port), log_requests=log_requests)
        self.url = f"http://{host}:{self._server.server_port}"
        self.app = FakeApp(self.store, self.settings, self.url)
        self._server.app = self.app
        self._thread: threading.Thread | None = None

    @property
    def dir_url(self) -> str:
        return f"{self.url}/dir"

    @property
    def contract_pubkey(self) -> bytes:
        return self.app.ledger.pubkey

    @property
    def directory_pubkey(self) -> bytes:
        return self.app.directory.pubkey

    def now(self) -> int:
        """Contract-side time: wall clock plus the /_fake/clock offset."""
        return self.store.now()

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state that GET /_fake/state returns."""
        return self.app.snapshot()

    def start(self) -> "FakeContract":
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fake-contract", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._server.close_connections()

    def __enter__(self) -> "FakeContract":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wireleap_relay.testing.fake_contract",
                                description="Fake Wireleap contract + directory for tests.")
    p.add_argument("--state-dir", required=True, help="folder of the persistent state file")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--ready-file", help="write the URL here once listening")
    p.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    p.add_argument("--servicekey-duration", type=int, default=30, metavar="SECONDS")
    p.add_argument("--submission-window", type=int, default=60, metavar="SECONDS")
    p.add_argument("--servicekey-value", default="100", help="rational, smallest currency unit")
    p.add_argument("--currency", default="usd")
    p.add_argument("--fee-percent", default="5", help="rational")
    p.add_argument("--min-withdrawal", type=int, default=1)
    p.add_argument("--max-withdrawal", type=int, default=100000)
    p.add_argument("--withdrawal-delay", type=int, default=0, metavar="SECONDS")
    p.add_argument("--submit-delay", type=float, default=0.0, metavar="SECONDS",
                   help="answer every /submit this much later (a slow contract)")
    p.add_argument("--relay-ttl", type=int, default=900, metavar="SECONDS")
    p.add_argument("--no-challenge", action="store_true", help="enroll without bcrypt PoW")
    p.add_argument("--challenge-cost", type=int, default=4)
    p.add_argument("--enrollment-key", action="append", default=[], metavar="ROLE=KEY",
                   help="restrict ROLE to the given keys (repeatable)")
    p.add_argument("--upgrade-version", default="0.6.1",
                   help="relay 'default' upgrade channel; '' leaves it out")
    p.add_argument("--contract-seed", type=bytes.fromhex, default=None, metavar="HEX64")
    p.add_argument("--directory-seed", type=bytes.fromhex, default=None, metavar="HEX64")
    return p


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    keys: dict[str, list[str]] = {}
    for item in args.enrollment_key:
        role, sep, key = item.partition("=")
        if not sep or role not in ROLES:
            raise SystemExit(f"--enrollment-key wants ROLE=KEY with ROLE in {ROLES}: {item}")
        keys.setdefault(role, []).append(key)
    settings = {name: getattr(args, name) for name in (
        "servicekey_duration", "submission_window", "servicekey_value", "currency",
        "fee_percent", "min_withdrawal", "max_withdrawal", "withdrawal_delay", "submit_delay",
        "relay_ttl",
        "challenge_cost", "upgrade_version")}
    settings.update(challenge=not args.no_challenge, enrollment_keys=keys)
    for name in ("contract_seed", "directory_seed"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    fake = FakeContract(args.state_dir, host=args.host, port=args.port,
                        log_requests=not args.quiet, **_settings(args))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    fake.start()
    if args.ready_file:
        write_atomic(args.ready_file, fake.url.encode())
    print(f"fake contract listening on {fake.url}", flush=True)
    stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
