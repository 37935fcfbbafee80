"""Start the embedded broker (rumqttd, via the iotcore wheel) when none is listening."""

from __future__ import annotations

import logging
import socket
from typing import Any

from mqtthub.config import BrokerEndpoint, EmbeddedBroker

log = logging.getLogger("mqtthub.broker")


def is_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_if_needed(endpoint: BrokerEndpoint, mode: EmbeddedBroker) -> Any | None:
    """Start an embedded MQTT 3.1.1 broker at a local, plain endpoint nobody serves.

    Returns:
        The running ``iotcore.Broker`` (stop it on shutdown), or None when an existing
        broker is used.
    """
    if mode is EmbeddedBroker.NEVER or not endpoint.is_local or endpoint.tls:
        return None
    if is_listening(endpoint.host, endpoint.port):
        return None
    from iotcore import Broker  # imported lazily: it loads a native library

    listen = "127.0.0.1" if endpoint.host == "localhost" else endpoint.host
    broker = Broker(port=endpoint.port, listen=listen)
    broker.start()
    log.info(
        "no broker at %s:%d, started the embedded broker (rumqttd, MQTT 3.1.1) there; "
        "set MQTTHUB_EMBEDDED_BROKER=never to use only an external broker",
        endpoint.host,
        endpoint.port,
    )
    return broker
