"""`python -m wireleap_relay.testing socks URL`, the README's way to send one's own traffic
through a relay one installed: it finds the relay in the fake contract's directory."""

import os
import subprocess
import sys

from conftest import ROOT, socks_get
from gevent.pywsgi import WSGIServer

from wireleap_relay.testing.devnet import bytes_app
from wireleap_relay.testing.relayproc import RelayProcess, free_port, make_home


def test_traffic_goes_through_the_enrolled_relay(tmp_path, make_fake):
    fake = make_fake()
    mine = RelayProcess(make_home(str(tmp_path), "mine", fake.url, "backing")).start()
    web = WSGIServer(("127.0.0.1", 0), bytes_app, log=None)
    web.start()
    port = free_port()
    entry = subprocess.Popen([sys.executable, "-m", "wireleap_relay.testing", "socks", fake.url,
                              "--port", str(port)], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        assert entry.stdout.readline() == f"circuit: {mine.relay.address}\n"
        assert entry.stdout.readline().startswith(f"SOCKS5 entry 127.0.0.1:{port}; ")
        response = socks_get(("127.0.0.1", port), "127.0.0.1", web.address[1], "/5000")
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body == bytes(5000)
        tokens = [name for _, _, names in os.walk(mine.relay.home.sharetokens)
                  for name in names if name.endswith(".json")]
        assert len(tokens) == 1  # the relay was paid for it
    finally:
        entry.terminate()
        assert entry.wait(30) == 0
        web.stop()
        mine.stop()


def test_no_relay_enrolled_says_so(make_fake):
    fake = make_fake()
    said = subprocess.run([sys.executable, "-m", "wireleap_relay.testing", "socks", fake.url],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT),
                          timeout=60)
    assert (said.returncode, said.stdout) == (
        1, f"no relay is enrolled in {fake.url}: start yours first\n")
