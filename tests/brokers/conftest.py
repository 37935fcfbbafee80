"""Brokers of the matrix, each started on free ports for one test.

``broker`` is parametrized over :func:`capabilities.matrix`; a (broker, case) pair listed in
:data:`capabilities.CANNOT` gets ``xfail(strict=True)`` with its reason.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from brokers.capabilities import CANNOT, matrix
from support.mosquitto import MosquittoFactory
from support.ports import free_port

USER, PASSWORD = "backend", "right-pass"
AEDES = Path(__file__).with_name("aedes")  # make test-brokers installs it there (npm)
AMQTT = Path(__file__).with_name("amqtt")  # its server script (amqtt is in AMQTT_PYTHON's venv)
AMQTT_PYTHON = Path(__file__).parents[2] / ".venv-amqtt" / "bin" / "python"
"""make test-brokers installs amqtt into this venv of its own (it pins libraries, websockets
among them, that mqtthub's venv must not get)."""


@dataclass(frozen=True)
class Broker:
    """A running broker of the matrix.

    Attributes:
        name: Its matrix name, e.g. ``rumqttd-5``.
        port: Where serve, listen, the doctor and simulate connect.
        publish_port: Where the raw MQTT 3.1.1 test publisher connects (rumqttd's MQTT 5
            listener is a second port of the same broker).
        mqtt_version: ``5`` or ``3.1.1``, given as MQTTHUB_MQTT_VERSION everywhere.
    """

    name: str
    port: int
    publish_port: int
    mqtt_version: str

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def protocol(self) -> str:
        """How serve's /healthz names the protocol."""
        return f"MQTT {self.mqtt_version}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test taking ``broker`` once per broker, with the expected failures marked."""
    if "broker_name" not in metafunc.fixturenames:
        return
    case = metafunc.function.__name__.removeprefix("test_")
    params = []
    for name in matrix():
        reason = CANNOT.get((name, case))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(name, id=name, marks=marks))
    metafunc.parametrize("broker_name", params)


@pytest.fixture(autouse=True)
def _clean_environment(clean_environment: Path) -> None:
    """The doctor reads env and .env: every case of the matrix gets an empty one."""


RUMQTTD_TOML = """
id = 0

[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{v4}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
    {auth}

[v5.1]
name = "v5-1"
listen = "127.0.0.1:{v5}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
    {auth}
"""
"""rumqttd as ``iotcore`` runs it by default (the embedded broker's settings), with its
MQTT 5 listener added on a second port."""


StartBroker = Callable[..., Broker]
"""``start_broker(auth=False)``: start another broker of this test's kind."""


@pytest.fixture
def start_broker(
    broker_name: str, mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> Iterator[StartBroker]:
    """Start brokers of the parametrized kind; all are stopped after the test. With
    ``auth=True`` only USER/PASSWORD may connect."""
    stops: list[Callable[[], None]] = []

    def start(*, auth: bool = False) -> Broker:
        kind, _, version = broker_name.partition("-")
        if kind == "mosquitto":
            # max_queued_messages 0: Mosquitto's default of 1,000 drops QoS 1 messages of a
            # busy or offline session (docs/SCALING.md); the documented setting for mqtthub.
            mosquitto = mosquitto_factory(
                users={USER: PASSWORD} if auth else None, extra="max_queued_messages 0"
            )
            return Broker(broker_name, mosquitto.port, mosquitto.port, version)
        if kind == "rumqttd":
            from iotcore import Broker as Rumqttd

            v4, v5 = free_port(), free_port()
            config = tmp_path / f"rumqttd-{len(stops)}.toml"
            credentials = f'auth = {{ {USER} = "{PASSWORD}" }}' if auth else ""
            config.write_text(RUMQTTD_TOML.format(v4=v4, v5=v5, auth=credentials))
            rumqttd = Rumqttd(port=v4, listen="127.0.0.1", config_path=str(config)).start()
            stops.append(rumqttd.stop)
            return Broker(broker_name, v5 if version == "5" else v4, v4, version)
        if kind in ("aedes", "amqtt"):
            port = free_port()
            credentials = [USER, PASSWORD] if auth else []
            if kind == "aedes":
                command = ["node", str(AEDES / "server.js")]
            else:
                if not AMQTT_PYTHON.exists():
                    raise RuntimeError(
                        f"amqtt's venv is missing ({AMQTT_PYTHON}): "
                        "`make test-brokers` creates it (pip install of the pinned amqtt)"
                    )
                command = [str(AMQTT_PYTHON), str(AMQTT / "server.py")]
            log = tmp_path / f"{kind}-{len(stops)}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [*command, str(port), *credentials], stdout=subprocess.PIPE, stderr=sink
                )
            stops.append(lambda: (process.terminate(), process.wait(10)))
            assert process.stdout is not None
            first = process.stdout.readline().decode(errors="replace").strip()
            assert first == "listening", f"{kind} did not start: {first!r}\n{log.read_text()}"
            return Broker(broker_name, port, port, version)
        raise ValueError(f"unknown broker {broker_name}")

    yield start
    for stop in reversed(stops):
        stop()


@pytest.fixture
def broker(start_broker: StartBroker) -> Broker:
    """A running, anonymous broker of the parametrized kind."""
    return start_broker()
