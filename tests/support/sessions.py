"""Persistent sessions of a ``serve`` process (issue 16): a hook that makes it commit
without acknowledging, and what it reports about a session the broker forgot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.serve import ServeProcess

NO_PUBACKS = """\
# Test hook (tests/support/sessions.py): this serve commits but never sends a PUBACK.
import mqtthub.transport.connection as connection

connection._Connection.send_pubacks = lambda self, packet_ids: not self.lost.is_set()
"""


def no_pubacks_hook(tmp_path: Path) -> str:
    """A PYTHONPATH for serve (and its workers): it stores messages but never acknowledges
    them, so the broker keeps them in flight and re-sends them on the resumed session."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(NO_PUBACKS)
    return str(hook)


def assert_session_report(
    serve: ServeProcess, events: list[dict[str, Any]], *, lost: bool, detail: str
) -> None:
    """With ``lost``: one ``session_lost`` among ``events`` (serve's connection events),
    whose detail says ``detail``, the same on /healthz, and a warning in serve's log.
    Without: none of these."""
    health = serve.get("/healthz").json()
    reported = [e for e in events if e["event"] == "session_lost"]
    if not lost:
        assert not reported, events
        assert "session_lost" not in health
        assert "session lost" not in serve.log_text()
        return
    assert [e["reason"] for e in reported] == ["session_lost"], events
    assert detail in reported[0]["detail"], reported
    assert health["session_lost"]["at"] == reported[0]["at"], health
    assert "WARNING" in serve.log_text()
    assert "session lost" in serve.log_text()
