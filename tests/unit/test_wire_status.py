"""The status JSON (wire.md §2.5) and the PONG / 405 bodies (§2.8, §2.9)."""

import json

from wireleap_relay.wire import status
from wireleap_relay.wire.status import Status

PK = "JUO5L_EJVRFHatyDadtt3JM2ZaEZeN2hQE7hBmypVZ0"


def test_field_order_and_compactness():
    s = Status(502, "dial tcp 127.0.0.1:1: connect: connection refused", origin="target",
               cause="c")
    assert s.to_json() == ('{"code":502,"description":"dial tcp 127.0.0.1:1: connect: '
                           'connection refused","origin":"target","cause":"c"}')


def test_empty_origin_and_cause_omitted():
    assert Status(405, "HTTP method not allowed").to_json() == \
        '{"code":405,"description":"HTTP method not allowed"}'
    assert Status(400, "x", cause="why").to_json() == '{"code":400,"description":"x","cause":"why"}'


def test_empty_description_kept():
    assert Status(200, "").to_json() == '{"code":200,"description":""}'


def test_no_html_escaping():
    s = Status(400, "a <b> & c", origin="<o&>")
    assert s.to_json() == '{"code":400,"description":"a <b> & c","origin":"<o&>"}'


def test_no_newline_and_no_control_characters():
    text = Status(410, "line1\nline2\r\x01").to_json()
    assert "\n" not in text and "\r" not in text and "\x01" not in text
    assert text == '{"code":410,"description":"line1\\nline2\\r\\u0001"}'
    assert json.loads(text)["description"] == "line1\nline2\r\x01"


def test_non_ascii_written_as_utf8():
    assert Status(400, "caf\u00e9").to_json() == '{"code":400,"description":"café"}'


def test_is_same_ignores_origin_and_cause():
    a = Status(400, "sharetoken is expired", origin="x")
    assert a.is_same(Status(400, "sharetoken is expired", origin="y", cause="z"))
    assert not a.is_same(Status(408, "sharetoken is expired"))
    assert not a.is_same(Status(400, "duplicate sharetoken"))


def test_pong():
    p = status.pong(PK)
    assert p == Status(200, "PONG", origin=PK)
    assert status.pong_body(PK) == \
        b'{"code":200,"description":"PONG","origin":"' + PK.encode() + b'"}\n'


def test_method_not_allowed_body():
    body = status.method_not_allowed_body()
    assert body == b'{"code":405,"description":"HTTP method not allowed"}\n\n'
    assert len(body) == 54
    assert status.METHOD_NOT_ALLOWED == Status(405, "HTTP method not allowed")


def test_origin_target_constant():
    assert status.ORIGIN_TARGET == "target"
