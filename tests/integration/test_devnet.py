"""`make run`: the local network comes up, a SOCKS5 client downloads through its 3-hop
circuit, and Ctrl-C stops everything it started."""

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def socks_get(socks: tuple[str, int], host: str, port: int, path: str) -> bytes:
    """HTTP/1.0 GET through a SOCKS5 proxy, resolving the name at the proxy side."""
    with socket.create_connection(socks, timeout=30) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        name = host.encode()
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
        reply = s.recv(10)
        assert reply[:2] == b"\x05\x00", reply
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_make_run_network(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "wireleap_relay.testing"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    lines = []
    try:
        deadline = time.monotonic() + 60
        while not any("Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        target = re.search(r"HTTP target\s+http://127\.0\.0\.1:(\d+)/", text)
        socks = re.search(r"SOCKS5 entry\s+127\.0\.0\.1:(\d+)", text)
        assert target and socks, text
        relay_homes = re.findall(r"\(home (\S+)\)", text)
        assert [os.path.basename(h) for h in relay_homes] == ["fronting", "entropic", "backing"]
        pids = [int(open(os.path.join(h, "wireleap-relay.pid")).read()) for h in relay_homes]
        response = socks_get(("127.0.0.1", int(socks.group(1))), "127.0.0.1",
                             int(target.group(1)), "/1000000")
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and len(body) == 1_000_000
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split()[2] == "Z"
