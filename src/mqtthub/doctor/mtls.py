"""Client certificates (mutual TLS): what the files say and what the broker answered (pure).

Two rules: :func:`check_client_cert_files` turns a certificate and key that do not
belong together (found locally, before any connection) into the ``config`` check;
:func:`check_client_cert` refines a passing ``tls`` check with the broker's verdict on
our certificate (the TLS alert it sent) and the certificate's own validity dates.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqtthub.doctor.checks import Cause, Check, Outcome
from mqtthub.doctor.network_rules import EXPIRY_WARNING_DAYS
from mqtthub.transport.reasons import (
    alert_words,
    client_cert_alert,
    describe_client_cert_alert,
)

CLIENT_CA_FIX = (
    "use a client certificate issued by the CA the broker verifies clients with "
    "(Mosquitto: the listener's cafile/capath with require_certificate true; EMQX: "
    "ssl_options.cacertfile with verify_peer) in MQTTHUB_CLIENT_CERT and MQTTHUB_CLIENT_KEY"
)


@dataclass(frozen=True, slots=True)
class ClientCertEvidence:
    """The configured client certificate (read locally) and the broker's TLS verdict.

    Attributes:
        cert_file: MQTTHUB_CLIENT_CERT (None: no client certificate configured).
        key_file: the file the key was read from (MQTTHUB_CLIENT_KEY, else the cert file).
        subject: the certificate's subject (RFC 4514).
        issuer: its issuer.
        not_before: start of validity (ISO 8601).
        not_after: end of validity (ISO 8601).
        starts_in_days: days until it becomes valid (> 0: not valid yet).
        days_left: days until it expires (< 0: expired).
        key_matches: whether the key is the certificate's (None: not checked).
        read_error: why the files could not be read, if they could not.
        alert: the TLS alert the broker sent (OpenSSL's name), None if none.
        probed: whether a handshake with the broker was made to hear its verdict.
    """

    cert_file: str | None = None
    key_file: str | None = None
    subject: str | None = None
    issuer: str | None = None
    not_before: str | None = None
    not_after: str | None = None
    starts_in_days: float = 0.0
    days_left: float = 365.0
    key_matches: bool | None = None
    read_error: str | None = None
    alert: str | None = None
    probed: bool = False


def _describe(evidence: ClientCertEvidence) -> str:
    if evidence.subject is None:
        return f"client certificate {evidence.cert_file}"
    return (
        f"client certificate {evidence.cert_file} (subject {evidence.subject}, issuer "
        f"{evidence.issuer}, valid {evidence.not_before} to {evidence.not_after})"
    )


def check_client_cert_files(evidence: ClientCertEvidence) -> Check | None:
    """A certificate whose key is not in MQTTHUB_CLIENT_KEY fails the ``config`` check
    with its own cause (None: the files are not the problem)."""
    if evidence.key_matches is not False:
        return None
    return Check(
        "config",
        Outcome.FAIL,
        Cause.CLIENT_CERT_KEY_MISMATCH,
        f"the private key in {evidence.key_file} does not belong to the "
        f"{_describe(evidence)}: the key's public key is not the certificate's",
        "set MQTTHUB_CLIENT_KEY to the private key the certificate was issued for (or "
        "MQTTHUB_CLIENT_CERT to the certificate of this key); "
        "`openssl x509 -noout -pubkey -in CERT` and `openssl pkey -pubout -in KEY` must "
        "print the same key",
    )


def _validity_problem(evidence: ClientCertEvidence) -> str | None:
    if evidence.subject is None:
        return None
    if evidence.days_left < 0:
        return f"it expired on {evidence.not_after} ({-evidence.days_left:.0f} days ago)"
    if evidence.starts_in_days > 0:
        return (
            f"it is not valid before {evidence.not_before} (in {evidence.starts_in_days:.1f} "
            "days; or this machine's clock is behind)"
        )
    return None


def check_client_cert(tls: Check, evidence: ClientCertEvidence) -> Check:
    """Refine the ``tls`` check with what the broker said about our client certificate.

    A failing ``tls`` check (the broker's own certificate) is returned unchanged: that is
    the first thing to fix.
    """
    if tls.status is Outcome.FAIL:
        return tls
    sent = evidence.cert_file is not None
    reason = client_cert_alert(evidence.alert, sent_cert=sent)
    validity = _validity_problem(evidence)
    heard = (
        f"; the broker answered with TLS alert '{alert_words(evidence.alert)}'"
        if evidence.alert
        else ""
    )
    if validity is not None and (reason is not None or evidence.alert is None):
        accepted = evidence.probed and evidence.alert is None
        return Check(
            "tls",
            Outcome.WARN if accepted else Outcome.FAIL,
            Cause.CLIENT_CERT_EXPIRED,
            f"the {_describe(evidence)} is not valid now: {validity}{heard}"
            + (
                "; this broker accepted it anyway (it does not check the dates)" if accepted else ""
            ),
            "renew the client certificate and point MQTTHUB_CLIENT_CERT/MQTTHUB_CLIENT_KEY at "
            "the new one (and check this machine's clock)",
        )
    if reason == "client_cert_required":
        tls12 = evidence.alert != "TLSV13_ALERT_CERTIFICATE_REQUIRED"
        hedge = " (TLS 1.2 only says 'handshake failure': most likely this)" if tls12 else ""
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.CLIENT_CERT_REQUIRED,
            f"the broker requires a client certificate and none is configured{hedge}{heard}",
            "set MQTTHUB_CLIENT_CERT and MQTTHUB_CLIENT_KEY to a client certificate and its "
            "key, issued by the CA the broker verifies clients with (Mosquitto: the "
            "listener's cafile with require_certificate true)",
        )
    if reason == "client_cert_rejected":
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.CLIENT_CERT_REJECTED,
            f"the broker rejected the {_describe(evidence)}{heard}: it does not trust the "
            "CA that issued it"
            if evidence.alert == "TLSV1_ALERT_UNKNOWN_CA"
            else f"the broker rejected the {_describe(evidence)}{heard}",
            CLIENT_CA_FIX,
        )
    if reason == "client_cert_expired":
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.CLIENT_CERT_EXPIRED,
            f"the broker says the {_describe(evidence)} has expired{heard}, though by this "
            "machine's clock it is valid: the broker's clock is probably wrong",
            "check the broker's clock (NTP), or renew the client certificate "
            "(MQTTHUB_CLIENT_CERT/MQTTHUB_CLIENT_KEY)",
        )
    if evidence.alert is not None:
        return Check(
            "tls",
            Outcome.FAIL,
            None,
            describe_client_cert_alert("", evidence.alert) + f"; {tls.detail}",
            "see the broker's log for why it ended the handshake",
        )
    if sent and evidence.subject is not None and evidence.days_left < EXPIRY_WARNING_DAYS:
        return Check(
            "tls",
            Outcome.WARN,
            None,
            f"{tls.detail}; the {_describe(evidence)} expires in {evidence.days_left:.0f} days",
            "renew the client certificate (MQTTHUB_CLIENT_CERT/MQTTHUB_CLIENT_KEY)",
        )
    if sent and tls.status is Outcome.PASS:
        verdict = "accepted by the broker" if evidence.probed else "sent"
        return Check("tls", Outcome.PASS, None, f"{tls.detail}; {_describe(evidence)} {verdict}")
    return tls
