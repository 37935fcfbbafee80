"""The FastAPI application: ``create_app`` wires routes to a store and a runtime, no globals."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from mqtthub import __version__
from mqtthub.config import DEFAULT_MAX_REQUEST_BODY, LOOPBACK_NAMES
from mqtthub.errors import StoreError, StoreUnavailableError
from mqtthub.store.database import Store
from mqtthub.transport.base import LinkPhase
from mqtthub.web import alerts, api, downlink, export, stream
from mqtthub.web.guards import BodyLimit, HostCheck, SecurityHeaders, TokenGate
from mqtthub.web.runtime import Runtime

STATIC = Path(__file__).with_name("static")
PLOTLY_JS = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
# Swagger UI's files as the fastapi-offline package ships them (no CDN).
SWAGGER_UI = Path(str(resources.files("fastapi_offline") / "static"))


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    """A read that fails because the database is down is a 503 that says so, not a 500."""
    unavailable = isinstance(exc, StoreUnavailableError)
    return JSONResponse(
        {"detail": f"database {'unavailable' if unavailable else 'error'}: {exc}"},
        status_code=503 if unavailable else 500,
    )


def _error_entry(error: Any) -> dict[str, Any]:
    entry = {"type": error["type"], "loc": list(error["loc"]), "msg": error["msg"]}
    value = error.get("input")
    if isinstance(value, str):
        entry["input"] = value[:200]
    elif isinstance(value, int | float) and math.isfinite(value) and abs(value) < 2**63:
        entry["input"] = value
    return entry


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """422 with what is wrong; the input is echoed only when it is a short scalar (an
    infinity, a NaN or a deeply nested object cannot go back as JSON)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": [_error_entry(e) for e in errors]}, status_code=422)


def create_app(
    *,
    store: Store,
    runtime: Runtime,
    api_token: SecretStr | None,
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES,
    max_request_body: int = DEFAULT_MAX_REQUEST_BODY,
) -> FastAPI:
    """Build the HTTP application.

    Args:
        store: the database to read from.
        runtime: the live state for ``/healthz`` and ``/api/stats``.
        api_token: when set, every ``/api`` route requires ``Authorization: Bearer <token>``.
        allowed_hosts: the names the ``Host`` header may carry (any port); ``*`` allows any.
        max_request_body: larger request bodies are refused with 413.
    """
    app = FastAPI(
        title="mqtthub",
        version=__version__,
        description="MQTT device backend: devices, readings, dead letters and health.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.state.runtime = runtime
    # The token is checked by TokenGate before routing; the bearer scheme here only puts
    # the "Authorize" button into the API docs.
    documented = [Depends(HTTPBearer(auto_error=False))] if api_token else []
    for router in (api.router, stream.router, downlink.router, export.router, alerts.router):
        app.include_router(router, prefix="/api", dependencies=documented)
    app.add_exception_handler(StoreError, _database_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    # Outermost last: headers on every answer, then Host, body size and token checks.
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    if api_token:
        app.add_middleware(TokenGate, token=api_token.get_secret_value())
    app.add_middleware(BodyLimit, limit=max_request_body)
    app.add_middleware(HostCheck, allowed=allowed_hosts)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        """The dashboard (a static page that uses only the public API)."""
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        """Swagger UI for the OpenAPI document (no inline script: see static/docs.js)."""
        return FileResponse(STATIC / "docs.html")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        """The charting library, from the installed plotly package (no CDN)."""
        return FileResponse(PLOTLY_JS, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/vendor/swagger-ui/{name}", include_in_schema=False)
    def swagger_ui(name: str) -> FileResponse:
        """Swagger UI's script and style sheet, from an installed package (no CDN)."""
        if name not in {"swagger-ui-bundle.js", "swagger-ui.css"}:
            raise HTTPException(404, "no such file")
        return FileResponse(SWAGGER_UI / name, headers={"Cache-Control": "public, max-age=86400"})

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
            except StoreError as exc:
                db_error = str(exc)
        body: dict[str, object] = {
            "mqtt": LinkPhase.CONNECTING if link.phase is LinkPhase.STARTING else link.phase,
            "db": "ok" if db_error is None else "unavailable",
            "broker": link.broker,
            "protocol": link.protocol,
            "queue_depth": runtime.queue_depth(),
        }
        if link.reason and not link.connected:
            body["reason"] = link.reason
        session_lost = runtime.connection().get("session_lost")
        if session_lost:  # the broker forgot our session: messages may have been lost
            body["session_lost"] = {"at": session_lost["at"], "detail": session_lost["detail"]}
        if db_error is not None:
            body["db_error"] = db_error
        healthy = link.connected and db_error is None
        return JSONResponse(body, status_code=200 if healthy else 503)

    return app
