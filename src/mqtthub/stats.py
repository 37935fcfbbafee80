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
