"""The live state the HTTP side reports, handed in by the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mqtthub.events import EventBus, RecentMessages
from mqtthub.ingest.writer import ExecuteWrite
from mqtthub.messages import Status
from mqtthub.stats import Stats
from mqtthub.transport.base import LinkState


@dataclass(slots=True)
class Runtime:
    """Live state the API reports: the MQTT link, the writer and the counters."""

    link: Callable[[], LinkState]
    db_error: Callable[[], str | None]
    failure: Callable[[], str | None]  # a supervised task that died, e.g. "task writer died: ..."
    queue_depth: Callable[[], int]
    stats: Stats
    connection: Callable[[], dict[str, Any]]
    events: EventBus
    recent: RecentMessages
    forget_device: Callable[[str], Awaitable[bool]]
    configure_device: Callable[[str, dict[str, Any], Status | None], Awaitable[bool]]
    execute_write: ExecuteWrite  # the single writer: every write of the web layer
    metrics_registry: Any = None
    downlink: Any = None  # mqtthub.downlink.service.Downlink when serving
    device_endpoint: str = ""
    topic_prefix: str = "devices"
    reserved_ids: frozenset[str] = frozenset()  # names no device may take (backend user, ...)
    worker_id: str | None = None  # set when other workers share the devices (stats cover all)
    is_leader: Callable[[], bool] = lambda: True
    other_workers: Callable[[], list[dict[str, Any]]] = list  # their rows of ``workers``
    alerts: Any = None  # mqtthub.alerts.service.Alerts when serving
