"""Logging set-up and a rate limiter for per-message warnings."""

from __future__ import annotations

import logging
import time


def configure_logging(level: str) -> None:
    """One line per event: time, level, component, message."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        force=True,
    )
    # gmqtt's own lines duplicate ours; show them only when debugging.
    logging.getLogger("mqtthub.mqtt.gmqtt").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.CRITICAL
    )
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for noisy in ("gmqtt", "alembic", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(quiet)


class RateLimitedLog:
    """Lets at most ``limit`` lines through per ``window`` seconds, then counts the rest."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        limit: int = 10,
        window: float = 10.0,
        level: int = logging.WARNING,
    ) -> None:
        """Wrap ``logger``; lines go out at ``level``."""
        self._logger = logger
        self._level = level
        self._limit = limit
        self._window = window
        self._window_start = time.monotonic()
        self._sent = 0
        self._suppressed = 0

    def log(self, message: str, *args: object) -> None:
        """Log a line unless the limit for this window is reached."""
        now = time.monotonic()
        if now - self._window_start >= self._window:
            if self._suppressed:
                self._logger.log(
                    self._level,
                    "%d more similar lines suppressed in the last %.0f s",
                    self._suppressed,
                    now - self._window_start,
                )
            self._window_start, self._sent, self._suppressed = now, 0, 0
        if self._sent < self._limit:
            self._sent += 1
            self._logger.log(self._level, message, *args)
        else:
            self._suppressed += 1
