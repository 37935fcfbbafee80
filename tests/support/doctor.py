"""Run ``mqtthub doctor`` from a test, and build the evidence its rules read."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

from mqtthub.doctor.mqtt_rules import DeliveryEvidence
from mqtthub.doctor.run import DoctorOptions, run_doctor

__all__ = ["PROBE_TOPIC", "delivery", "doctor_checks", "doctor_cli"]

#: Where serve's delivery probe is published (topic prefix ``devices``).
PROBE_TOPIC = "devices/mqtthub-doctor/heartbeat"


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


def delivery(
    *,
    granted: dict[str, int] | None = None,
    publish_code: int | None = 0,
    delivered: bool = True,
    protocol: str = "MQTT 5",
    username: str | None = "hub",
    probe_topic: str = PROBE_TOPIC,
    recipient: str | None = None,
) -> DeliveryEvidence:
    """Delivery evidence as the probe records it: by default serve's filter granted and
    the probe delivered on MQTT 5, for user ``hub``."""
    return DeliveryEvidence(
        {"devices/+/+": 1} if granted is None else granted,
        probe_topic,
        publish_code,
        delivered,
        protocol,
        username,
        recipient=recipient,
    )
