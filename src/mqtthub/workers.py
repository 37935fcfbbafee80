"""``serve --workers N``: N ``serve`` processes on one machine that split the device stream.

Each worker is an ordinary ``serve`` in the share group (``MQTTHUB_SHARE_GROUP``, default
``mqtthub``) with a client id of its own that stays the same across restarts
(``<client id>-w<index>``), so its persistent session, and what the broker queued for it
while it was away, is its own again when it comes back. Worker 0 serves the HTTP API (its
``/api/stats`` and ``/metrics`` cover every worker); the others serve none. This process
only starts them, restarts one that dies and passes SIGINT/SIGTERM on.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import FrameType

from mqtthub.config import Settings

log = logging.getLogger("mqtthub.workers")
POLL_S = 0.2
RESTART_CAP_S = 30.0
STABLE_S = 60.0  # a worker that ran this long starts its restart delays afresh
STOP_BUDGET_S = 15.0
CONFIG_ERROR = 2


def worker_environment(
    settings: Settings, flags: Mapping[str, object], index: int
) -> dict[str, str]:
    """The environment of worker ``index``: this one, the command-line flags as variables,
    and the worker's own index, client id and the share group."""
    env = dict(os.environ)
    for name, value in flags.items():
        if value is not None:
            env[f"MQTTHUB_{name.upper()}"] = str(value)
    group = settings.effective_share_group
    assert group is not None  # more than one worker always has a group
    env.update(
        MQTTHUB_WORKERS=str(settings.workers),
        MQTTHUB_WORKER_INDEX=str(index),
        MQTTHUB_SHARE_GROUP=group,
        MQTTHUB_CLIENT_ID=f"{settings.effective_client_id()}-w{index}",
    )
    return env


class WorkerPool:
    """Starts, watches and stops the worker processes."""

    def __init__(self, settings: Settings, flags: Mapping[str, object]) -> None:
        """Prepare ``settings.workers`` workers; ``flags`` are serve's command-line values."""
        self.settings = settings
        self.environments = [
            worker_environment(settings, flags, index) for index in range(settings.workers)
        ]
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * settings.workers
        self._restarts = [0] * settings.workers
        self._next_start = [0.0] * settings.workers
        self._started = [0.0] * settings.workers
        self._stopping = False

    def run(self) -> int:
        """Run until SIGINT/SIGTERM (exit status 0) or a worker's configuration error (2)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        log.info(
            "starting %d workers in share group %r (worker 0 serves HTTP on %s:%d)",
            self.settings.workers,
            self.settings.effective_share_group,
            self.settings.http_host,
            self.settings.http_port,
        )
        status = 0
        try:
            while not self._stopping:
                status = self._tend()
                if status:
                    break
                time.sleep(POLL_S)
        finally:
            self._terminate_all()
        return status

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def _tend(self) -> int:
        """Start missing workers, notice dead ones; a configuration error ends the pool."""
        now = time.monotonic()
        for index, process in enumerate(self.processes):
            if process is not None:
                code = process.poll()
                if code is None:
                    continue
                if code == CONFIG_ERROR:
                    log.error("worker %d stopped on a configuration error; stopping all", index)
                    return CONFIG_ERROR
                if now - self._started[index] >= STABLE_S:
                    self._restarts[index] = 0
                self._restarts[index] += 1
                delay = min(RESTART_CAP_S, 0.5 * 2 ** min(self._restarts[index] - 1, 6))
                log.error(
                    "worker %d (pid %d) ended with status %s; restarting it in %.1f s",
                    index,
                    process.pid,
                    code,
                    delay,
                )
                self.processes[index] = None
                self._next_start[index] = now + delay
            elif now >= self._next_start[index]:
                started = subprocess.Popen(
                    [sys.executable, "-m", "mqtthub", "serve"], env=self.environments[index]
                )
                self.processes[index] = started
                self._started[index] = now
                log.info("worker %d started (pid %d)", index, started.pid)
        return 0

    def _terminate_all(self) -> None:
        running = [p for p in self.processes if p is not None and p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_BUDGET_S
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
