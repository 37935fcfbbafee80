"""Real Mosquitto brokers with a WebSockets listener, for MQTT over ws:// and wss://.

Debian's Mosquitto 2.0.11 is built with libwebsockets: a ``listener PORT`` with
``protocol websockets`` serves MQTT over WebSockets. It refuses to start with *only*
WebSockets listeners ("Unable to start any listening sockets"), so these brokers keep the
usual MQTT listener of :class:`MosquittoBroker` (``port``) and add ``ws_port``. Mosquitto
upgrades any request path, and answers the ``mqtt`` subprotocol when asked for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .certs import TlsFiles
from .mosquitto import MosquittoBroker
from .ports import free_port, wait_for_port

__all__ = ["MosquittoWsBroker"]


class MosquittoWsBroker(MosquittoBroker):
    """A :class:`MosquittoBroker` that also serves MQTT over WebSockets on ``ws_port``.

    Attributes:
        ws_port: Port of the WebSockets listener.
        ws_tls: TLS material of the WebSockets listener (``wss://``), or None (``ws://``).
    """

    def __init__(
        self,
        *,
        workdir: Path,
        ws_port: int | None = None,
        ws_tls: TlsFiles | None = None,
        **options: Any,
    ) -> None:
        """Write the configuration: the options of :class:`MosquittoBroker`, plus

        Args:
            workdir: Directory for the broker's files.
            ws_port: WebSockets listener port; a free port when None.
            ws_tls: Serve WebSockets over TLS (wss://) with these files.
            **options: Everything :class:`MosquittoBroker` takes.
        """
        self.ws_port = ws_port if ws_port is not None else free_port()
        self.ws_tls = ws_tls
        super().__init__(workdir=workdir, **options)

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/mqtt`` or ``wss://localhost:PORT/mqtt`` (the name the test
        certificates carry)."""
        if self.ws_tls is not None:
            return f"wss://localhost:{self.ws_port}/mqtt"
        return f"ws://{self.host}:{self.ws_port}/mqtt"

    def _write_config(self) -> None:
        super()._write_config()
        listener = [
            f"listener {self.ws_port} {self.host}",
            "protocol websockets",
        ]
        if self.ws_tls is not None:
            listener += [
                f"cafile {self.ws_tls.ca_file}",
                f"certfile {self.ws_tls.server_cert}",
                f"keyfile {self.ws_tls.server_key}",
            ]
        with self.config_path.open("a") as config:
            config.write("\n".join(listener) + "\n")

    def _ready(self, log_offset: int) -> bool:
        if not super()._ready(log_offset):
            return False
        try:
            wait_for_port(self.host, self.ws_port, timeout=0.2)
        except TimeoutError:
            return False
        return True
