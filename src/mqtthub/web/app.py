"""The FastAPI application: ``create_app`` wires routes to a store and a runtime, no globals."""

from __future__ import annotations

import secrets
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from mqtthub import __version__
from mqtthub.store.database import Store
from mqtthub.web import api, downlink, stream
from mqtthub.web.runtime import Runtime

_bearer = HTTPBearer(auto_error=False)
STATIC = Path(__file__).with_name("static")
PLOTLY_JS = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


class SecurityHeaders(BaseHTTPMiddleware):
    """CSP without inline script, plus no sniffing and no referrer, on every response."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Add the headers."""
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


class TokenCheck:
    """Dependency that requires ``Authorization: Bearer <token>`` when a token is set."""

    def __init__(self, token: SecretStr | None) -> None:
        """Check against ``token``; None lets every request through."""
        self._expected = token.get_secret_value().encode() if token else None

    def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        """Raise 401 unless the request carries the expected token."""
        if self._expected is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        if not secrets.compare_digest(given, self._expected):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API token: send Authorization: Bearer <MQTTHUB_API_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    """A read that fails because the database is down is a 503 that says so, not a 500."""
    unavailable = isinstance(exc, OperationalError | InterfaceError)
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return JSONResponse(
        {"detail": f"database {'unavailable' if unavailable else 'error'}: {message}"},
        status_code=503 if unavailable else 500,
    )


def create_app(*, store: Store, runtime: Runtime, api_token: SecretStr | None) -> FastAPI:
    """Build the HTTP application.

    Args:
        store: the database to read from.
        runtime: the live state for ``/healthz`` and ``/api/stats``.
        api_token: when set, every ``/api`` route requires ``Authorization: Bearer <token>``.
    """
    app = FastAPI(
        title="mqtthub",
        version=__version__,
        description="MQTT device backend: devices, readings, dead letters and health.",
    )
    app.state.store = store
    app.state.runtime = runtime
    token_check = [Depends(TokenCheck(api_token))]
    app.include_router(api.router, prefix="/api", dependencies=token_check)
    app.include_router(stream.router, prefix="/api", dependencies=token_check)
    app.include_router(downlink.router, prefix="/api", dependencies=token_check)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        """The dashboard (a static page that uses only the public API)."""
        return FileResponse(STATIC / "index.html")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        """The charting library, from the installed plotly package (no CDN)."""
        return FileResponse(PLOTLY_JS, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    def metrics() -> Response:
        """Counters, gauges and histograms in the Prometheus text format."""
        registry = runtime.metrics_registry
        body = generate_latest(registry) if registry is not None else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"], summary="Is ingestion working?")
    def healthz(request: Request) -> JSONResponse:
        """200 when MQTT is connected, the database answers and every task runs; else 503
        with the reason (``failed_task`` names a task that died)."""
        failure = runtime.failure()
        if failure is not None:
            return JSONResponse({"status": "failed", "failed_task": failure}, status_code=503)
        link = runtime.link()
        db_error = runtime.db_error()
        if db_error is None:
            try:
                store.ping()
            except SQLAlchemyError as exc:
                db_error = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        body: dict[str, object] = {
            "mqtt": link.phase if link.phase != "starting" else "connecting",
            "db": "ok" if db_error is None else "unavailable",
            "broker": link.broker,
            "protocol": link.protocol,
            "queue_depth": runtime.queue_depth(),
        }
        if link.reason and not link.connected:
            body["reason"] = link.reason
        if db_error is not None:
            body["db_error"] = db_error
        healthy = link.connected and db_error is None
        return JSONResponse(body, status_code=200 if healthy else 503)

    return app
