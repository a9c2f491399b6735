"""The relay's Prometheus metrics (`GET /metrics` on the status API), named the Prometheus
way: `wireleap_relay_` prefix, `_total` counters, bytes and seconds.

Why one custom collector in the master instead of prometheus_client's multiprocess mode:
the workers already send the master their cumulative counts every heartbeat (reports.py),
and the master's Tally sums them, retired workers included, so its totals only grow while
the master runs. Reading that sum at scrape time adds up every worker's counters with no
mmap directory shared between processes, no files of dead workers to clean up, and no
prometheus_client in the data plane (workers keep counting with integer additions). The
price is that worker counts are up to one heartbeat (2 s) old. Counters restart from zero
with a new master (a restart or upgrade), which Prometheus' rate() takes as a reset.
"""

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from wireleap_relay.reports import OUTCOMES, Totals
from wireleap_relay.version import software_version
from wireleap_relay.wire import b64

P = "wireleap_relay_"


class RelayMetrics:
    """The exposition of one master's metrics. `master` is a daemon.Master: its supervisor
    (None until the workers start), manager, usage, tokens, upgrades and started_at."""

    def __init__(self, master: Any):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_RelayCollector(master, software_version()))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _RelayCollector(Collector):
    def __init__(self, master: Any, version: str):
        self.master = master
        self.version = version  # asked once: a source checkout asks git

    def collect(self) -> Iterator[Metric]:
        m = self.master
        supervisor = m.supervisor
        yield from _traffic(supervisor.tally.totals() if supervisor else Totals())
        yield from _sharetokens(m.tokens)
        yield from _contracts(m.manager, m.usage)
        yield from _usage(m.usage.status_json())
        yield from _process(self.version, m.upgrades, supervisor, m.started_at)


def _traffic(totals: Totals) -> Iterator[Metric]:
    relayed = CounterMetricFamily(
        P + "relayed_bytes", "Bytes relayed, per service contract, as read from the "
        "client or from the remote (next relay or target)", labels=["contract", "direction"])
    for contract, (from_client, from_remote) in sorted(totals.bytes.items()):
        relayed.add_metric([contract, "from_client"], from_client)
        relayed.add_metric([contract, "from_remote"], from_remote)
    yield relayed
    streams = CounterMetricFamily(P + "streams", "Streams finished, by how they ended",
                                  labels=["outcome"])
    for outcome in OUTCOMES:
        streams.add_metric([outcome], totals.streams[outcome])
    yield streams
    yield GaugeMetricFamily(P + "streams_active", "Streams being served",
                            value=totals.active_streams)
    yield CounterMetricFamily(P + "connections", "Client connections accepted (TLS "
                              "handshake done)", value=totals.connections)
    yield GaugeMetricFamily(P + "connections_active", "Client connections open",
                            value=totals.active_connections)
    yield CounterMetricFamily(P + "sharetokens_accepted", "Sharetokens verified and stored "
                              "by streams", value=totals.sharetokens)


def _sharetokens(tokens: Any) -> Iterator[Metric]:
    yield CounterMetricFamily(P + "sharetokens_submitted", "Sharetokens their contract "
                              "took", value=tokens.submitted)
    yield CounterMetricFamily(P + "sharetokens_rejected", "Sharetokens set aside: refused "
                              "by their contract, past their window, or malformed",
                              value=tokens.rejected)
    if tokens.pending is not None:
        yield GaugeMetricFamily(P + "sharetokens_pending", "Sharetokens stored and not "
                                "yet settled", value=tokens.pending)


def _contracts(manager: Any, usage: Any) -> Iterator[Metric]:
    yield GaugeMetricFamily(P + "controller_started", "1 once enrolled at start, 0 "
                            "after disenrolling at stop", value=int(manager.started))
    labels = ["contract"]
    enrolled = GaugeMetricFamily(P + "contract_enrolled", "1 while enrolled in the "
                                 "contract's directory", labels=["contract", "url", "role"])
    heartbeat = GaugeMetricFamily(P + "contract_last_heartbeat_timestamp_seconds",
                                  "When the directory last took our enrollment or heartbeat",
                                  labels=labels)
    used = GaugeMetricFamily(P + "contract_network_usage_bytes", "Bytes relayed for the "
                             "contract in this usage period (0 when usage is not tracked)",
                             labels=labels)
    cap = GaugeMetricFamily(P + "contract_network_cap_bytes", "The contract's network "
                            "usage limit per period, where one is set", labels=labels)
    reached = GaugeMetricFamily(P + "contract_network_cap_reached", "1 while the "
                                "contract's cap stops its streams", labels=labels)
    for contract in manager.contracts.values():
        pk = b64.encode(contract.pubkey)
        enrolled.add_metric([pk, contract.url, contract.entry.role], int(contract.enrolled))
        if contract.last_heartbeat is not None:
            heartbeat.add_metric([pk], contract.last_heartbeat)
        use = usage.contract_json(pk)
        used.add_metric([pk], use["network_usage"])
        if use["network_cap"] is not None:
            cap.add_metric([pk], use["network_cap"])
        reached.add_metric([pk], int(use["network_cap_reached"]))
    yield from (enrolled, heartbeat, used, cap, reached)


def _usage(network: dict | None) -> Iterator[Metric]:
    """The usage period's totals; nothing when usage is not tracked."""
    if network is None:
        return
    yield GaugeMetricFamily(P + "network_usage_bytes", "Bytes relayed in this usage "
                            "period, all contracts", value=network["usage"])
    if network["cap"] is not None:
        yield GaugeMetricFamily(P + "network_cap_bytes", "The global usage limit per "
                                "period (0: only per-contract limits)", value=network["cap"])
    yield GaugeMetricFamily(P + "network_usage_period_start_timestamp_seconds", "When the "
                            "usage period began", value=network["timeframe_since"] / 1000)
    yield GaugeMetricFamily(P + "network_usage_period_end_timestamp_seconds", "When the "
                            "usage period ends", value=network["timeframe_until"] / 1000)


def _process(version: str, upgrades: Any, supervisor: Any, started_at: float
             ) -> Iterator[Metric]:
    yield InfoMetricFamily(P + "build", "The relay's version", value={"version": version})
    yield GaugeMetricFamily(P + "start_time_seconds", "When this master started",
                            value=started_at)
    announced = upgrades.announced if upgrades else None
    if announced:
        yield InfoMetricFamily(P + "upgrade_announced", "The last version a directory "
                               "asked us to upgrade to", value={"version": announced})
    yield GaugeMetricFamily(P + "upgrade_in_progress", "1 from an automatic upgrade's "
                            "download until the new version takes over",
                            value=int(bool(upgrades and upgrades.upgrade)))
    yield GaugeMetricFamily(P + "workers", "Worker processes serving streams",
                            value=sum(w.alive for w in supervisor.workers) if supervisor else 0)
    yield CounterMetricFamily(P + "worker_restarts", "Workers replaced because they died or "
                              "hung", value=supervisor.restarts if supervisor else 0)
