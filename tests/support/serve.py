"""Run ``mqtthub serve`` as a real child process and talk to its HTTP API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from .ports import free_port

__all__ = ["ServeProcess", "device", "serve_for", "wait_until"]


def wait_until(
    condition: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; return that value.

    Raises:
        TimeoutError: the condition stayed false for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what or condition}: {last!r}")


class ServeProcess:
    """``python -m mqtthub serve`` with its own environment, working directory and port."""

    def __init__(
        self, *, workdir: Path, env: Mapping[str, str], args: tuple[str, ...] = ()
    ) -> None:
        """Prepare the process; :meth:`start` runs it.

        Args:
            workdir: working directory (SQLite data and the log file go here).
            env: MQTTHUB_* variables for this run (others are removed).
            args: extra command-line flags for ``serve``.
        """
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = int(env.get("MQTTHUB_HTTP_PORT", free_port()))
        self.base_url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MQTTHUB_", "MQTT_"))}
        self.env = {**clean, "MQTTHUB_HTTP_PORT": str(self.port), **env}
        self.args = args
        self.log_path = workdir / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.base_url, timeout=5.0)

    def start(self, *, wait_healthy: bool = True, timeout: float = 20.0) -> Self:
        """Start the process and wait until the HTTP API answers (and, by default, is healthy)."""
        if self.http.is_closed:
            self.http = httpx.Client(base_url=self.base_url, timeout=5.0)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mqtthub", "serve", *self.args],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wanted = (200,) if wait_healthy else (200, 503)
        wait_until(
            lambda: self.health_status() in wanted,
            timeout=timeout,
            what=f"mqtthub serve /healthz to answer {wanted}; log:\n{self.log_text()}",
        )
        return self

    def health_status(self) -> int | None:
        """The HTTP status of /healthz, or None while nothing answers."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.log_text()}")
        try:
            return self.http.get("/healthz").status_code
        except httpx.TransportError:
            return None

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET a path of the API."""
        return self.http.get(path, **kwargs)

    def log_text(self) -> str:
        """Everything the process logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait for the exit status."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)  # serve dumps its stacks into the log
            time.sleep(0.5)
            process.kill()
            process.wait()
            raise
        finally:
            self.process = None

    def __enter__(self) -> Self:
        return self if self.process is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.http.close()


def serve_for(broker_port: int, workdir: Path, **env: str) -> ServeProcess:
    """A serve process for the broker on 127.0.0.1:``broker_port``, SQLite in ``workdir``."""
    return ServeProcess(
        workdir=workdir, env={"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{broker_port}", **env}
    )


def device(serve: ServeProcess, device_id: str) -> dict[str, Any] | None:
    """``GET /api/devices/{id}``, or None while the device is unknown."""
    response = serve.get(f"/api/devices/{device_id}")
    return response.json() if response.status_code == 200 else None
