"""The status API's pure parts: the endpoint rules, the status document, the answers by
path and method, the request line, and the pending sharetoken arithmetic."""

import json
from dataclasses import dataclass

import pytest

from wireleap_relay.config import ContractEntry
from wireleap_relay.restapi import endpoint, routes
from wireleap_relay.restapi.endpoint import Endpoint
from wireleap_relay.restapi.http import parse_request_line, render
from wireleap_relay.restapi.status import status_document
from wireleap_relay.tokens.counts import TokenCounts
from wireleap_relay.usage.tracker import UsageOff


@pytest.mark.parametrize("address, expected", [
    ("http://127.0.0.1:8080", Endpoint(host="127.0.0.1", port=8080)),
    ("http://localhost:0", Endpoint(host="localhost", port=0)),
    ("http://[::1]:9", Endpoint(host="::1", port=9)),
    ("http://:8080", Endpoint(host="", port=8080)),
    ("file:///run/relay/api.sock", Endpoint(path="/run/relay/api.sock", mode=0o640)),
])
def test_endpoints(address, expected):
    assert endpoint.parse(address, 0o640 if address.startswith("file") else 0o600) == \
        expected


@pytest.mark.parametrize("address, problem", [
    ("http://127.0.0.1", "must be http://host:port with a port"),
    ("http://127.0.0.1:99999", "must be http://host:port with a port"),
    ("http://127.0.0.1:80/api", "and no path"),
    ("file://host/x.sock", 'file path must start with "file:///"'),
    ("file:///", "file:// needs the socket file's path"),
    ("file:///run/", "file:// needs the socket file's path"),
    ("file:///" + "a" * 120, "at most 107 bytes"),
    ("unix:///x.sock", "must be http://host:port or file:///path"),
])
def test_endpoint_problems_name_the_key(address, problem):
    with pytest.raises(ValueError) as caught:
        endpoint.parse(address)
    assert str(caught.value).startswith("rest_api.address: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize("umask, mode", [(None, 0o600), ("640", 0o640), ("007", 0o7)])
def test_socket_modes(umask, mode):
    assert endpoint.parse_mode(umask) == mode


@pytest.mark.parametrize("umask", ["800", "60", "0600", "rw-", ""])
def test_bad_socket_modes(umask):
    with pytest.raises(ValueError, match="rest_api.socket_umask: must be three octal"):
        endpoint.parse_mode(umask)


def test_str_gives_the_configured_form_back():
    assert str(endpoint.parse("http://[::1]:9")) == "http://[::1]:9"
    assert str(endpoint.parse("file:///a/b.sock")) == "file:///a/b.sock"


@dataclass
class FakeContract:
    pubkey: bytes
    entry: ContractEntry
    enrolled: bool


class CappedUsage:
    def status_json(self) -> dict | None:
        return {"timeframe_since": 1, "timeframe_until": 2, "cap": 0, "usage": 7}

    def contract_json(self, contract_pk_b64: str) -> dict:
        return {"network_cap": 100, "network_usage": 7, "network_cap_reached": True}


def contracts() -> list[FakeContract]:
    entry = ContractEntry(url="https://c.example", role="fronting",
                          address="wireleap://r.example:443/wl")
    return [FakeContract(b"\x01" * 32, entry, True)]


def test_the_status_document_in_go_s_field_order():
    document = status_document(True, contracts(), CappedUsage())
    assert json.dumps(document, separators=(",", ":")) == (
        '{"controller_started":true,"network_usage":{"timeframe_since":1,'
        '"timeframe_until":2,"cap":0,"usage":7},"relay_status":[{"id":'
        '"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","address":"wireleap://r.example:443/wl",'
        '"role":"fronting","status":{"enrolled":true,"network_cap_reached":true},'
        '"network_cap":100,"network_usage":7}]}')


def test_with_usage_off_there_is_no_network_usage():
    document = status_document(False, contracts(), UsageOff())
    assert document["network_usage"] is None
    assert document["relay_status"][0]["network_cap"] is None
    assert document["relay_status"][0]["network_usage"] == 0


def answer():
    return routes.handler(lambda: {"a": 1}, lambda: (b"m 1\n", "text/plain; version=0.0.4"))


def test_routes():
    assert answer()("GET", "/api/status").body == b'{"a":1}'
    assert answer()("GET", "/metrics").body == b"m 1\n"
    refused = answer()("HEAD", "/api/status")
    assert refused.status == 405 and b"unsupported HTTP method 'HEAD'" in refused.body
    assert answer()("GET", "/api/status/").body == b"404 page not found\n"


@pytest.mark.parametrize("line, parsed", [
    (b"GET /api/status HTTP/1.1\r\n\r\n", ("GET", "/api/status")),
    (b"GET /api/status?x=1 HTTP/1.0\r\n\r\n", ("GET", "/api/status")),
    (b"GET http://relay:8080/metrics HTTP/1.1\r\n\r\n", ("GET", "/metrics")),
    (b"GET http://relay HTTP/1.1\r\n\r\n", ("GET", "/")),
    (b"GET /api/status HTTP/2.0\r\n\r\n", None),
    (b"GET /api/status\r\n\r\n", None),
    (b"G(T / HTTP/1.1\r\n\r\n", None),
    (b"GET api HTTP/1.1\r\n\r\n", None),
    (b"\x16\x03\x01 / HTTP/1.1\r\n\r\n", None),
    (b"GET /\xff HTTP/1.1\r\n\r\n", None),
])
def test_request_lines(line, parsed):
    assert parse_request_line(line) == parsed


def test_a_head_answer_has_no_body():
    response = routes.NOT_FOUND
    assert render(response).endswith(b"\r\n\r\n404 page not found\n")
    head_answer = render(response, with_body=False)
    assert head_answer.endswith(b"Content-Length: 19\r\nConnection: close\r\n\r\n")
    assert b"X-Content-Type-Options: nosniff\r\n" in head_answer


def test_pending_tokens_follow_the_listing():
    accepted = [10]
    counts = TokenCounts(lambda: accepted[0])
    assert counts.pending is None
    counts.listed(4)
    assert counts.pending == 4
    accepted[0] += 3
    counts.submitted += 2
    counts.rejected += 1
    assert counts.pending == 4
    counts.listed(4)  # the next listing sees the same
    accepted[0] += 1
    assert counts.pending == 5
