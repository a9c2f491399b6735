"""`python -m wireleap_relay.testing socks CONTRACT_URL`: a SOCKS5 entry point in front of
the relays enrolled in a fake contract's directory, so that one can send one's own traffic
through a relay one installed (README, "Trying a relay on your machine"). The circuit takes
one enrolled relay of each role present, in the client's order (fronting, entropic,
backing), and pays with servicekeys the fake contract hands out to anyone."""

import argparse
import signal
from collections.abc import Callable

import gevent.event
import requests

from wireleap_relay.testing import circuit
from wireleap_relay.testing.servicekey import Wallet
from wireleap_relay.testing.socks5 import Socks5Server
from wireleap_relay.wire import b64

ROLES = ("fronting", "entropic", "backing")
SOCKS_PORT = 13491  # the Go client's default SOCKS port
Hops = list[tuple[str, bytes]]


def circuit_dialer(hops: Hops, wallet: Wallet) -> Callable[[str, int, str], circuit.Circuit]:
    """What a SOCKS5 server calls for each connection: a fresh circuit through `hops`."""
    def dial(host: str, port: int, protocol: str) -> circuit.Circuit:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return circuit.dial(hops, target, protocol, *wallet.current())
    return dial


def enrolled_hops(contract_url: str) -> Hops:
    """One relay per role from the contract's directory, in circuit order."""
    info = requests.get(contract_url.rstrip("/") + "/info", timeout=10).json()
    listed = requests.get(info["directory"]["endpoint"].rstrip("/") + "/relays",
                          timeout=10).json()
    by_role: dict[str, tuple[str, bytes]] = {}
    for address, entry in sorted(listed.items()):
        by_role.setdefault(entry["role"], (address, b64.decode(entry["pubkey"])))
    return [by_role[role] for role in ROLES if role in by_role]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m wireleap_relay.testing socks",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("contract", help="the fake contract's URL")
    parser.add_argument("--port", type=int, default=SOCKS_PORT,
                        help=f"SOCKS5 port on 127.0.0.1 (default {SOCKS_PORT})")
    args = parser.parse_args(argv)
    hops = enrolled_hops(args.contract)
    if not hops:
        print(f"no relay is enrolled in {args.contract}: start yours first")
        return 1
    socks = Socks5Server(listen=("127.0.0.1", args.port),
                         dial=circuit_dialer(hops, Wallet(args.contract)))
    socks.start()
    host, port = socks.address[:2]
    print("circuit: " + ", ".join(address for address, _ in hops))
    print(f"SOCKS5 entry {host}:{port}; try: curl --socks5-hostname {host}:{port} "
          "https://example.com/\nCtrl-C stops it.", flush=True)
    stop = gevent.event.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stop.set)
    stop.wait()
    socks.stop()
    return 0
