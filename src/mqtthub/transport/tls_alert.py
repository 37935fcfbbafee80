"""Hear what a broker says about our client certificate (blocking; run it in a thread).

On TLS 1.3 a broker that refuses a client certificate sends its alert right after the
handshake, and an MQTT client that writes CONNECT at once sees only a reset. Opening one
more TLS connection and reading without sending anything lets the alert arrive: the
doctor does it to name the cause, and ``serve`` does it after a TLS connection ended
before CONNACK, so its log and ``/healthz`` say why.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

from mqtthub.config import BrokerEndpoint

CONNECT_TIMEOUT_S = 3.0
VERDICT_WAIT_S = 1.0


def broker_tls_alert(endpoint: BrokerEndpoint, context: ssl.SSLContext) -> str | None:
    """The TLS alert the broker sends (OpenSSL's reason, e.g. ``TLSV13_ALERT_CERTIFICATE_
    REQUIRED``) within ``VERDICT_WAIT_S`` of the handshake, or None."""
    try:
        with (
            socket.create_connection((endpoint.host, endpoint.port), CONNECT_TIMEOUT_S) as sock,
            context.wrap_socket(sock, server_hostname=endpoint.host) as tls,
        ):
            tls.settimeout(VERDICT_WAIT_S)
            with contextlib.suppress(TimeoutError):
                tls.recv(1)
    except ssl.SSLCertVerificationError:
        return None  # about the broker's own certificate, not ours
    except ssl.SSLError as exc:
        reason = str(exc.reason or "")
        return reason if "_ALERT_" in reason else None
    except OSError:
        return None
    return None
