"""ASGI middleware that turns hostile or unauthorised requests away before routing.

Each guard answers on its own, before any route runs and before the request body is read:

- :class:`HostCheck`: 400 for a ``Host`` header outside the allow-list (DNS rebinding).
- :class:`BodyLimit`: 413 for a body larger than the cap, declared or streamed.
- :class:`TokenGate`: 401 for an ``/api`` request without the bearer token.
- :class:`SecurityHeaders`: the Content-Security-Policy and friends on every response.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# A message, not a password:
TOKEN_REQUIRED = "missing or wrong API token: send Authorization: Bearer <MQTTHUB_API_TOKEN>"  # noqa: S105


async def _send_json(
    send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def host_name(header: str) -> str:
    """The name in a ``Host`` header, lower-case, without port or IPv6 brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.removesuffix(".")


class HostCheck:
    """Answer 400 unless the ``Host`` header names this service (any port)."""

    def __init__(self, app: ASGIApp, *, allowed: Iterable[str]) -> None:
        """Allow the names in ``allowed`` (lower-case, no port); ``*`` allows any."""
        self.app = app
        self._allowed = frozenset(name.lower() for name in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the header, then pass the request on."""
        if scope["type"] not in ("http", "websocket") or "*" in self._allowed:
            return await self.app(scope, receive, send)
        header = Headers(scope=scope).get("host", "")
        if host_name(header) in self._allowed:
            return await self.app(scope, receive, send)
        shown = header[:100] or "(none)"
        await _send_json(
            send,
            400,
            f"Host header {shown!r} is not one of this service's names: if clients reach "
            "it under that name, add it to MQTTHUB_ALLOWED_HOSTS (comma-separated)",
        )


class RequestTooLarge(HTTPException):
    """The request body is over the cap (413)."""

    def __init__(self, limit: int) -> None:
        """Name the cap and the setting that changes it."""
        super().__init__(413, f"request body larger than {limit} bytes (MQTTHUB_MAX_REQUEST_BODY)")


class BodyLimit:
    """Answer 413 when a request body is over ``limit`` bytes.

    A ``Content-Length`` over the cap is refused before anything is read; a streamed
    (chunked) body is counted as it arrives and refused once it goes over.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        """Cap request bodies at ``limit`` bytes."""
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or pass on the request, counting its body bytes."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            too_large = RequestTooLarge(self.limit)
            return await _send_json(send, too_large.status_code, too_large.detail)
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise RequestTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except RequestTooLarge as exc:  # read outside a route (routes answer 413 themselves)
            if started:
                raise
            await _send_json(send, exc.status_code, exc.detail)


class TokenGate:
    """Answer 401 to ``/api`` requests without ``Authorization: Bearer <token>``.

    The check runs before routing, so the body of a refused request is never read.
    """

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        """Require ``token`` on every path under ``/api``."""
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the token of ``/api`` requests; pass everything else on."""
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/api" or path.startswith("/api/")):
            return await self.app(scope, receive, send)
        scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(
            given.strip().encode("latin-1"), self._expected
        ):
            return await self.app(scope, receive, send)
        await _send_json(send, 401, TOKEN_REQUIRED, [(b"www-authenticate", b"Bearer")])


class SecurityHeaders:
    """CSP without inline script, plus no sniffing and no referrer, on every response."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response start."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, send_with_headers)
