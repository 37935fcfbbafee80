"""Prometheus metrics for operators, in a registry of the service's own (no globals)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mqtthub.stats import Stats


@dataclass(slots=True)
class Sources:
    """Where the scrape-time values come from.

    ``worker`` names this process when it shares the device stream with other workers;
    every per-process metric then carries a ``worker`` label, and ``other_workers`` gives
    the others' snapshots (see :func:`worker_snapshot`), read from the database.
    """

    stats: Stats
    queue_depth: Callable[[], int]
    connected: Callable[[], bool]
    reconnects: Callable[[], dict[str, int]]
    devices_by_status: Callable[[], dict[str, int]]
    worker: str | None = None
    other_workers: Callable[[], list[tuple[str, dict[str, Any]]]] = list


def worker_snapshot(sources: Sources) -> dict[str, Any]:
    """This process's counters and link state, as stored for the other workers to report."""
    return {
        **sources.stats.as_dict(),
        "pid": os.getpid(),
        "queue_depth": sources.queue_depth(),
        "mqtt_connected": sources.connected(),
        "disconnects": sources.reconnects(),
    }


class Metrics:
    """The service's metrics: histograms observed by the writer, the rest read at scrape."""

    def __init__(self, sources: Sources) -> None:
        """Create the registry and its metrics."""
        self.sources = sources
        self.registry = CollectorRegistry()
        labels = ["worker"] if sources.worker else []
        self.batch_size = Histogram(
            "mqtthub_batch_messages",
            "Messages per committed batch.",
            labels,
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "mqtthub_commit_seconds",
            "Time to build and commit one batch.",
            labels,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        if sources.worker:
            self.batch_size = self.batch_size.labels(sources.worker)
            self.commit_seconds = self.commit_seconds.labels(sources.worker)
        self.registry.register(_ScrapeCollector(sources))


class _ScrapeCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        sources = self._sources
        snapshots = [(sources.worker, worker_snapshot(sources))]
        if sources.worker:
            snapshots.extend(sources.other_workers())
        worker = ["worker"] if sources.worker else []

        def family(kind: type[Any], name: str, doc: str, *labels: str) -> Any:
            return kind(name, doc, labels=[*worker, *labels])

        received = family(
            CounterMetricFamily, "mqtthub_messages_received", "MQTT messages received."
        )
        stored = family(
            CounterMetricFamily, "mqtthub_messages_stored", "Messages stored, by type.", "type"
        )
        dead = family(
            CounterMetricFamily,
            "mqtthub_dead_letters",
            "Messages rejected into dead letters, by reason.",
            "reason",
        )
        disconnects = family(
            CounterMetricFamily,
            "mqtthub_mqtt_disconnects",
            "Connection losses and refusals, by reason.",
            "reason",
        )
        queue = family(GaugeMetricFamily, "mqtthub_queue_depth", "Messages waiting for the writer.")
        connected = family(
            GaugeMetricFamily, "mqtthub_mqtt_connected", "1 while connected to the broker."
        )
        for name, snapshot in snapshots:
            label = [name] if sources.worker and name else []
            received.add_metric(label, snapshot["messages_received"])
            for kind, count in sorted(snapshot["by_type"].items()):
                stored.add_metric([*label, str(kind)], count)
            for reason, count in sorted(snapshot["dead_letters_by_reason"].items()):
                dead.add_metric([*label, str(reason)], count)
            for reason, count in sorted(snapshot["disconnects"].items()):
                disconnects.add_metric([*label, reason], count)
            queue.add_metric(label, snapshot["queue_depth"])
            connected.add_metric(label, int(snapshot["mqtt_connected"]))
        yield from (received, stored, dead, disconnects, queue, connected)
        devices = GaugeMetricFamily("mqtthub_devices", "Devices by status.", labels=["status"])
        for status, count in sorted(sources.devices_by_status().items()):
            devices.add_metric([status], count)
        yield devices
