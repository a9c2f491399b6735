"""B1 of control.md §7.7 with the real Go client: the sharetoken it mints for a relay of
this project is stored by the relay, submitted once its servicekey's settlement window
opens, and accepted by the contract exactly once."""

import json
import os
import time

from wireleap_relay.testing.fake_contract import FakeContract
from wireleap_relay.testing.relayproc import RelayProcess, make_home
from wireleap_relay.wire import b64

from .conftest import FAST, accesskey, download, sha256_file, start_client, token_files, wait_for


def test_go_client_sharetoken_is_stored_submitted_and_accepted_once(peers, curl, web, tmp_path,
                                                                   stopper):
    # Servicekeys that reach settlement_open 4 s after activation, a window open long after.
    contract = stopper.add(FakeContract(tmp_path / "contract", servicekey_duration=4,
                                        submission_window=600).start())
    relay = stopper.add(RelayProcess(
        make_home(str(tmp_path), "backing", contract.url, "backing",
                  auto_submit_interval="1s", archive_dir="archive"), env=FAST)).start()
    client = start_client(str(tmp_path / "client"), peers, accesskey(str(tmp_path), contract, 5),
                          stopper, whitelist=[relay.relay.address])

    out = str(tmp_path / "blob")
    done = download(curl, client, web.base + "/blob", out)
    assert (done.returncode, done.stdout) == (0, "200"), done.stderr
    assert sha256_file(out) == web.sha256

    # Stored at once, under sharetokens/<contract pk>/<signature>.json.
    [path] = token_files(relay)
    assert os.path.dirname(path) == os.path.join(relay.relay.home.sharetokens,
                                                 b64.encode(contract.contract_pubkey))
    with open(path) as f:
        token = json.load(f)
    signature = token["signature"]
    assert os.path.basename(path) == f"{signature}.json"
    assert token["relay_pubkey"] == b64.encode(relay.relay.pubkey)
    assert token["contract"]["public_key"] == b64.encode(contract.contract_pubkey)
    assert token["public_key"] in contract.snapshot()["activated"]  # the client's servicekey

    # Submitted after settlement_open, accepted, archived.
    assert wait_for(lambda: signature in contract.snapshot()["tokens"], timeout=15), \
        relay.log_text()[-2000:]
    archived = os.path.join(relay.relay.home.root, "archive",
                            b64.encode(contract.contract_pubkey), f"{signature}.json")
    assert wait_for(lambda: os.path.exists(archived))
    assert token_files(relay) == []
    time.sleep(2.5)  # a few more submission ticks: nothing goes twice
    state = contract.snapshot()
    assert state["submissions"] == {signature: 1}
    assert list(state["tokens"]) == [signature]
    assert state["tokens"][signature]["relay"] == b64.encode(relay.relay.pubkey)
