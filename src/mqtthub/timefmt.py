"""Times as the API and notifications write them (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_utc"]


def iso_utc(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a ``Z`` (``2026-11-29T19:08:53.5Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
