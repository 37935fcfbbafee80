"""What brokers other than Mosquitto do differently, and mqtthub right on each (issue 16).

The embedded broker (rumqttd, from the installed ``iotcore`` package) is started for real,
as ``serve`` starts it. Behaviours no broker here can be made to show (a broker that never
answers an MQTT 5 CONNECT, like amqtt; one that speaks only one protocol version, like
Aedes; one that closes the connection without a CONNACK on a wrong password, like rumqttd
with authentication) come from the FAKE broker of tests/support/fake_broker.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtthub.config import EmbeddedBroker, load_settings
from mqtthub.doctor.run import DoctorOptions, run_doctor
from mqtthub.transport.embedded import start_if_needed
from support.ports import free_port


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The doctor and serve read env and .env: give each test an empty one."""
    for name in list(os.environ):
        if name.startswith(("MQTTHUB_", "MQTT_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def rumqttd() -> Iterator[int]:
    """The embedded broker (rumqttd) on a free port, started the way serve starts it."""
    port = free_port()
    endpoint = load_settings(broker_url=f"mqtt://127.0.0.1:{port}").broker
    broker = start_if_needed(endpoint, EmbeddedBroker.AUTO)
    assert broker is not None
    try:
        yield port
    finally:
        broker.stop()


def doctor(options: DoctorOptions | None = None, **flags: Any) -> dict[str, dict[str, Any]]:
    """Run the doctor in-process; its checks by id."""
    checks, _target = asyncio.run(run_doctor(flags, options or DoctorOptions()))
    return {check.id: check.as_dict() for check in checks}


def doctor_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    return subprocess.run(
        [sys.executable, "-m", "mqtthub", "doctor", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---------------------------------------------------------------- 1: doctor on rumqttd


def test_doctor_json_reports_on_the_embedded_rumqttd(rumqttd: int) -> None:
    """rumqttd drops a client that subscribes to $SYS/broker/version: the doctor asks for
    it on its own, last, so the delivery probe runs and --json prints a whole report."""
    done = doctor_cli("--json", env={"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{rumqttd}"})
    assert "TimeoutError" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    checks = {check["id"]: check for check in report["checks"]}
    assert checks["mqtt_connect"]["status"] == "pass", checks["mqtt_connect"]
    assert "MQTT 3.1.1: connected" in checks["mqtt_connect"]["detail"]
    assert checks["subscribe"]["status"] == "pass", checks["subscribe"]
    assert "delivered" in checks["subscribe"]["detail"]
