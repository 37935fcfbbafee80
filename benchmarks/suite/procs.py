"""Processes the suite starts: a private Mosquitto, ``mqtthub serve``, helpers to stop them.

Each process is started by this module and stopped by its pid (SIGTERM, then SIGKILL);
nothing is ever signalled by name.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
TOPIC_PREFIX = "bench"
MOSQUITTO = "/usr/sbin/mosquitto"
SUITE = Path(__file__).resolve().parent
BENCHMARKS = SUITE.parent


def log(message: str) -> None:
    """Progress for the person watching: stderr, so stdout stays one JSON object."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """True when 127.0.0.1:``port`` accepts a TCP connection."""
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``condition()`` every ``interval`` s until true; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def raise_nofile() -> None:
    """``preexec_fn``: lift the child's soft open-files limit to the hard limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def nofile_limit() -> int:
    """The hard open-files limit children get through :func:`raise_nofile`."""
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 15.0) -> None:
    """SIGTERM ``proc`` (SIGCONT first, in case it was stopped), SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of ``pid`` in KiB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            fields[name] = int(value.split()[0])
    return fields


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    result = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may end while we read
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            result[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return result


class CpuMeter:
    """CPU use of serve (event loop thread vs the others) and of the broker over a window."""

    def __init__(self, serve_pid: int, broker_pid: int) -> None:
        self.pids = {"serve": serve_pid, "broker": broker_pid}
        self._start: dict[str, dict[int, float]] = {}
        self._started_at = 0.0

    def start(self) -> None:
        """Open the window."""
        self._started_at = time.monotonic()
        self._start = {name: thread_cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        """Cores used on average since :meth:`start` (1.0 = one core all the time)."""
        seconds = max(time.monotonic() - self._started_at, 1e-9)
        end = {name: thread_cpu_seconds(pid) for name, pid in self.pids.items()}
        used = {
            name: {tid: cpu - self._start[name].get(tid, 0.0) for tid, cpu in end[name].items()}
            for name in end
        }
        main = used["serve"].get(self.pids["serve"], 0.0)
        return {
            "serve_event_loop": main / seconds,
            "serve_other_threads": (sum(used["serve"].values()) - main) / seconds,
            "serve_busiest_other_thread": max(
                [cpu for tid, cpu in used["serve"].items() if tid != self.pids["serve"]] + [0.0]
            )
            / seconds,
            "serve_total": sum(used["serve"].values()) / seconds,
            "broker": sum(used["broker"].values()) / seconds,
        }


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without MQTTHUB_*/MQTT_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTTHUB_", "MQTT_"))}
    return {**env, **extra}


class Broker:
    """A private Mosquitto on a free port: no connection limit, unlimited queues.

    ``max_inflight_messages 0`` and ``max_queued_messages 0`` (no limits) as in
    ``benchmarks/mqtt_clients.py``, so neither the baseline nor mqtthub is capped by the
    broker's window or loses messages. The open-files limit is raised to the hard limit so
    that 10,000 simulated devices fit. ``max_queued`` sets another per-client queue limit
    (Mosquitto's own default is 1000), for the experiments that measure what it drops;
    ``max_inflight`` another in-flight window (Mosquitto's own default is 20). With
    ``websockets`` a second listener, ``ws_port``, speaks MQTT over WebSockets.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        max_queued: int = 0,
        max_inflight: int = 0,
        websockets: bool = False,
    ) -> None:
        self.port = free_port()
        self.ws_port = free_port() if websockets else None
        self._conf = workdir / "mosquitto.conf"
        self._conf.write_text(
            f"listener {self.port} {HOST}\n"
            "allow_anonymous true\npersistence false\n"
            f"max_connections -1\nmax_queued_messages {max_queued}\n"
            f"max_inflight_messages {max_inflight}\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type subscribe\n"
            + (
                ""
                if self.ws_port is None
                else f"listener {self.ws_port} {HOST}\nprotocol websockets\n"
            )
        )
        self._lines: collections.deque[str] = collections.deque(maxlen=2000)
        self._changed = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start Mosquitto and return once its port accepts connections."""
        self.proc = proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self._conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=raise_nofile,
        )
        assert proc.stderr is not None
        threading.Thread(target=self._read_log, args=(proc.stderr,), daemon=True).start()
        ports = [self.port] if self.ws_port is None else [self.port, self.ws_port]
        wait_until(lambda: all(map(port_open, ports)) or proc.poll() is not None, 10, "mosquitto")
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {self.log_tail()}")

    def _read_log(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self._lines.append(line.rstrip())
                self._changed.notify_all()

    def wait_for_subscription(self, client_id: str, topic: str, timeout: float = 10.0) -> None:
        """Block until the broker logged ``client_id`` subscribing to ``topic``."""
        needle = f" {client_id} "

        def subscribed() -> bool:
            return any(needle in line and line.endswith(f" {topic}") for line in self._lines)

        with self._changed:
            if not self._changed.wait_for(subscribed, timeout):
                raise TimeoutError(f"{client_id} did not subscribe: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        """The last few broker log lines, for error messages."""
        with self._changed:
            return " | ".join(list(self._lines)[-lines:])

    @property
    def pid(self) -> int:
        """The broker's process id."""
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """Terminate Mosquitto."""
        stop_process(self.proc, 10)


@contextlib.contextmanager
def running_broker(**options: Any) -> Iterator[Broker]:
    """A started :class:`Broker` (``options`` as its own) in a temporary folder, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="mqtt-bench-") as workdir:
        broker = Broker(Path(workdir), **options)
        try:
            broker.start()
            yield broker
        finally:
            broker.stop()


def mosquitto_version() -> str:
    """The first line of ``mosquitto -h``, e.g. ``mosquitto version 2.0.11``."""
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip()


class Serve:
    """``python -m mqtthub serve`` on ``database_url`` against ``broker``, topics bench/+/+.

    Clean sessions (``MQTTHUB_SESSION_EXPIRY=0``) so a stopped instance leaves no session
    behind at the broker that would queue the next bursts.
    """

    def __init__(
        self,
        broker: Broker,
        workdir: Path,
        database_url: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.broker, self.workdir, self.database_url = broker, workdir, database_url
        self.http_port = free_port()
        self.extra_env = extra_env or {}
        self.command = [sys.executable, "-m", "mqtthub", "serve"]  # experiments may wrap it
        self.proc: subprocess.Popen[bytes] | None = None
        self._http: http.client.HTTPConnection | None = None

    @property
    def pid(self) -> int:
        """The serve process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        """Start serve; return once /healthz says it is subscribed and the database is up."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        defaults = dict(
            MQTTHUB_BROKER_URL=f"mqtt://{HOST}:{self.broker.port}",
            MQTTHUB_EMBEDDED_BROKER="never",
            MQTTHUB_HTTP_HOST=HOST,
            MQTTHUB_HTTP_PORT=str(self.http_port),
            MQTTHUB_DATABASE_URL=self.database_url,
            MQTTHUB_TOPIC_PREFIX=TOPIC_PREFIX,
            MQTTHUB_SESSION_EXPIRY="0",
            MQTTHUB_CLIENT_ID=f"bench-serve-{self.http_port}",
            MQTTHUB_LOG_LEVEL="WARNING",
        )
        env = clean_env(**{**defaults, **self.extra_env})  # extra_env may override a default
        with (self.workdir / "serve.log").open("ab") as log_file:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        wait_until(self._healthy, timeout, "serve to connect and subscribe", 0.05)

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"serve exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            health = self.get("/healthz")
        except (OSError, http.client.HTTPException, ValueError):
            return False
        # Another process could hold the port we picked: only our broker URL proves it is ours.
        return bool(
            health.get("mqtt") == "connected"
            and health.get("broker") == f"mqtt://{HOST}:{self.broker.port}"
        )

    def get(self, path: str, *, keep_alive: bool = False) -> Any:
        """GET ``path`` from serve's API and decode the JSON.

        A new connection per request by default, as the figures before the fix of the
        HTTP socket (Nagle held each kept-alive response ~40 ms; :func:`api_request_ms`
        measures both) were taken that way.
        """
        if not keep_alive or self._http is None:
            if self._http is not None:
                self._http.close()
            self._http = http.client.HTTPConnection(HOST, self.http_port, timeout=10)
        try:
            self._http.request("GET", path)
            response = self._http.getresponse()
            body = response.read()
        except BaseException:
            keep_alive = False  # a broken connection is never reused
            raise
        finally:
            if not keep_alive:
                self._http.close()
                self._http = None
        return json.loads(body)

    def stats(self) -> dict[str, Any]:
        """``/api/stats``."""
        stats: dict[str, Any] = self.get("/api/stats")
        return stats

    def log_tail(self, lines: int = 5) -> str:
        """The last lines serve logged (WARNING and above)."""
        path = self.workdir / "serve.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM serve (it flushes and exits within 10 s), SIGKILL after 15 s."""
        if self._http is not None:
            self._http.close()
        stop_process(self.proc)


def api_request_ms(serve: Serve, path: str = "/api/stats", count: int = 20) -> dict[str, float]:
    """Median ms of GET ``path``: on one kept-alive connection, and on a new one each time."""
    timings: dict[str, float] = {}
    for name, keep_alive in (("keep_alive", True), ("new_connection", False)):
        serve.get(path, keep_alive=keep_alive)  # connect outside the timing
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            serve.get(path, keep_alive=keep_alive)
            samples.append((time.perf_counter() - started) * 1000)
        timings[name] = sorted(samples)[count // 2]
    return timings
