"""In-process counters shown by ``/api/stats`` (updated on the event loop only)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Stats:
    """Message counters since this process started."""

    started_at: float = field(default_factory=time.time)
    messages_received: int = 0
    messages_stored: int = 0
    dead_letters: int = 0
    batches: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    last_commit_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        return {
            "started_at": self.started_at,
            "messages_received": self.messages_received,
            "messages_stored": self.messages_stored,
            "dead_letters": self.dead_letters,
            "batches": self.batches,
            "by_type": dict(self.by_type),
            "dead_letters_by_reason": dict(self.by_reason),
            "last_commit_seconds": self.last_commit_seconds,
        }


#: Counters that add up across workers (the rest describe one process).
_SUMMED = ("messages_received", "messages_stored", "dead_letters", "batches", "queue_depth")
_MERGED = ("by_type", "dead_letters_by_reason")


def combine(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """The counters of several workers (``as_dict()`` plus ``queue_depth`` each) as one:
    counts summed, the earliest start, the slowest last commit."""
    total: dict[str, Any] = {name: 0 for name in _SUMMED}
    for name in _MERGED:
        total[name] = Counter()
    total["started_at"] = min((w["started_at"] for w in workers), default=time.time())
    total["last_commit_seconds"] = max((w["last_commit_seconds"] for w in workers), default=0.0)
    for worker in workers:
        for name in _SUMMED:
            total[name] += worker.get(name, 0)
        for name in _MERGED:
            total[name].update(worker.get(name, {}))
    for name in _MERGED:
        total[name] = dict(total[name])
    return total
