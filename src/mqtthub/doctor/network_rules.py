"""The doctor's rules for reaching the broker (pure, no I/O).

They decide whether the settings load and agree (``config``), the broker host resolves
(``dns``), something accepts TCP connections at its port (``tcp``), and the client's TLS
setting matches the port and the broker's certificate verifies (``tls``). The evidence
comes from :mod:`mqtthub.doctor.probes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mqtthub.doctor.checks import Cause, Check, Outcome, passed

# ---------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class ConfigEvidence:
    """The effective settings (secrets masked), or why they could not be loaded."""

    summary: dict[str, Any]
    error: str | None = None
    contradictions: tuple[str, ...] = ()


def check_config(evidence: ConfigEvidence) -> Check:
    """Invalid settings fail; contradictory ones warn."""
    if evidence.error:
        variables = [
            line.split(":", 1)[0]
            for line in evidence.error.splitlines()
            if re.fullmatch(r"[A-Z][A-Z0-9_]*( / [A-Z][A-Z0-9_]*)*", line.split(":", 1)[0])
        ]
        named = " and ".join(dict.fromkeys(variables)) if variables else "the settings"
        return Check(
            "config",
            Outcome.FAIL,
            Cause.CONFIG_INVALID,
            evidence.error,
            f"correct {named} (see the message above)",
        )
    shown = ", ".join(f"{k}={v}" for k, v in evidence.summary.items())
    if evidence.contradictions:
        return Check(
            "config",
            Outcome.WARN,
            Cause.CONFIG_INVALID,
            f"{shown}; " + "; ".join(evidence.contradictions),
            "make the broker settings agree: keep only MQTTHUB_BROKER_URL, with mqtts:// for "
            "a TLS port",
        )
    return passed("config", shown)


# ---------------------------------------------------------------- dns and tcp


@dataclass(frozen=True, slots=True)
class NetworkEvidence:
    """Name resolution and the TCP connect to the broker address."""

    host: str
    port: int
    addresses: tuple[str, ...] = ()
    dns_error: str | None = None
    tcp: str = "open"  # open | refused | timeout | error
    tcp_error: str | None = None
    local: bool = False
    broker_processes: tuple[str, ...] = ()


def check_dns(evidence: NetworkEvidence) -> Check:
    """The broker host must resolve."""
    if evidence.dns_error:
        return Check(
            "dns",
            Outcome.FAIL,
            Cause.DNS_FAILURE,
            f"{evidence.host} does not resolve: {evidence.dns_error}",
            "check the host in MQTTHUB_BROKER_URL (or MQTT_BROKER_HOST), or use its IP address",
        )
    return passed("dns", f"{evidence.host} -> {', '.join(evidence.addresses)}")


def check_tcp(evidence: NetworkEvidence) -> Check:
    """Something must accept TCP connections at the broker address."""
    where = f"{evidence.host}:{evidence.port}"
    if evidence.tcp == "open":
        return passed("tcp", f"{where} accepts connections")
    if evidence.tcp == "timeout":
        return Check(
            "tcp",
            Outcome.FAIL,
            Cause.CONNECTION_TIMEOUT,
            f"no answer from {where} (packets are dropped: a firewall, a wrong address, or "
            "a broker too busy to accept)",
            f"check that {where} is the broker's address and that a firewall lets port "
            f"{evidence.port} through",
        )
    if evidence.tcp == "refused" and evidence.local and not evidence.broker_processes:
        return Check(
            "tcp",
            Outcome.FAIL,
            Cause.BROKER_NOT_RUNNING,
            f"connection to {where} refused and no broker process runs on this machine",
            "start the broker (e.g. `mosquitto -d -c /etc/mosquitto/mosquitto.conf`), or let "
            "`mqtthub serve` start its embedded one (MQTTHUB_EMBEDDED_BROKER=auto)",
        )
    if evidence.tcp == "refused":
        running = (
            f"; broker processes here: {', '.join(evidence.broker_processes)}"
            if evidence.broker_processes
            else ""
        )
        return Check(
            "tcp",
            Outcome.FAIL,
            Cause.CONNECTION_REFUSED,
            f"connection to {where} refused: nothing listens on port {evidence.port}{running}",
            "point MQTTHUB_BROKER_URL at the port the broker listens on (1883 plain, 8883 "
            "TLS), or start the broker",
        )
    return Check(
        "tcp",
        Outcome.FAIL,
        Cause.CONNECTION_REFUSED,
        f"cannot connect to {where}: {evidence.tcp_error}",
        "check MQTTHUB_BROKER_URL and the network path to the broker",
    )


# ---------------------------------------------------------------- tls


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What the broker's certificate says."""

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_after: str
    days_left: float


@dataclass(frozen=True, slots=True)
class TlsEvidence:
    """Whether the port speaks TLS, and how verification against the settings went."""

    configured: bool
    offered: bool
    cert: CertInfo | None = None
    verify_error: str | None = None
    verify_code: int | None = None
    host: str = ""
    ca_file: str | None = None


# OpenSSL X509_V_ERR codes.
_EXPIRED = frozenset({10})
_NOT_YET_VALID = frozenset({9})
_HOSTNAME = frozenset({62, 64})
_UNKNOWN_CA = frozenset({2, 18, 19, 20, 21})
EXPIRY_WARNING_DAYS = 30


def check_tls(evidence: TlsEvidence) -> Check:
    """The client's TLS setting must match the port, and the certificate must verify."""
    cert = _describe_cert(evidence.cert)
    if evidence.offered and not evidence.configured:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_EXPECTED,
            f"the port speaks TLS but the client is configured for plain MQTT; {cert}",
            "use mqtts:// in MQTTHUB_BROKER_URL and set MQTTHUB_CA_FILE to the CA that signed "
            "the broker's certificate",
        )
    if evidence.configured and not evidence.offered:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_NOT_OFFERED,
            "the client is configured for TLS but the port speaks plain MQTT",
            "use mqtt:// in MQTTHUB_BROKER_URL for this port, or the broker's TLS port (8883)",
        )
    if not evidence.configured:
        return passed("tls", "plain MQTT on both sides (no TLS)")
    if evidence.verify_error is not None:
        return _tls_verify_failure(evidence, cert)
    if evidence.cert is not None and evidence.cert.days_left < EXPIRY_WARNING_DAYS:
        return Check(
            "tls",
            Outcome.WARN,
            None,
            f"certificate expires in {evidence.cert.days_left:.0f} days; {cert}",
            "renew the broker certificate",
        )
    return passed("tls", f"certificate verified; {cert}")


def _tls_verify_failure(evidence: TlsEvidence, cert: str) -> Check:
    code = evidence.verify_code
    if code in _EXPIRED:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_CERT_EXPIRED,
            f"the broker's certificate has expired; {cert}",
            "renew the broker's certificate (the client cannot work around an expired one)",
        )
    if code in _HOSTNAME:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_HOSTNAME_MISMATCH,
            f"the certificate does not name {evidence.host}; {cert}",
            "connect by a name the certificate lists (MQTTHUB_BROKER_URL), or set "
            "MQTTHUB_TLS_INSECURE=true to skip only the hostname check (the chain is still "
            "verified)",
        )
    if code is not None and code not in _UNKNOWN_CA:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.TLS_CERT_EXPIRED if code in _NOT_YET_VALID else None,
            f"the broker's certificate does not verify: {evidence.verify_error} "
            f"(OpenSSL code {code}); {cert}",
            "check this machine's clock against the certificate's validity period"
            if code in _NOT_YET_VALID
            else "see the OpenSSL message above; the broker's certificate must be fixed",
        )
    ca = evidence.ca_file or "the system CA store"
    return Check(
        "tls",
        Outcome.FAIL,
        Cause.TLS_UNKNOWN_CA,
        f"the certificate is not signed by a CA in {ca} ({evidence.verify_error}); {cert}",
        "set MQTTHUB_CA_FILE to the CA certificate that signed the broker's certificate "
        "(its issuer is shown above)",
    )


def _describe_cert(cert: CertInfo | None) -> str:
    if cert is None:
        return "no certificate seen"
    return (
        f"subject {cert.subject}, issuer {cert.issuer}, names {', '.join(cert.names) or '-'}, "
        f"valid until {cert.not_after}"
    )
