"""The doctor's rules for MQTT over WebSockets (pure, no I/O).

For ``ws://`` and ``wss://`` broker URLs the doctor checks the layers a WebSocket adds
between TCP and MQTT: TLS must match the scheme (:func:`websocket_tls`), and the
HTTP upgrade of the URL's path must answer ``101 Switching Protocols`` with the ``mqtt``
subprotocol (:func:`check_websocket`). The evidence comes from
:mod:`mqtthub.doctor.websocket`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqtthub.doctor.checks import Cause, Check, Outcome, passed

CHECK_ID = "websocket"
#: Paths tried when the URL's path does not upgrade: where brokers usually serve MQTT.
CANDIDATE_PATHS = ("/mqtt", "/ws", "/")
_LISTENERS = (
    "EMQX serves ws://host:8083/mqtt and wss://host:8084/mqtt; Mosquitto serves a "
    "`listener PORT` with `protocol websockets`"
)


@dataclass(frozen=True, slots=True)
class UpgradeAnswer:
    """How the server answered a WebSocket upgrade request for one path.

    Attributes:
        path: the request target.
        outcome: ``upgraded`` (101 with the ``mqtt`` subprotocol), ``status`` (another HTTP
            status), ``no_subprotocol`` (101 without ``mqtt``), ``not_websocket`` (an
            HTTP answer that is no valid upgrade), ``not_http`` (closed, or not HTTP),
            ``timeout``, or ``error`` (the connection failed).
        status: the HTTP status, when there was one.
        server: the ``Server`` header, when there was one.
        subprotocol: the subprotocol the server chose, if any.
        detail: what went wrong, in words.
    """

    path: str
    outcome: str
    status: int | None = None
    server: str | None = None
    subprotocol: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class WebSocketEvidence:
    """The upgrade of the URL's path, and of the usual paths when that one failed."""

    url: str
    answer: UpgradeAnswer
    others: tuple[UpgradeAnswer, ...] = ()

    @property
    def found_path(self) -> str | None:
        """Another path where the server upgrades to an MQTT WebSocket."""
        return next((a.path for a in self.others if a.outcome == "upgraded"), None)


def websocket_tls(check: Check) -> Check:
    """The ``tls`` check for ``ws://``/``wss://`` URLs: TLS must match the scheme (plain
    HTTP sent to a TLS port, or TLS to a plain one) with its own cause and fix; anything
    else stays as for ``mqtts://``."""
    seen = check.detail.partition("; ")[2]
    if check.cause is Cause.TLS_EXPECTED:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.WS_TLS_EXPECTED,
            "the port speaks TLS (HTTPS) but the URL says ws://, so plain HTTP went to a TLS "
            "port" + (f"; {seen}" if seen else ""),
            "use wss:// in MQTTHUB_BROKER_URL for this port and set MQTTHUB_CA_FILE to the CA "
            "that signed the broker's certificate (EMQX: wss on 8084, ws on 8083)",
        )
    if check.cause is Cause.TLS_NOT_OFFERED:
        return Check(
            "tls",
            Outcome.FAIL,
            Cause.WS_TLS_NOT_OFFERED,
            "the URL says wss:// (or a client certificate is set) but the port does not speak "
            "TLS: it answers plain HTTP or MQTT",
            "use ws:// in MQTTHUB_BROKER_URL for this port, or the broker's wss:// port "
            "(EMQX: 8084)",
        )
    return check


def check_websocket(evidence: WebSocketEvidence) -> Check:
    """The URL's path must upgrade to a WebSocket with the ``mqtt`` subprotocol."""
    answer = evidence.answer
    said = _said(answer)
    if answer.outcome == "upgraded":
        return passed(CHECK_ID, f"{answer.path} upgraded to a WebSocket, subprotocol mqtt")
    if answer.outcome == "no_subprotocol":
        return Check(
            CHECK_ID,
            Outcome.FAIL,
            Cause.WS_NO_MQTT_SUBPROTOCOL,
            f"{answer.path} upgraded to a WebSocket but without the subprotocol 'mqtt' "
            f"({said}): this WebSocket endpoint is not the broker's MQTT endpoint",
            _path_fix(evidence, "point MQTTHUB_BROKER_URL at the broker's MQTT WebSocket path")
            + "; a proxy in front of the broker must pass the Sec-WebSocket-Protocol header",
        )
    if answer.outcome in {"not_http", "timeout"}:
        return Check(
            CHECK_ID,
            Outcome.FAIL,
            Cause.WS_NOT_HTTP,
            f"the port did not answer the WebSocket upgrade with HTTP ({answer.detail}): it "
            "is probably a plain MQTT listener",
            "use mqtt:// (or mqtts://) for an MQTT port, or the broker's WebSocket port in "
            f"the ws:// URL ({_LISTENERS})",
        )
    if answer.outcome == "error":
        return Check(
            CHECK_ID,
            Outcome.FAIL,
            Cause.WS_NOT_HTTP,
            f"the WebSocket upgrade of {answer.path} failed: {answer.detail}",
            "check MQTTHUB_BROKER_URL and the network path to the broker",
        )
    return _refused(evidence, said)


def _refused(evidence: WebSocketEvidence, said: str) -> Check:
    """An HTTP answer other than an upgrade: wrong path, not a WebSocket server, refused."""
    answer = evidence.answer
    found = evidence.found_path
    if found is not None:
        return Check(
            CHECK_ID,
            Outcome.FAIL,
            Cause.WS_PATH_NOT_FOUND,
            f"{answer.path} does not upgrade to a WebSocket ({said}), but {found} does",
            f"set the path in MQTTHUB_BROKER_URL to {found}: {_with_path(evidence.url, found)}",
        )
    served = [a for a in (answer, *evidence.others) if a.status is not None and a.status < 300]
    if served or answer.outcome == "not_websocket":
        tried = ", ".join(a.path for a in (answer, *evidence.others))
        return Check(
            CHECK_ID,
            Outcome.FAIL,
            Cause.WS_NOT_WEBSOCKET_SERVER,
            f"an HTTP server answers but ignores WebSocket upgrades ({said}; tried {tried}): "
            "it is a web server, not an MQTT WebSocket listener",
            f"point MQTTHUB_BROKER_URL at the broker's WebSocket listener ({_LISTENERS})",
        )
    if answer.status == 404:
        tried = ", ".join(a.path for a in evidence.others)
        return Check(
            CHECK_ID,
            Outcome.FAIL,
            Cause.WS_PATH_NOT_FOUND,
            f"the server has no WebSocket at {answer.path} ({said}); {tried or 'no other path'} "
            "did not upgrade either",
            "set the path of the broker's MQTT WebSocket endpoint in MQTTHUB_BROKER_URL "
            f"(EMQX: /mqtt; see the broker's listener configuration; {_LISTENERS})",
        )
    return Check(
        CHECK_ID,
        Outcome.FAIL,
        Cause.WS_UPGRADE_REFUSED,
        f"the server refused the WebSocket upgrade of {answer.path} ({said})",
        "if a proxy or load balancer sits in front of the broker, let it pass WebSocket "
        "upgrades (the Upgrade and Connection headers) to the broker and check its access "
        "rules; otherwise see the broker's log",
    )


def _said(answer: UpgradeAnswer) -> str:
    parts = []
    if answer.status is not None:
        parts.append(f"HTTP {answer.status}")
    if answer.server:
        parts.append(f"Server: {answer.server}")
    if answer.subprotocol:
        parts.append(f"subprotocol {answer.subprotocol}")
    return ", ".join(parts) or answer.detail or answer.outcome


def _path_fix(evidence: WebSocketEvidence, otherwise: str) -> str:
    found = evidence.found_path
    if found is None:
        return otherwise
    return f"set the path in MQTTHUB_BROKER_URL to {found}: {_with_path(evidence.url, found)}"


def _with_path(url: str, path: str) -> str:
    """``url`` (``ws://host:port/old``, password masked) with its path replaced."""
    scheme, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    return f"{scheme}{sep}{authority}{path}"
