"""Checks that the test brokers from ``tests/support`` behave like real, configured brokers.

If these fail, the integration tests of mqtthub itself cannot be trusted either.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.certs import TlsFiles, make_tls_files
from support.mosquitto import (
    MosquittoBroker,
    MosquittoFactory,
    MosquittoToolError,
    mosquitto_pub,
    mosquitto_sub_once,
    mosquitto_subscribe_persistent,
    unique_id,
)

ACL = """\
user backend
topic read devices/#

user dev1
topic write devices/dev1/#
"""
USERS = {"backend": "backend-pw", "dev1": "dev1-pw"}


def test_plain_broker_delivers_a_published_message(mosquitto: MosquittoBroker) -> None:
    """A message published to the plain broker reaches a subscriber."""
    topic = unique_id("plain") + "/temperature"

    mosquitto_pub(mosquitto, topic, "21.5", retain=True)

    assert mosquitto_sub_once(mosquitto, topic) == ["21.5"]
    assert mosquitto.port != 1883
    assert "Opening ipv4 listen socket on port" in mosquitto.log_text()


def test_tls_broker_accepts_clients_trusting_its_ca(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles
) -> None:
    """A client that trusts the test CA can publish and subscribe over TLS."""
    broker = mosquitto_factory(tls=tls_files)
    topic = unique_id("tls")

    mosquitto_pub(broker, topic, "secret", cafile=tls_files.ca_file, retain=True)

    assert mosquitto_sub_once(broker, topic, cafile=tls_files.ca_file) == ["secret"]


def test_tls_broker_is_rejected_by_clients_trusting_another_ca(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles
) -> None:
    """A client that trusts a different CA refuses to talk to the broker."""
    broker = mosquitto_factory(tls=tls_files)

    with pytest.raises(MosquittoToolError, match="TLS error"):
        mosquitto_pub(broker, unique_id("tls"), "x", cafile=tls_files.other_ca_file)


@pytest.mark.parametrize(
    ("hostnames", "ips", "expired"),
    [
        pytest.param(("broker.example",), (), False, id="name-mismatch"),
        pytest.param(("localhost",), ("127.0.0.1",), True, id="expired"),
    ],
)
def test_tls_broker_with_bad_certificate_is_rejected(
    mosquitto_factory: MosquittoFactory,
    tmp_path: Path,
    hostnames: tuple[str, ...],
    ips: tuple[str, ...],
    expired: bool,
) -> None:
    """Even with the right CA, a certificate not valid for 127.0.0.1 or expired is refused."""
    tls = make_tls_files(tmp_path / "bad-tls", hostnames=hostnames, ips=ips, expired=expired)
    broker = mosquitto_factory(tls=tls)

    with pytest.raises(MosquittoToolError, match="TLS error"):
        mosquitto_pub(broker, unique_id("tls"), "x", cafile=tls.ca_file)


def test_password_broker_refuses_wrong_password_and_anonymous(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """Only the configured username/password pair may connect."""
    broker = mosquitto_factory(users={"alice": "correct horse"})
    topic = unique_id("auth")

    mosquitto_pub(broker, topic, "ok", username="alice", password="correct horse")
    with pytest.raises(MosquittoToolError, match="not authorised") as wrong_password:
        mosquitto_pub(broker, topic, "x", username="alice", password="wrong")
    with pytest.raises(MosquittoToolError, match="not authorised") as anonymous:
        mosquitto_pub(broker, topic, "x")

    assert wrong_password.value.returncode == 5  # CONNACK 5: not authorised (MQTT 3.1.1)
    assert anonymous.value.returncode == 5


def test_acl_broker_drops_publishes_outside_the_devices_own_topics(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """The backend gets dev1's own telemetry but never dev1's message on dev2's topic.

    Both publishes are acknowledged (MQTT 3.1.1 has no way to report the denial); the
    backend's queued session shows which one the broker actually let through.
    """
    broker = mosquitto_factory(users=USERS, acl=ACL)
    session = unique_id("backend")
    mosquitto_subscribe_persistent(
        broker, "devices/#", client_id=session, username="backend", password=USERS["backend"]
    )

    mosquitto_pub(broker, "devices/dev2/sensor", "spoofed", username="dev1", password=USERS["dev1"])
    mosquitto_pub(broker, "devices/dev1/sensor", "genuine", username="dev1", password=USERS["dev1"])
    # Queued messages arrive in publish order, so the first one shows whether "spoofed" got in.
    received = mosquitto_sub_once(
        broker,
        "devices/#",
        client_id=session,
        clean_session=False,
        verbose=True,
        username="backend",
        password=USERS["backend"],
    )

    assert received == ["devices/dev1/sensor genuine"]
    assert "Denied PUBLISH" in broker.log_text()


def test_acl_denied_subscription_is_granted_but_stays_silent(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """A device subscribing where it may not read gets no error, just no messages.

    Mosquitto 2.0 grants the SUBSCRIBE and filters each message at delivery time.
    """
    broker = mosquitto_factory(users=USERS, acl=ACL)
    session = unique_id("dev1")
    mosquitto_subscribe_persistent(
        broker, "devices/#", client_id=session, username="dev1", password=USERS["dev1"]
    )
    mosquitto_pub(broker, "devices/dev1/sensor", "own", username="dev1", password=USERS["dev1"])

    with pytest.raises(MosquittoToolError, match="Timed out") as nothing_received:
        mosquitto_sub_once(
            broker,
            "devices/#",
            client_id=session,
            clean_session=False,
            timeout=1,
            username="dev1",
            password=USERS["dev1"],
        )
    assert nothing_received.value.returncode == 27


def test_acl_denial_is_reported_to_mqtt5_publishers(mosquitto_factory: MosquittoFactory) -> None:
    """With MQTT 5 the device is told its publish was not authorised."""
    broker = mosquitto_factory(users=USERS, acl=ACL)

    with pytest.raises(MosquittoToolError, match="Not authorized"):
        mosquitto_pub(
            broker,
            "devices/dev2/sensor",
            "spoofed",
            username="dev1",
            password=USERS["dev1"],
            protocol="mqttv5",
        )


def test_persistent_broker_keeps_queued_message_across_restart(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """A QoS 1 message queued for an offline subscriber survives a broker restart."""
    broker = mosquitto_factory(persistence=True)
    session = unique_id("keeper")
    topic = unique_id("persist")
    mosquitto_subscribe_persistent(broker, topic, client_id=session)
    mosquitto_pub(broker, topic, "survives")
    port = broker.port

    broker.restart()

    assert broker.port == port
    assert (broker.workdir / "mosquitto.db").exists()
    received = mosquitto_sub_once(broker, topic, client_id=session, clean_session=False)
    assert received == ["survives"]


def test_broker_with_bad_config_fails_with_its_log(tmp_path: Path) -> None:
    """A config Mosquitto rejects makes start() fail at once, showing Mosquitto's complaint."""
    broker = MosquittoBroker(workdir=tmp_path / "bad", extra="no_such_option true")

    with pytest.raises(RuntimeError, match="no_such_option"):
        broker.start()
    assert not broker.running
