"""Run ``mqtthub doctor`` in-process from a test."""

from __future__ import annotations

import asyncio
from typing import Any

from mqtthub.doctor.run import DoctorOptions, run_doctor

__all__ = ["doctor_checks"]


def doctor_checks(
    flags: dict[str, Any], options: DoctorOptions | None = None
) -> dict[str, dict[str, Any]]:
    """The doctor's checks with these settings flags, by check id (as ``--json`` gives)."""
    checks, _target = asyncio.run(run_doctor(flags, options or DoctorOptions()))
    return {check.id: check.as_dict() for check in checks}
