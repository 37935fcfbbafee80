"""The broker matrix and what each broker cannot do: the one place that says so.

Every case of ``test_matrix.py`` runs against every broker in :data:`BROKERS`. A case a
broker cannot pass is listed in :data:`CANNOT` with the reason; the matrix marks it
``xfail(strict=True)`` with that reason, so it is reported (never skipped) and a broker that
starts passing it turns the run red until the table is corrected.
"""

from __future__ import annotations

import os

__all__ = ["BROKERS", "CANNOT", "EXTRA_BROKERS", "FORGETS_SESSIONS", "matrix"]

BROKERS = ("mosquitto-5", "mosquitto-3.1.1", "rumqttd-3.1.1", "rumqttd-5")
"""Brokers of ``make test``: Mosquitto (system package) with MQTTHUB_MQTT_VERSION forced to
each version, and rumqttd from the installed ``iotcore`` package (the broker ``serve``
embeds) on its MQTT 3.1.1 listener and on its MQTT 5 listener."""

_AMQTT_SESSIONS = (
    "amqtt 0.12.1 keeps no session for a disconnected anonymous client (allow_anonymous, "
    "its default): QoS 1 messages published for it are not queued, and the session itself is "
    "swept away within a second of the disconnect"
)

CANNOT: dict[tuple[str, str], str] = {
    ("amqtt-3.1.1", "kill_9_and_resume"): _AMQTT_SESSIONS
    + ": the messages published while serve is down are lost. A serve restarted after the "
    "sweep reports session_lost; one restarted within that second even finds its session "
    "resumed (CONNACK session present), without the messages, and cannot tell",
    ("amqtt-3.1.1", "redelivery_stored_once"): (
        "amqtt 0.12.1 never re-sends an unacknowledged QoS 1 message: it drops it from the "
        "session when the connection closes, or after 5 s without PUBACK; here serve had "
        "stored the messages, so nothing is lost, but there is no redelivery to recognise"
    ),
}
"""(broker, case) -> why the broker cannot pass the case. Case names are the test function
names without ``test_``."""

FORGETS_SESSIONS: dict[str, str] = {"amqtt-3.1.1": _AMQTT_SESSIONS}
"""Brokers that forget serve's persistent session while it is disconnected, and why. Where a
case can check what serve must then do (reconnect and report ``session_lost`` on /healthz:
network_drop_resumes_session), it does so instead of failing; the loss itself is the
broker's and cannot be helped by serve."""


EXTRA_BROKERS = ("aedes-3.1.1", "amqtt-3.1.1")
"""Brokers of ``make test-brokers`` only (``MQTTHUB_TEST_BROKERS=aedes,amqtt``): Aedes 1.2 from
npm (tests/brokers/aedes), and amqtt 0.12 from PyPI in a venv of its own (tests/brokers/amqtt);
both speak MQTT 3.1.1 only."""


def matrix() -> tuple[str, ...]:
    """The brokers of this run: ``BROKERS``, plus those ``MQTTHUB_TEST_BROKERS`` names."""
    wanted = {name.strip() for name in os.environ.get("MQTTHUB_TEST_BROKERS", "").split(",")}
    return BROKERS + tuple(b for b in EXTRA_BROKERS if b.partition("-")[0] in wanted)
