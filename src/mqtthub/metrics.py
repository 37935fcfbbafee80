"""Prometheus metrics for operators, in a registry of the service's own (no globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mqtthub.stats import Stats


@dataclass(slots=True)
class Sources:
    """Where the scrape-time values come from."""

    stats: Stats
    queue_depth: Callable[[], int]
    connected: Callable[[], bool]
    reconnects: Callable[[], dict[str, int]]
    devices_by_status: Callable[[], dict[str, int]]


class Metrics:
    """The service's metrics: histograms observed by the writer, the rest read at scrape."""

    def __init__(self, sources: Sources) -> None:
        """Create the registry and its metrics."""
        self.registry = CollectorRegistry()
        self.batch_size = Histogram(
            "mqtthub_batch_messages",
            "Messages per committed batch.",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "mqtthub_commit_seconds",
            "Time to build and commit one batch.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.registry.register(_ScrapeCollector(sources))


class _ScrapeCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        sources = self._sources
        stats = sources.stats
        yield CounterMetricFamily(
            "mqtthub_messages_received", "MQTT messages received.", value=stats.messages_received
        )
        stored = CounterMetricFamily(
            "mqtthub_messages_stored", "Messages stored, by type.", labels=["type"]
        )
        for kind, count in sorted(stats.by_type.items()):
            stored.add_metric([str(kind)], count)
        yield stored
        dead = CounterMetricFamily(
            "mqtthub_dead_letters",
            "Messages rejected into dead letters, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(stats.by_reason.items()):
            dead.add_metric([str(reason)], count)
        yield dead
        reconnects = CounterMetricFamily(
            "mqtthub_mqtt_disconnects",
            "Connection losses and refusals, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(sources.reconnects().items()):
            reconnects.add_metric([reason], count)
        yield reconnects
        yield GaugeMetricFamily(
            "mqtthub_queue_depth", "Messages waiting for the writer.", value=sources.queue_depth()
        )
        yield GaugeMetricFamily(
            "mqtthub_mqtt_connected",
            "1 while connected to the broker.",
            value=int(sources.connected()),
        )
        devices = GaugeMetricFamily("mqtthub_devices", "Devices by status.", labels=["status"])
        for status, count in sorted(sources.devices_by_status().items()):
            devices.add_metric([status], count)
        yield devices
