"""Unit tests for mqtthub.transport.backoff: reconnect delays with full jitter."""

from __future__ import annotations

import random

import pytest

from mqtthub.transport.backoff import Backoff


class _AlwaysCeiling(random.Random):
    """A random source whose uniform(a, b) always returns b, exposing the current ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def ceilings(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next_delay() for _ in range(count)]


@pytest.mark.parametrize(
    ("base", "cap"), [(1.0, 60.0), (0.5, 30.0), (2.0, 300.0), (0.1, 0.1), (5.0, 1.0)]
)
def test_delays_stay_within_full_jitter_bounds(base: float, cap: float) -> None:
    """The n-th consecutive failure waits between 0 and min(cap, base * 2**n) seconds."""
    backoff = Backoff(base=base, cap=cap, rng=random.Random(1234))
    for n in range(60):
        delay = backoff.next_delay()
        assert 0.0 <= delay <= min(cap, base * 2**n), (n, delay)


def test_ceiling_doubles_until_the_cap() -> None:
    """Without jitter the waits would be 1, 2, 4, ... seconds, never above the cap."""
    backoff = Backoff(base=1.0, cap=60.0, rng=_AlwaysCeiling())
    assert ceilings(backoff, 9) == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_many_failures_never_exceed_the_cap() -> None:
    """After thousands of failed attempts the wait is still capped (no overflow)."""
    backoff = Backoff(base=1.0, cap=60.0, rng=_AlwaysCeiling())
    assert max(ceilings(backoff, 5000)) == 60.0


def test_jitter_spreads_delays_over_the_whole_range() -> None:
    """Full jitter: at the cap, waits spread over [0, cap] so clients do not reconnect together."""
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(7), attempt=20)
    delays = ceilings(backoff, 500)
    assert all(0.0 <= delay <= 60.0 for delay in delays)
    assert min(delays) < 6.0
    assert max(delays) > 54.0
    assert len(set(delays)) > 490


def test_same_seed_gives_the_same_delays() -> None:
    """A seeded random source makes the schedule reproducible."""
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    assert ceilings(first, 20) == ceilings(second, 20)


def test_short_connection_does_not_reset_the_backoff() -> None:
    """A broker that accepts then drops us at once keeps the wait growing."""
    backoff = Backoff(base=1.0, cap=60.0, stable_after=60.0, rng=_AlwaysCeiling())
    assert ceilings(backoff, 4) == [1.0, 2.0, 4.0, 8.0]
    backoff.connection_ended(0.0)
    backoff.connection_ended(59.9)
    assert backoff.next_delay() == 16.0


@pytest.mark.parametrize("lasted", [60.0, 60.001, 3600.0])
def test_stable_connection_resets_the_backoff(lasted: float) -> None:
    """A connection that stayed up for stable_after seconds or longer starts over at base."""
    backoff = Backoff(base=1.0, cap=60.0, stable_after=60.0, rng=_AlwaysCeiling())
    ceilings(backoff, 6)
    backoff.connection_ended(lasted)
    assert ceilings(backoff, 3) == [1.0, 2.0, 4.0]


def test_cap_delay_waits_close_to_the_cap() -> None:
    """After a permanent refusal (bad credentials) the client waits about the cap, not 0."""
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(99))
    delays = [backoff.cap_delay() for _ in range(500)]
    assert all(54.0 <= delay <= 60.0 for delay in delays)
    assert len(set(delays)) > 1


def test_cap_delay_does_not_change_the_failure_count() -> None:
    """Waiting out a permanent refusal does not count as another exponential step."""
    backoff = Backoff(base=1.0, cap=60.0, rng=_AlwaysCeiling())
    ceilings(backoff, 2)
    backoff.cap_delay()
    assert backoff.next_delay() == 4.0


def test_defaults_match_the_documented_schedule() -> None:
    """Out of the box: 1 s base, 60 s cap, reset after 60 s of stable connection."""
    backoff = Backoff()
    assert (backoff.base, backoff.cap, backoff.stable_after) == (1.0, 60.0, 60.0)
    assert 0.0 <= backoff.next_delay() <= 1.0
