"""The broker matrix and what each broker cannot do: the one place that says so.

Every case of ``test_matrix.py`` runs against every broker in :data:`BROKERS`. A case a
broker cannot pass is listed in :data:`CANNOT` with the reason; the matrix marks it
``xfail(strict=True)`` with that reason, so it is reported (never skipped) and a broker that
starts passing it turns the run red until the table is corrected.
"""

from __future__ import annotations

import os

__all__ = ["BROKERS", "CANNOT", "matrix"]

BROKERS = ("mosquitto-5", "mosquitto-3.1.1", "rumqttd-3.1.1", "rumqttd-5")
"""Brokers of ``make test``: Mosquitto (system package) with MQTTHUB_MQTT_VERSION forced to
each version, and rumqttd from the installed ``iotcore`` package (the broker ``serve``
embeds) on its MQTT 3.1.1 listener and on its MQTT 5 listener."""

CANNOT: dict[tuple[str, str], str] = {}
"""(broker, case) -> why the broker cannot pass the case. Case names are the test function
names without ``test_``."""


EXTRA_BROKERS = ("aedes-3.1.1",)
"""Brokers of ``make test-brokers`` only (``MQTTHUB_TEST_BROKERS=aedes``): Aedes 1.2 from
npm (tests/brokers/aedes), MQTT 3.1.1 only."""


def matrix() -> tuple[str, ...]:
    """The brokers of this run: ``BROKERS``, plus those ``MQTTHUB_TEST_BROKERS`` names."""
    wanted = {name.strip() for name in os.environ.get("MQTTHUB_TEST_BROKERS", "").split(",")}
    return BROKERS + tuple(b for b in EXTRA_BROKERS if b.partition("-")[0] in wanted)
