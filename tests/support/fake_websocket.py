"""FAKE HTTP servers for the doctor's WebSocket causes no Mosquitto produces.

Mosquitto 2.0.11 upgrades every request path and always answers the ``mqtt``
subprotocol when asked, so a wrong path (EMQX answers 404) and a WebSocket server that
is not an MQTT one need a fake: :class:`FakeWebSocketServer` (the ``websockets``
library's server, upgrading one path only, with or without ``mqtt``) speaks no MQTT at
all. :class:`PlainHttpServer` is Python's own ``http.server``: a web server that ignores
WebSocket upgrades.
"""

from __future__ import annotations

import functools
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

__all__ = ["FakeWebSocketServer", "PlainHttpServer"]


class FakeWebSocketServer:
    """A FAKE WebSocket server on 127.0.0.1: ``path`` upgrades, every other path is 404.

    With ``mqtt=False`` it upgrades without choosing a subprotocol (a generic WebSocket
    service). Connections are closed right after the upgrade.
    """

    host = "127.0.0.1"

    def __init__(self, *, path: str = "/mqtt", mqtt: bool = True) -> None:
        self.path = path
        subprotocols = [Subprotocol("mqtt")] if mqtt else None
        self._server: Server = serve(
            self._handle,
            self.host,
            0,
            subprotocols=subprotocols,
            process_request=self._route,
            server_header="FakeWebSocketServer",
        )
        self.port: int = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == self.path:
            return None
        headers = Headers({"Content-Length": "10"})
        return Response(HTTPStatus.NOT_FOUND, "Not Found", headers, b"not found\n")

    @staticmethod
    def _handle(connection: ServerConnection) -> None:
        connection.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._thread.join(5)


class PlainHttpServer:
    """Python's ``http.server`` serving ``directory`` on 127.0.0.1: no WebSockets."""

    host = "127.0.0.1"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "index.html").write_text("<h1>a web site</h1>\n")
        handler: Any = functools.partial(_QuietHandler, directory=str(directory))
        self._server = ThreadingHTTPServer((self.host, 0), handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return
