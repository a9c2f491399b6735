"""Worker reports: a meter's line parses back to what was counted, and the master's tally
keeps retired workers' counts but not their gauges."""

import os

import gevent

from wireleap_relay import libc, worker
from wireleap_relay.reports import Meter, ReportReader, Tally, Totals, parse_report
from wireleap_relay.worker import Reporter


def metered(bytes_by_contract: dict[str, tuple[int, int]], outcomes: list[str]) -> Meter:
    meter = Meter()
    for contract, (up, down) in bytes_by_contract.items():
        usage = meter.usage(contract)
        usage[0] += up
        usage[1] += down
    for outcome in outcomes:
        meter.stream_ended(outcome)
    meter.connections = 3
    meter.active_connections = 2
    meter.active_streams = 1
    return meter


def test_a_report_line_parses_back_to_the_counts():
    line = metered({"A": (10, 20), "B": (1, 0)}, ["ok", "ok", "refused"]).report()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    report = parse_report(line)
    assert report == Totals(bytes={"A": [10, 20], "B": [1, 0]},
                            streams={"ok": 2, "refused": 1}, connections=3,
                            active_connections=2, active_streams=1)
    assert report.bytes_relayed == 31


def test_the_usage_list_is_live():
    meter = Meter()
    assert meter.usage("A") is meter.usage("A")


def test_lines_that_are_not_reports_are_ignored():
    for line in (b"", b".", b"{}", b'{"bytes": {"A": [1]}}', b"[1, 2]", b"\xff",
                 b'{"bytes": {}, "streams": {"ok": "x"}, "connections": 0, '
                 b'"active_connections": 0, "active_streams": 0}'):
        assert parse_report(line) is None


def test_the_tally_sums_live_workers_and_keeps_retired_counts_without_gauges():
    tally = Tally()
    tally.update(1, parse_report(metered({"A": (10, 20)}, ["ok"]).report()))
    tally.update(2, parse_report(metered({"A": (1, 2), "B": (5, 5)}, ["broken"]).report()))
    tally.update(1, parse_report(metered({"A": (100, 200)}, ["ok", "ok"]).report()))  # later
    total = tally.totals()
    assert total.bytes == {"A": [101, 202], "B": [5, 5]}
    assert total.streams == {"ok": 2, "broken": 1}
    assert (total.connections, total.active_connections, total.active_streams) == (6, 4, 2)
    tally.retire(1)
    tally.retire(1)  # twice is once
    total = tally.totals()
    assert total.bytes == {"A": [101, 202], "B": [5, 5]}
    assert (total.connections, total.active_connections, total.active_streams) == (6, 2, 1)


def test_the_summary_names_bytes_connections_and_outcomes_in_a_fixed_order():
    total = parse_report(metered({"A": (7, 9)}, ["refused", "ok", "ok"]).report())
    assert total.summary() == ("relayed 7 bytes from clients and 9 bytes from remotes on 3 "
                               "connections; streams: ok 2, refused 1")
    assert Totals().summary().endswith("streams: none")


def test_the_reader_joins_lines_cut_anywhere_and_skips_garbage():
    line = metered({"A": (1, 2)}, ["ok"]).report()
    reader = ReportReader()
    stream = b"garbage\n" + line + line
    got = []
    for i in range(0, len(stream), 7):
        got += reader.feed(stream[i:i + 7])
    assert [r.bytes for r in got] == [{"A": [1, 2]}] * 2


def test_a_full_pipe_delays_a_report_and_loses_nothing():
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:  # fill the pipe as a master that reads nothing would
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    reporter = Reporter(write_end, metered({"A": (3, 4)}, ["ok"]))
    assert reporter.beat()  # nothing fits; kept for later
    reader = ReportReader()
    os.set_blocking(read_end, False)
    while True:
        try:
            reader.feed(os.read(read_end, 65536))
        except BlockingIOError:
            break
    assert reporter.beat()  # the kept line goes out now
    reports = reader.feed(b"\n" + os.read(read_end, 65536))  # end the filler "line"
    assert [r.bytes for r in reports] == [{"A": [3, 4]}]
    os.closerange(read_end, read_end + 1)  # now: gevent's os.close waits for its loop
    assert not reporter.beat()  # the master is gone
    os.close(write_end)


def test_an_idle_worker_gives_memory_back_once_per_busy_spell(monkeypatch):
    trims = []
    monkeypatch.setattr(worker, "TRIM_CHECK", 0.01)
    monkeypatch.setattr(libc, "function",
                        lambda name: trims.append if name == "malloc_trim" else None)
    meter = Meter()
    meter.active_streams = 1
    trimmer = gevent.spawn(worker._give_back_memory, meter)
    gevent.sleep(0.1)
    assert trims == []  # nothing ended yet
    meter.stream_ended("ok")
    gevent.sleep(0.1)
    assert trims == []  # a stream still runs
    meter.active_streams = 0
    gevent.sleep(0.1)
    assert trims == [0]  # the spell is over
    gevent.sleep(0.1)
    assert trims == [0]  # and nothing happened since
    trimmer.kill()
