"""`mqtthub doctor` against a real Mosquitto that verifies client certificates
(``require_certificate true``, client certificates checked against the listener's cafile).

Mosquitto 2.0's ``tls_version`` is only a minimum, so every handshake here is TLS 1.3, where
the broker's verdict on the client certificate arrives right after the handshake; TLS 1.2's
"handshake failure" for a missing certificate is covered by the unit tests of the rules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from support.certs import ClientCert, TlsFiles, make_client_cert, make_tls_files
from support.doctor import doctor_checks
from support.mosquitto import MosquittoBroker, MosquittoFactory

pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def mtls_broker(mosquitto_factory: MosquittoFactory, tls: TlsFiles) -> MosquittoBroker:
    """A TLS listener that requires a client certificate signed by ``tls.ca_file``."""
    return mosquitto_factory(tls=tls, require_certificate=True)


def doctor(
    broker: MosquittoBroker, tls: TlsFiles, client: ClientCert | None, **flags: Any
) -> dict[str, dict[str, Any]]:
    if client is not None:
        flags |= {"client_cert": str(client.cert), "client_key": str(client.key)}
    flags |= {"broker_url": f"mqtts://localhost:{broker.port}", "ca_file": str(tls.ca_file)}
    return doctor_checks(flags)


def verdict(checks: dict[str, dict[str, Any]], check_id: str = "tls") -> tuple[str, str | None]:
    return checks[check_id]["status"], checks[check_id]["cause"]


def test_a_client_certificate_from_the_brokers_ca_passes(
    mtls_broker: MosquittoBroker, tls: TlsFiles
) -> None:
    """The right certificate: TLS passes naming it, and MQTT works through it."""
    checks = doctor(mtls_broker, tls, make_client_cert(tls, "dev1"))
    assert verdict(checks) == ("pass", None), checks["tls"]
    assert "CN=dev1" in checks["tls"]["detail"]
    assert "accepted by the broker" in checks["tls"]["detail"]
    assert checks["subscribe"]["status"] == "pass"


def test_no_client_certificate_while_the_broker_asks_for_one(
    mtls_broker: MosquittoBroker, tls: TlsFiles
) -> None:
    """No MQTTHUB_CLIENT_CERT: client_cert_required, the later layers skipped."""
    checks = doctor(mtls_broker, tls, None)
    assert verdict(checks) == ("fail", "client_cert_required"), checks["tls"]
    assert "certificate required" in checks["tls"]["detail"]
    assert "MQTTHUB_CLIENT_CERT" in checks["tls"]["fix"]
    assert checks["mqtt_connect"]["status"] == "skip"


def test_a_client_certificate_from_another_ca_is_rejected(
    mtls_broker: MosquittoBroker, tls: TlsFiles
) -> None:
    """Signed by a CA the broker does not trust for clients: client_cert_rejected."""
    checks = doctor(mtls_broker, tls, make_client_cert(tls, "stranger", other_ca=True))
    assert verdict(checks) == ("fail", "client_cert_rejected"), checks["tls"]
    assert "unknown ca" in checks["tls"]["detail"]
    assert "CN=stranger" in checks["tls"]["detail"]
    assert "cafile" in checks["tls"]["fix"]


def test_a_key_that_is_not_the_certificates_is_found_before_connecting(
    mtls_broker: MosquittoBroker, tls: TlsFiles
) -> None:
    """The key of another certificate: client_cert_key_mismatch in the config check."""
    other = make_client_cert(tls, "other")
    checks = doctor(mtls_broker, tls, make_client_cert(tls, "dev1", key_of=other))
    assert verdict(checks, "config") == ("fail", "client_cert_key_mismatch"), checks["config"]
    assert "MQTTHUB_CLIENT_KEY" in checks["config"]["fix"]
    assert checks["tcp"]["status"] == "skip"


@pytest.mark.parametrize(
    ("days", "said"), [((-30, -1), "expired on"), ((10, 40), "not valid before")]
)
def test_a_client_certificate_outside_its_validity(
    mtls_broker: MosquittoBroker, tls: TlsFiles, days: tuple[int, int], said: str
) -> None:
    """Expired or not yet valid: client_cert_expired, from the dates and the broker's alert."""
    now = dt.datetime.now(dt.UTC)
    start, end = (now + dt.timedelta(days=d) for d in days)
    client = make_client_cert(tls, "dev1", not_before=start, not_after=end)
    checks = doctor(mtls_broker, tls, client)
    assert verdict(checks) == ("fail", "client_cert_expired"), checks["tls"]
    assert said in checks["tls"]["detail"]
    assert "the broker answered with TLS alert" in checks["tls"]["detail"]
    assert "renew" in checks["tls"]["fix"]
