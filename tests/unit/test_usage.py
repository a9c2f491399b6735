"""The pure parts of network usage: periods, cap levels, and the Go relay's file shapes
(control.md §6.1, §6.3)."""

import json

import pytest

from wireleap_relay.usage import caps, period
from wireleap_relay.usage.files import (
    Stats,
    StatsCorrupt,
    archive_name,
    decode_stats,
    encode_archive,
    encode_stats,
)

DAY = 86_400_000


@pytest.mark.parametrize("now, expected", [
    (1000, (1000 + DAY, False)),                 # the period just began
    (1000 + DAY, (1000 + DAY, False)),           # its last millisecond
    (1001 + DAY, (1000 + 2 * DAY, True)),        # over: the next begins where it ended
    (1000 + 2 * DAY, (1000 + 2 * DAY, True)),
    (1001 + 2 * DAY, (1001 + 3 * DAY, True)),    # a whole period missed: begins now
    (500, (1000 + DAY, False)),                  # a clock set back: the period stands
])
def test_next_reset(now, expected):
    assert period.next_reset(1000, DAY, now) == expected


def test_thresholds_are_go_float_products():
    assert caps.threshold(1 << 20, caps.SOFT) == 943718
    assert caps.threshold(1 << 20, caps.HARD) == 975175
    assert caps.threshold(21990232555520, caps.HARD) == 20450916276633


@pytest.mark.parametrize("used, level", [
    (0, caps.Level.OK), (943718, caps.Level.OK), (943719, caps.Level.SOFT),
    (975175, caps.Level.SOFT), (975176, caps.Level.HARD), (5 << 20, caps.Level.HARD),
])
def test_contract_level_is_strictly_above_the_threshold(used, level):
    assert caps.contract_level(used, 1 << 20) == level


def test_no_limit_is_never_capped():
    assert caps.levels({"a": 10**15}, {"a": None, "b": 0}, 0) == \
        {"a": caps.Level.OK, "b": caps.Level.OK}


def test_global_limit_at_93_percent_disables_every_contract():
    limits = {"a": None, "b": 1 << 30}
    assert caps.levels({"a": 975174, "c": 0}, limits, 1 << 20) == \
        {"a": caps.Level.OK, "b": caps.Level.OK}
    # The sum reaches it (>=, not >), counting contracts no longer configured too.
    assert caps.levels({"a": 975000, "c": 175}, limits, 1 << 20) == \
        {"a": caps.Level.HARD, "b": caps.Level.HARD}


def test_stats_file_as_go_writes_it():
    stats = Stats(1661811346792, 1661811400000, {"old": 5, "a": 123456})
    raw = encode_stats(stats, ["b", "a"])
    assert raw.decode() == """{
    "contract_stats": {
        "a": {
            "network_bytes": 123456
        },
        "b": {},
        "old": {
            "network_bytes": 5
        }
    },
    "created_at": 1661811346792,
    "updated_at": 1661811400000
}"""
    assert decode_stats(raw) == stats


def test_stats_file_from_go_with_empty_and_null_entries():
    raw = b'{"contract_stats":{"a":{},"b":null,"c":{"network_bytes":7}},"created_at":5}'
    assert decode_stats(raw) == Stats(5, 0, {"c": 7})


@pytest.mark.parametrize("raw", [
    b"", b"{", b"[]", b"{}", b'{"created_at": 0}', b'{"created_at": "1"}',
    b'{"created_at": 1, "contract_stats": {"a": {"network_bytes": -1}}}',
    b'{"created_at": 1, "contract_stats": {"a": {"network_bytes": 1.5}}}',
    b'{"created_at": 1, "contract_stats": {"a": {"network_bytes": true}}}',
    b'{"created_at": 1, "contract_stats": ["a"]}',
    b'{"created_at": 1, "updated_at": -4}',
])
def test_not_a_stats_file(raw):
    with pytest.raises(StatsCorrupt):
        decode_stats(raw)


def test_archive_record_as_go_writes_it():
    stats = Stats(1661811346792, counts={"a": 123456, "gone": 9})
    raw = encode_archive("relay", stats, {"a": True, "idle": False}, 1664403346792,
                         1664403346800)
    assert raw == (
        b'{"relay_id":"relay","metrics":['
        b'{"contract":"a","active":true,"network_usage_bytes":123456},'
        b'{"contract":"gone","active":false,"network_usage_bytes":9},'
        b'{"contract":"idle","active":false,"network_usage_bytes":0}],'
        b'"start_at":1661811346792,"end_at":1664403346792,"updated_at":1664403346800}')
    assert json.loads(raw)["metrics"][0]["contract"] == "a"
    assert archive_name("relay", 1664403346792) == "relay-1664403346792.json"
