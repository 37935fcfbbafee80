"""`mqtthub doctor --watch` against a real Mosquitto that is stopped mid-watch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.mosquitto import MosquittoFactory


def test_watch_reports_only_the_change_and_exits_at_the_first_failure(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """The baseline checklist, silence while nothing changes, then the broker stops:
    the failing checks alone, and exit status 1."""
    broker = mosquitto_factory()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    env["MQTTHUB_BROKER_URL"] = f"mqtt://127.0.0.1:{broker.port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "mqtthub", "doctor", "--watch", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        baseline = []
        for text in process.stdout:  # the first round: the whole checklist
            baseline.append(text)
            if text.strip() in {"all good"} or text.strip().endswith("warnings"):
                break
        assert "all good" in baseline[-1], "".join(baseline)
        assert any("[ok  ] config" in text for text in baseline)
        broker.stop()
        rest, _errors = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 1, rest
    assert "changed (failed):" in rest
    assert "[FAIL] tcp" in rest
    assert "config" not in rest  # unchanged checks are not repeated
