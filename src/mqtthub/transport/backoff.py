"""Reconnect delays: exponential backoff with full jitter (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter, shared by every mqtthub client.

    The n-th consecutive failure waits a uniformly random time in
    ``[0, min(cap, base * 2**n)]``. The counter resets only after a connection stayed
    up for ``stable_after`` seconds, so a broker that accepts and then drops us at once
    does not get hammered.
    """

    base: float = 1.0
    cap: float = 60.0
    stable_after: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The time to wait before the next attempt; counts one more failure."""
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def cap_delay(self) -> float:
        """The wait after a permanent refusal: the cap, with a little jitter."""
        return self.cap * self.rng.uniform(0.9, 1.0)

    def connection_ended(self, lasted: float) -> None:
        """Record how long a successful connection lasted; long enough resets the counter."""
        if lasted >= self.stable_after:
            self.attempt = 0
