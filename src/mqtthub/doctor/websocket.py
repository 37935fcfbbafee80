"""The doctor's WebSocket probe (I/O): how the broker answers the HTTP upgrade.

For ``ws://`` and ``wss://`` URLs only. It upgrades the URL's path exactly as the MQTT
connection would (:func:`mqtthub.transport.websocket.open_websocket`), closes at once,
and when that path does not upgrade, tries the paths brokers usually serve, so that the
rules in :mod:`mqtthub.doctor.websocket_rules` can name the right one.
"""

from __future__ import annotations

import asyncio
import ssl

from mqtthub.config import BrokerEndpoint, Settings, build_ssl_context
from mqtthub.doctor.checks import Check
from mqtthub.doctor.websocket_rules import (
    CANDIDATE_PATHS,
    CHECK_ID,
    UpgradeAnswer,
    WebSocketEvidence,
    check_websocket,
    websocket_tls,
)
from mqtthub.transport.websocket import WebSocketUpgradeError, open_websocket

UPGRADE_TIMEOUT_S = 3.0
__all__ = ["CHECK_ID", "probe_upgrade", "tls_check", "upgrade_check"]


def tls_check(settings: Settings, check: Check) -> Check:
    """The ``tls`` check, with the WebSocket causes for ``ws://``/``wss://`` URLs."""
    return check if settings.broker.websocket_path is None else websocket_tls(check)


async def upgrade_check(settings: Settings) -> Check | None:
    """The ``websocket`` check for ``ws://``/``wss://`` URLs (None for MQTT over TCP)."""
    endpoint = settings.broker
    if endpoint.websocket_path is None:
        return None
    context = build_ssl_context(settings) if endpoint.tls else None
    return check_websocket(await probe_upgrade(endpoint, context))


async def probe_upgrade(
    endpoint: BrokerEndpoint, ssl_context: ssl.SSLContext | None
) -> WebSocketEvidence:
    """Upgrade the endpoint's path; if the server answers with HTTP but no upgrade, also
    try :data:`CANDIDATE_PATHS`."""
    path = endpoint.websocket_path or "/mqtt"
    answer = await _upgrade(endpoint, path, ssl_context)
    others: list[UpgradeAnswer] = []
    if answer.outcome in {"status", "not_websocket", "no_subprotocol"}:
        for candidate in CANDIDATE_PATHS:
            if candidate != path:
                others.append(await _upgrade(endpoint, candidate, ssl_context))
    return WebSocketEvidence(endpoint.display(), answer, tuple(others))


async def _upgrade(
    endpoint: BrokerEndpoint, path: str, ssl_context: ssl.SSLContext | None
) -> UpgradeAnswer:
    try:
        async with asyncio.timeout(UPGRADE_TIMEOUT_S):
            transport, _protocol = await open_websocket(
                asyncio.Protocol, endpoint.host, endpoint.port, path=path, ssl_context=ssl_context
            )
    except WebSocketUpgradeError as exc:
        return UpgradeAnswer(path, exc.kind, exc.status, exc.server, exc.subprotocol, str(exc))
    except TimeoutError:
        return UpgradeAnswer(path, "timeout", detail=f"no answer within {UPGRADE_TIMEOUT_S:.0f} s")
    except (OSError, ssl.SSLError) as exc:
        return UpgradeAnswer(path, "error", detail=str(exc) or type(exc).__name__)
    transport.abort()  # only the upgrade was asked for; no MQTT on this connection
    return UpgradeAnswer(path, "upgraded", 101, subprotocol="mqtt")
