"""``mqtthub simulate`` against real Mosquitto brokers, observed through ``mqtthub serve``.

The fleet runs in-process (``run_fleet`` on an event loop in a thread of its own) so the
tests can read its live counters while they poll serve's HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from click.testing import CliRunner

from mqtthub.config import BrokerEndpoint, MqttVersion
from mqtthub.simulate import FleetConfig, FleetSummary, run_fleet, simulate
from mqtthub.simulation_values import SENSOR_FIELDS, device_ids
from support.certs import TlsFiles
from support.mosquitto import MosquittoBroker, MosquittoFactory
from support.serve import ServeProcess, device, serve_for, wait_until


class FleetThread:
    """``run_fleet`` on an event loop in a background thread; :meth:`stop` ends it."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.live: FleetSummary | None = None  # the fleet's own counters, updated as it runs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._result: FleetSummary | None = None
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="fleet", daemon=True)

    def _main(self) -> None:
        async def main() -> FleetSummary:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._started.set()
            return await run_fleet(self.config, stop=self._stop, on_progress=self._progress)

        try:
            self._result = asyncio.run(main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._started.set()

    def _progress(self, summary: FleetSummary, _rate: float) -> None:
        self.live = summary

    def counters(self) -> FleetSummary:
        """The live counters (after the first progress tick)."""
        return wait_until(lambda: self.live, timeout=5, what="the first progress tick")

    def stop(self) -> FleetSummary:
        """End the run (devices say goodbye and disconnect) and return the final counters."""
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the fleet did not stop within 30 s"
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __enter__(self) -> Self:
        self._thread.start()
        self._started.wait(timeout=5)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread.is_alive():
            self.stop()


def fleet_config(broker: MosquittoBroker, **changes: Any) -> FleetConfig:
    """A small, fast fleet for ``broker``: short intervals and quick reconnects."""
    settings: dict[str, Any] = {
        "endpoint": BrokerEndpoint(broker.host, broker.port, False, None, None),
        "devices": 5,
        "sensor_interval": 0.5,
        "heartbeat_interval": 1.0,
        "reconnect_base": 0.1,
        "reconnect_cap": 0.5,
        "connect_timeout": 5.0,
        "progress_interval": 0.1,
        "seed": 1,
    }
    return FleetConfig(**{**settings, **changes})


def online_ids(serve: ServeProcess) -> set[str]:
    return {d["id"] for d in serve.get("/api/devices", params={"status": "online"}).json()}


def has_all_sensor_values(serve: ServeProcess, device_id: str) -> bool:
    found = device(serve, device_id)
    return found is not None and set(SENSOR_FIELDS) <= set(found["latest"])


def wait_all_offline(serve: ServeProcess, ids: set[str]) -> None:
    """Wait until serve has taken in every goodbye (or will) of the fleet.

    Tests stop serve only after this: SIGTERM to serve while the burst of goodbyes arrives
    sometimes hangs serve's shutdown (a serve issue, reported separately).
    """
    wait_until(lambda: not online_ids(serve) & ids, timeout=15, what="every device offline")


def test_twenty_devices_come_online_with_sensor_values_and_leave_cleanly(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """20 devices: all online in serve with all seven sensor values; at the end, offline."""
    expected = set(device_ids(20, "sim"))
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        with FleetThread(fleet_config(mosquitto, devices=20)) as fleet:
            wait_until(lambda: online_ids(serve) >= expected, timeout=20, what="20 online")
            wait_until(
                lambda: all(has_all_sensor_values(serve, d) for d in sorted(expected)),
                timeout=20,
                what="every device's sensor values",
            )
            wait_until(
                lambda: fleet.live is not None and fleet.live.sent["heartbeat"] >= 20,
                timeout=20,
                what="20 heartbeats sent (one a second a device)",
            )
            summary = fleet.stop()
        wait_all_offline(serve, expected)
        reasons = {(device(serve, d) or {}).get("status_reason") for d in expected}
    assert reasons == {"status_message"}  # a timed goodbye, not a last will
    assert summary.connects == 20
    assert summary.peak_connected == 20
    assert (summary.connect_failures, summary.drops, summary.lost) == (0, 0, 0)
    assert summary.publish_errors == 0
    assert summary.sent["status"] == 40  # online and offline of each device
    assert summary.sent["sensor"] >= 20
    assert summary.sent["heartbeat"] >= 20


def test_drops_fire_the_last_will_and_devices_come_back(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """--drop-rate: serve sees a device go offline by its last will, then online again."""
    ids = device_ids(10, "sim")

    def dropped_and_back() -> str | None:
        for device_id in ids:
            if device(serve, device_id) is None:
                continue
            events = serve.get(f"/api/devices/{device_id}/events").json()
            pairs = [(e["status"], e["reason"]) for e in events]
            if ("offline", "last_will") in pairs[1:] and pairs[0][0] == "online":
                return device_id
        return None

    config = fleet_config(mosquitto, devices=10, drop_rate=1.0)
    with serve_for(mosquitto.port, tmp_path / "serve") as serve, FleetThread(config) as fleet:
        wait_until(dropped_and_back, timeout=40, interval=0.2, what="offline by will, back")
        assert fleet.counters().drops >= 1
        summary = fleet.stop()
        wait_all_offline(serve, set(ids))
    assert summary.connects >= 10 + 1
    assert summary.connect_failures == 0
    assert "closed its connection" in mosquitto.log_text()  # no DISCONNECT was sent


def test_malformed_messages_become_dead_letters_of_each_kind(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """--malformed-rate 1.0: invalid_json, non_finite_number and device_id_mismatch."""
    wanted = {"invalid_json", "non_finite_number", "device_id_mismatch"}

    def dead_letter_reasons() -> set[str]:
        stats = serve.get("/api/stats").json()
        return set(stats["dead_letters_by_reason"])

    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        config = fleet_config(mosquitto, malformed_rate=1.0, sensor_interval=0.2)
        with FleetThread(config) as fleet:
            wait_until(lambda: dead_letter_reasons() >= wanted, timeout=20, what=str(wanted))
            summary = fleet.stop()
        wait_all_offline(serve, set(device_ids(config.devices, "sim")))
        letters = serve.get("/api/dead-letters", params={"limit": 1000}).json()
    assert {letter["reason"] for letter in letters} == wanted
    assert all(letter["topic"].endswith("/sensor") for letter in letters)
    assert summary.sent["sensor"] == 0
    assert summary.sent["malformed"] == sum(summary.malformed.values())
    assert set(summary.malformed) == wanted


def test_duplicate_client_ids_reproduce_the_kick_loop(mosquitto: MosquittoBroker) -> None:
    """Two pairs share client ids: Mosquitto keeps closing the old connection of each."""
    config = fleet_config(mosquitto, devices=6, duplicate_client_ids=2)

    def kicks(client_id: str) -> int:
        line = f"Client {client_id} already connected, closing old connection."
        return mosquitto.log_text().count(line)

    with FleetThread(config) as fleet:
        live = fleet.counters()
        wait_until(
            lambda: min(kicks("sim-devices-0001"), kicks("sim-devices-0002")) >= 3,
            timeout=20,
            what="both shared client ids kicked three times",
        )
        assert live.lost >= 6
        summary = fleet.stop()
    connects = Counter(re.findall(r"New client connected from \S+ as (\S+) ", mosquitto.log_text()))
    assert connects["sim-devices-0001"] >= 4
    assert connects["sim-devices-0002"] >= 4
    assert connects["sim-devices-0003"] == connects["sim-devices-0004"] == 1
    assert (kicks("sim-devices-0003"), kicks("sim-devices-0004")) == (0, 0)
    assert summary.lost >= 6
    assert summary.drops == 0


def test_tls_with_per_device_credentials(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles
) -> None:
    """MQTT 5 over TLS with a CA file and per-device credentials; a wrong password is named."""
    users = {f"dev-{d}": f"pw-{d}" for d in device_ids(3, "sim")}
    broker = mosquitto_factory(tls=tls_files, users=users)
    context = ssl.create_default_context(cafile=str(tls_files.ca_file))
    endpoint = BrokerEndpoint(broker.host, broker.port, True, None, None)
    templates = {"username_template": "dev-{device_id}", "password_template": "pw-{device_id}"}
    good = fleet_config(
        broker,
        endpoint=endpoint,
        ssl_context=context,
        devices=3,
        mqtt_version=MqttVersion.V5,
        **templates,
    )
    with FleetThread(good) as fleet:
        live = fleet.counters()
        wait_until(lambda: live.connected == 3, timeout=10, what="3 connected over TLS")
        summary = fleet.stop()
    assert (summary.connects, summary.connect_failures) == (3, 0)
    assert summary.sent["sensor"] > 0
    assert broker.log_text().count("(p5, c1, k60, u'dev-sim") == 3  # MQTT 5, own user each

    bad = fleet_config(
        broker,
        endpoint=endpoint,
        ssl_context=context,
        devices=1,
        username_template="dev-{device_id}",
        password_template="wrong",
    )
    with FleetThread(bad) as fleet:
        live = fleet.counters()
        wait_until(lambda: live.failure_reasons["not_authorized"] >= 1, timeout=10, what="refusal")
        summary = fleet.stop()
    assert summary.connects == 0


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """Invoke the command in an empty directory (no .env) without the caller's MQTT settings."""
    inherited = {name: None for name in os.environ if name.startswith(("MQTTHUB_", "MQTT_"))}
    runner = CliRunner(env={**inherited, **(env or {})})
    with tempfile.TemporaryDirectory() as empty, contextlib.chdir(empty):
        return runner.invoke(simulate, list(args), catch_exceptions=False)


def test_cli_help_documents_every_option() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for option in (
        "--broker-url",
        "--devices",
        "--sensor-interval",
        "--heartbeat-interval",
        "--duration",
        "--qos",
        "--prefix",
        "--id-prefix",
        "--connect-rate",
        "--drop-rate",
        "--malformed-rate",
        "--duplicate-client-ids",
        "--username-template",
        "--password-template",
        "--ca-file",
        "--mqtt-version",
    ):
        assert option in result.stdout
    assert "last will" in result.stdout


def test_cli_rejects_a_bad_broker_url_with_exit_2() -> None:
    result = run_cli("--broker-url", "http://127.0.0.1:1883", "--duration", "1")
    assert result.exit_code == 2
    assert "MQTTHUB_BROKER_URL" in result.stderr
    assert "mqtt://" in result.stderr
    result = run_cli("--duration", "1", env={"MQTTHUB_BROKER_URL": "mqtt://"})
    assert result.exit_code == 2
    assert "has no host" in result.stderr


def test_cli_rejects_impossible_chaos_with_exit_2() -> None:
    nowhere = ("--broker-url", "mqtt://127.0.0.1:1", "--duration", "1")  # never reached
    result = run_cli(*nowhere, "--devices", "4", "--duplicate-client-ids", "3")
    assert result.exit_code == 2
    assert "duplicate client ids: 0 to 2" in result.stderr
    result = run_cli(*nowhere, "--username-template", "{user}")
    assert result.exit_code == 2
    assert "may only use {device_id}" in result.stderr


def test_cli_runs_for_its_duration_and_prints_a_summary(mosquitto: MosquittoBroker) -> None:
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    result = run_cli(
        "--broker-url",
        url,
        "--devices",
        "3",
        "--duration",
        "2.5",
        "--sensor-interval",
        "0.5",
        "--heartbeat-interval",
        "1",
    )
    assert result.exit_code == 0, result.stderr
    assert re.search(r"connected 3/3 .* msg/s", result.stderr), result.stderr
    assert "simulated 3 devices" in result.stderr
    assert "connects 3, chaos drops 0" in result.stderr


def test_cli_exits_1_when_no_device_can_connect(mosquitto: MosquittoBroker) -> None:
    port = mosquitto.port
    mosquitto.stop()
    result = run_cli(
        "--broker-url", f"mqtt://127.0.0.1:{port}", "--devices", "2", "--duration", "1"
    )
    assert result.exit_code == 1
    assert "no device could connect (connection_refused" in result.stderr


@pytest.mark.parametrize(
    ("profile", "serve_profiles", "metric", "unit", "reason"),
    [
        ("tasmota", "tasmota", "BME280.Temperature", "°C", "last_will"),
        ("esphome", "esphome", "temperature", None, "last_will"),
        ("esphome", "esphome,homeassistant", "temperature", "°C", "last_will"),
        ("homeassistant", "homeassistant", "temperature", "°C", None),
        ("homie", "homie", "env.temperature", "°C", "status_message"),
    ],
)
def test_cli_emulates_each_firmware_for_serve_with_its_profile(
    mosquitto: MosquittoBroker,
    tmp_path: Path,
    profile: str,
    serve_profiles: str,
    metric: str,
    unit: str | None,
    reason: str | None,
) -> None:
    """simulate --profile X against serve with MQTTHUB_PROFILES=X: every device's readings
    arrive with their units (ESPHome's units come from its discovery configs), and the
    devices are offline after the run."""
    ids = set(device_ids(2, "sim"))
    with serve_for(
        mosquitto.port,
        tmp_path / "serve",
        MQTTHUB_PROFILES=serve_profiles,
        MQTTHUB_HEARTBEAT_TIMEOUT="600",
    ) as serve:
        result = run_cli(
            *("--broker-url", f"mqtt://{mosquitto.host}:{mosquitto.port}"),
            *("--profile", profile, "--devices", "2", "--duration", "4"),
            *("--sensor-interval", "0.5", "--heartbeat-interval", "1"),
        )
        assert result.exit_code == 0, result.stderr
        assert "connects 2," in result.stderr

        def stored() -> list[dict[str, Any]]:
            found = [(device(serve, d) or {}).get("latest", {}).get(metric) for d in sorted(ids)]
            return [r for r in found if r] if all(found) else []

        readings = wait_until(stored, timeout=10, what=f"{metric} of both devices")
        assert {r["unit"] for r in readings} == {unit}
        assert all(15 <= r["value"] <= 32 for r in readings)
        wait_all_offline(serve, ids)
        reasons = {(device(serve, d) or {}).get("status_reason") for d in ids}
        letters = serve.get("/api/dead-letters").json()
    assert letters == []
    if reason is not None:  # Home Assistant availability: the profile's own presence reason
        assert reasons == {reason}
