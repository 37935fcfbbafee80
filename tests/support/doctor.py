"""Run ``mqtthub doctor`` in-process from a test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

from mqtthub.doctor.run import DoctorOptions, run_doctor

__all__ = ["doctor_checks", "doctor_cli"]


def doctor_checks(
    flags: dict[str, Any], options: DoctorOptions | None = None
) -> dict[str, dict[str, Any]]:
    """The doctor's checks with these settings flags, by check id (as ``--json`` gives)."""
    checks, _target = asyncio.run(run_doctor(flags, options or DoctorOptions()))
    return {check.id: check.as_dict() for check in checks}


def doctor_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``mqtthub doctor ARGS`` as a process, with ``env`` and no MQTT* variable of ours."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    return subprocess.run(
        [sys.executable, "-m", "mqtthub", "doctor", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
