"""The ``retention`` task of ``serve``: rollups and retention in small background steps.

Every step is one short transaction run by the single writer (``execute_write``), between
ingest batches; after each the task sleeps ``PAUSE_FACTOR`` times as long as the step took
(at least ``MIN_PAUSE_S``), so it holds the writer at most ~5 % of the time and never
stalls ingest. A pass: late data re-rolled, closed hours and days rolled up, then old
samples, per-minute, hourly and daily rows deleted. With several workers only the leader
runs passes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mqtthub.errors import StoreError
from mqtthub.ingest.writer import ExecuteWrite
from mqtthub.retention import RetentionPolicy
from mqtthub.store import retention as store_retention
from mqtthub.store import rollups
from mqtthub.store.retention import Sweep

log = logging.getLogger("mqtthub.retention")
PASS_INTERVAL_S = 60.0
PAUSE_FACTOR = 19.0  # sleep 19x the step's time: the writer spends <= 5 % on retention
MIN_PAUSE_S = 0.02


@dataclass(slots=True)
class PassReport:
    """What one pass did."""

    rerolled: int = 0
    rolled: int = 0
    deleted: dict[str, int] | None = None
    stripped: int = 0


class Housekeeping:
    """Runs rollup and retention passes through the writer."""

    def __init__(
        self,
        *,
        execute_write: ExecuteWrite,
        policy: RetentionPolicy,
        batch_rows: int = 2000,
        is_leader: Callable[[], bool] = lambda: True,
        interval: float = PASS_INTERVAL_S,
        pause_factor: float = PAUSE_FACTOR,
        min_pause: float = MIN_PAUSE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Set up; nothing runs until :meth:`run` (or :meth:`run_pass`)."""
        self._write = execute_write
        self.policy = policy
        self.batch_rows = batch_rows
        self._is_leader = is_leader
        self._interval = interval
        self._pause_factor = pause_factor
        self._min_pause = min_pause
        self._clock = clock

    async def run(self) -> None:
        """A pass every ``interval`` seconds while this process leads, until cancelled."""
        log.info("retention: keeping %s", self.policy.describe())
        while True:
            if self._is_leader():
                try:
                    report = await self.run_pass()
                except StoreError as exc:  # the writer reports outages on /healthz
                    log.warning("retention pass interrupted: %s", exc)
                else:
                    if (report.deleted and any(report.deleted.values())) or report.stripped:
                        log.info(
                            "retention: deleted %s, stripped %d samples",
                            report.deleted,
                            report.stripped,
                        )
            await asyncio.sleep(self._interval)

    async def _step(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        """One step through the writer, then a pause in proportion to its time."""
        started = time.monotonic()
        result = await self._write(operation, *args, **kwargs)
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(self._min_pause, elapsed * self._pause_factor))
        return result

    async def run_pass(self) -> PassReport:
        """Re-roll late data, roll up closed hours and days, then delete what is old."""
        report = PassReport()
        report.rerolled = await self._reroll()
        for level in rollups.LEVELS:
            report.rolled += await self._roll(level)
        report.deleted, report.stripped = await self._delete()
        return report

    async def _reroll(self) -> int:
        keep_1m = self._minute_cutoff()
        total = 0
        while taken := await self._step(
            rollups.reroll_pending, batch_rows=self.batch_rows, keep_1m_from=keep_1m
        ):
            total += taken
        return int(total)

    def _minute_cutoff(self) -> float | None:
        """Hours before this have per-minute rows retention may delete: rounded up to
        whole hours so a partly deleted hour is never recomputed."""
        cutoff = self.policy.aggregate_cutoff("1m", self._clock())
        return None if cutoff is None else (cutoff // 3600 + 1) * 3600

    async def _roll(self, level: rollups.Level) -> int:
        ranges = 0
        while True:
            run = await self._step(rollups.start_run, level, now=self._clock())
            if run is None:
                return ranges
            while not await self._step(rollups.roll_step, run, batch_rows=self.batch_rows):
                pass
            ranges += 1

    async def _delete(self) -> tuple[dict[str, int], int]:
        now = self._clock()
        states = await self._write(rollups.read_states)
        deleted: dict[str, int] = {}
        kept: dict[str, float] = {}
        delete_before = self.policy.delete_before(now)
        if delete_before is not None:
            deleted["raw"] = await self._sweep(Sweep("samples", "ts", delete_before))
            kept["kept:raw"] = delete_before
        default, cutoffs = self.policy.raw_cutoffs(now)
        stripped = await self._strip(delete_before, default, cutoffs)
        forever = {f"stripped:{m}": 0.0 for m, cutoff in cutoffs.items() if cutoff is None}
        kept.update(forever)  # metrics kept forever: all their raw data is there
        # Aggregates go only once rolled up into the next coarser rows (when those exist).
        for name, table, column, rolled in (
            ("1m", "readings_1m", "minute", states.get("done:1h")),
            ("1h", "readings_1h", "hour", states.get("done:1d")),
            ("1d", "readings_1d", "day", None),
        ):
            cutoff = self.policy.aggregate_cutoff(name, now)
            if cutoff is None:
                continue
            if name != "1d":
                if rolled is None:
                    continue
                cutoff = min(cutoff, rolled)
            deleted[name] = await self._sweep(Sweep(table, column, cutoff))
            kept[f"kept:{name}"] = cutoff
        if kept:
            await self._write(store_retention.record, kept)
        return deleted, stripped

    async def _sweep(self, sweep: Sweep) -> int:
        while not await self._step(store_retention.sweep_step, sweep, batch_rows=self.batch_rows):
            pass
        return sweep.deleted

    async def _strip(
        self, delete_before: float | None, default: float | None, cutoffs: dict[str, float | None]
    ) -> int:
        strip = await self._write(
            store_retention.plan_strip,
            delete_before=delete_before,
            default=default,
            cutoffs=cutoffs,
        )
        if strip is None:
            return 0
        while not await self._step(store_retention.strip_step, strip, batch_rows=self.batch_rows):
            pass
        await self._write(
            store_retention.record, {f"stripped:{name}": c for name, c in strip.classes.items()}
        )
        return int(strip.changed)
