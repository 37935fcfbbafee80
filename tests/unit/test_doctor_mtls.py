"""Unit tests for mqtthub.doctor.mtls and the client-certificate alerts in
transport/reasons.py: what the doctor and serve say about a client certificate."""

from __future__ import annotations

import pytest

from mqtthub.doctor.checks import Cause, Check, Outcome, passed
from mqtthub.doctor.mtls import ClientCertEvidence, check_client_cert, check_client_cert_files
from mqtthub.transport.reasons import (
    alert_words,
    client_cert_alert,
    describe_client_cert_alert,
)

TLS_OK = passed("tls", "certificate verified; subject CN=broker")
CERT = ClientCertEvidence(
    cert_file="/etc/mqtthub/client.crt",
    key_file="/etc/mqtthub/client.key",
    subject="CN=dev1",
    issuer="CN=Device CA",
    not_before="2026-01-01T00:00:00+00:00",
    not_after="2027-01-01T00:00:00+00:00",
    starts_in_days=-100.0,
    days_left=200.0,
    key_matches=True,
    probed=True,
)
NONE = ClientCertEvidence(probed=True)


def cert(**fields: object) -> ClientCertEvidence:
    values = {name: getattr(CERT, name) for name in CERT.__slots__}  # type: ignore[attr-defined]
    return ClientCertEvidence(**(values | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("alert", "sent", "reason"),
    [
        ("TLSV13_ALERT_CERTIFICATE_REQUIRED", False, "client_cert_required"),
        ("SSLV3_ALERT_HANDSHAKE_FAILURE", False, "client_cert_required"),
        ("SSLV3_ALERT_HANDSHAKE_FAILURE", True, None),
        ("TLSV1_ALERT_UNKNOWN_CA", True, "client_cert_rejected"),
        ("SSLV3_ALERT_BAD_CERTIFICATE", True, "client_cert_rejected"),
        ("SSLV3_ALERT_CERTIFICATE_EXPIRED", True, "client_cert_expired"),
        ("TLSV1_ALERT_PROTOCOL_VERSION", True, None),
        (None, True, None),
    ],
)
def test_alerts_about_the_client_certificate_are_named(
    alert: str | None, sent: bool, reason: str | None
) -> None:
    """OpenSSL's alert names map to the doctor's causes (and serve's log reasons)."""
    assert client_cert_alert(alert, sent_cert=sent) == reason


def test_alert_sentences_name_the_settings() -> None:
    """serve's log line for each verdict names the alert and the setting to change."""
    assert alert_words("TLSV1_ALERT_UNKNOWN_CA") == "unknown ca"
    required = describe_client_cert_alert(
        "client_cert_required", "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    )
    assert "certificate required" in required
    assert "MQTTHUB_CLIENT_CERT" in required
    rejected = describe_client_cert_alert("client_cert_rejected", "TLSV1_ALERT_UNKNOWN_CA")
    assert "client CA" in rejected
    assert "renew" in describe_client_cert_alert(
        "client_cert_expired", "SSLV3_ALERT_CERTIFICATE_EXPIRED"
    )


def test_accepted_certificate_passes_naming_it() -> None:
    check = check_client_cert(TLS_OK, CERT)
    assert check.status is Outcome.PASS
    assert "CN=dev1" in check.detail
    assert "accepted by the broker" in check.detail


def test_no_certificate_and_no_alert_leaves_the_tls_check_alone() -> None:
    assert check_client_cert(TLS_OK, NONE) is TLS_OK


def test_a_failing_tls_check_is_fixed_first() -> None:
    """The broker's own certificate comes first: its failure is kept as it is."""
    failed = Check("tls", Outcome.FAIL, Cause.TLS_UNKNOWN_CA, "x", "y")
    assert check_client_cert(failed, cert(alert="TLSV1_ALERT_UNKNOWN_CA")) is failed


def test_certificate_required_on_tls_1_3() -> None:
    check = check_client_cert(TLS_OK, ClientCertEvidence(alert="TLSV13_ALERT_CERTIFICATE_REQUIRED"))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CLIENT_CERT_REQUIRED)
    assert "handshake failure" not in check.detail
    assert "MQTTHUB_CLIENT_KEY" in (check.fix or "")


def test_handshake_failure_without_a_certificate_on_tls_1_2_is_hedged() -> None:
    check = check_client_cert(TLS_OK, ClientCertEvidence(alert="SSLV3_ALERT_HANDSHAKE_FAILURE"))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CLIENT_CERT_REQUIRED)
    assert "most likely" in check.detail


def test_unknown_ca_names_the_certificate_and_its_issuer() -> None:
    check = check_client_cert(TLS_OK, cert(alert="TLSV1_ALERT_UNKNOWN_CA"))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CLIENT_CERT_REJECTED)
    assert "issuer CN=Device CA" in check.detail
    assert "does not trust the CA" in check.detail


def test_other_rejections_quote_the_alert() -> None:
    check = check_client_cert(TLS_OK, cert(alert="SSLV3_ALERT_CERTIFICATE_REVOKED"))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CLIENT_CERT_REJECTED)
    assert "certificate revoked" in check.detail


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"days_left": -3.0, "alert": "SSLV3_ALERT_CERTIFICATE_EXPIRED"}, "expired on"),
        ({"starts_in_days": 2.0, "alert": "SSLV3_ALERT_BAD_CERTIFICATE"}, "not valid before"),
    ],
)
def test_dates_outside_the_validity_fail(fields: dict[str, object], said: str) -> None:
    check = check_client_cert(TLS_OK, cert(**fields))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CLIENT_CERT_EXPIRED)
    assert said in check.detail


def test_expired_but_accepted_by_a_lenient_broker_warns() -> None:
    check = check_client_cert(TLS_OK, cert(days_left=-3.0))
    assert (check.status, check.cause) == (Outcome.WARN, Cause.CLIENT_CERT_EXPIRED)
    assert "accepted it anyway" in check.detail


def test_broker_says_expired_while_our_clock_disagrees() -> None:
    check = check_client_cert(TLS_OK, cert(alert="SSLV3_ALERT_CERTIFICATE_EXPIRED"))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CLIENT_CERT_EXPIRED)
    assert "broker's clock" in (check.fix or "")


def test_other_alerts_fail_without_a_client_certificate_cause() -> None:
    check = check_client_cert(TLS_OK, cert(alert="SSLV3_ALERT_HANDSHAKE_FAILURE"))
    assert (check.status, check.cause) == (Outcome.FAIL, None)
    assert "handshake failure" in check.detail


def test_certificate_close_to_expiry_warns() -> None:
    check = check_client_cert(TLS_OK, cert(days_left=5.0))
    assert (check.status, check.cause) == (Outcome.WARN, None)
    assert "expires in 5 days" in check.detail


def test_mismatched_key_is_a_config_failure() -> None:
    check = check_client_cert_files(cert(key_matches=False))
    assert check is not None
    assert (check.id, check.status, check.cause) == (
        "config",
        Outcome.FAIL,
        Cause.CLIENT_CERT_KEY_MISMATCH,
    )
    assert "/etc/mqtthub/client.key" in check.detail
    assert check_client_cert_files(CERT) is None
