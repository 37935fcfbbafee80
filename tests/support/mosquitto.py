"""Real Mosquitto brokers for integration tests, plus thin wrappers around its CLI clients.

Every broker listens on ``127.0.0.1`` only, on a free port, with a config written for the test.
The system Mosquitto on port 1883 is never used.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self, TypedDict, Unpack

from .certs import TlsFiles
from .ports import free_port, wait_for_port

__all__ = [
    "CLIENT_TOOLS",
    "MOSQUITTO_BINARY",
    "BrokerOptions",
    "MosquittoBroker",
    "MosquittoFactory",
    "MosquittoToolError",
    "mosquitto_pub",
    "mosquitto_sub_once",
    "mosquitto_subscribe_persistent",
    "unique_id",
]

MOSQUITTO_BINARY: str | None = shutil.which("mosquitto") or shutil.which(
    "mosquitto", path="/usr/sbin:/usr/local/sbin"
)
"""Path of the broker binary, or ``None`` if not installed (Debian puts it in /usr/sbin)."""

CLIENT_TOOLS = ("mosquitto_pub", "mosquitto_sub", "mosquitto_passwd")
"""Command-line tools (package ``mosquitto-clients``) the helpers in this module run."""

_TOOL_TIMEOUT = 30.0
"""Hard limit for one tool run, so a hung tool cannot hang the test suite."""

_START_ATTEMPTS = 3
"""Tries with a fresh port when another process grabbed the auto-picked one before Mosquitto."""


def unique_id(prefix: str = "test") -> str:
    """Return ``prefix`` plus a random suffix, for topics and client ids that must not collide.

    Args:
        prefix: Readable start of the id, e.g. ``"devices"`` or ``"backend"``.

    Returns:
        A string like ``"backend-3f9a1c0e"``.
    """
    return f"{prefix}-{secrets.token_hex(4)}"


class MosquittoToolError(RuntimeError):
    """A ``mosquitto_pub``/``mosquitto_sub``/``mosquitto_passwd`` run failed.

    Attributes:
        returncode: Exit status of the tool (``5``: refused as not authorised with MQTT 3.1.1,
            ``135``: the same with MQTT 5, ``27``: ``mosquitto_sub -W`` timed out, ``1``/``8``:
            TLS or network error).
        stdout: What the tool printed on stdout.
        stderr: What the tool printed on stderr, usually the reason.
    """

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        """Build the error from a finished tool run.

        Args:
            args: The command line that was run.
            returncode: Its exit status.
            stdout: Its standard output.
            stderr: Its standard error.
        """
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"{Path(args[0]).name} exited with status {returncode}: "
            f"{stderr.strip() or stdout.strip() or '(no output)'}\ncommand: {' '.join(args)}"
        )


class BrokerOptions(TypedDict, total=False):
    """Keyword options of :class:`MosquittoBroker` other than ``workdir``."""

    port: int | None
    tls: TlsFiles | None
    require_certificate: bool
    users: Mapping[str, str] | None
    acl: str | None
    persistence: bool
    max_keepalive: int | None
    max_inflight_messages: int | None
    extra: str
    listener_extra: str
    start_timeout: float


class MosquittoFactory(Protocol):
    """Type of the ``mosquitto_factory`` fixture: creates and starts a broker."""

    def __call__(self, **options: Unpack[BrokerOptions]) -> MosquittoBroker:
        """Create a broker in a fresh directory, start it and return it."""
        ...


class MosquittoBroker:
    """A Mosquitto 2.x broker running as a child process on ``127.0.0.1``.

    The constructor only writes the configuration; call :meth:`start` (or use the broker as a
    context manager) to run it. Everything the broker writes (config, password file, ACL file,
    persistence database, log) lives in ``workdir``.

    Attributes:
        host: Address the broker listens on; always ``127.0.0.1``.
        port: TCP port of the single listener (plain MQTT, or MQTT over TLS when ``tls`` is set).
        workdir: Directory holding the broker's files.
        config_path: The generated ``mosquitto.conf``.
        log_path: File receiving the broker's output (``log_type all``), kept across restarts.
        tls: TLS material the listener uses, or ``None`` for plain TCP.
        users: Username to password map accepted by the broker, or ``None`` for anonymous access.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        workdir: Path,
        port: int | None = None,
        tls: TlsFiles | None = None,
        require_certificate: bool = False,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        persistence: bool = False,
        max_keepalive: int | None = None,
        max_inflight_messages: int | None = None,
        extra: str = "",
        listener_extra: str = "",
        start_timeout: float = 10.0,
    ) -> None:
        """Write the broker's configuration into ``workdir``.

        Args:
            workdir: Directory for config, password/ACL files, persistence and log (created).
            port: Listener port; a free port is picked when ``None``.
            tls: Serve MQTT over TLS with these files (clients need no certificate).
            require_certificate: With ``tls``, require a client certificate signed by
                ``tls.ca_file`` (mutual TLS; see :func:`support.certs.make_client_cert`).
            users: Only these username/password pairs may connect (``allow_anonymous false``).
                When ``None``, anyone may connect anonymously.
            acl: Raw text of a Mosquitto ACL file (``user``/``topic``/``pattern`` lines).
            persistence: Keep sessions and queued messages in ``workdir`` across a graceful
                :meth:`stop`/:meth:`restart`.
            max_keepalive: Server keepalive; in Mosquitto 2.0 this only affects MQTT 5 clients.
            max_inflight_messages: Per-client QoS 1/2 in-flight limit.
            extra: Raw configuration lines for the global section (before the listener).
            listener_extra: Raw configuration lines for the listener block (listener
                options such as ``max_connections`` or ``tls_version``; placed globally
                they would open a second, default listener on port 1883).
            start_timeout: Seconds :meth:`start` waits for the broker to accept connections.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.tls = tls
        self.listener_extra = listener_extra
        self.require_certificate = require_certificate
        self.users = dict(users) if users is not None else None
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self._auto_port = port is None
        self._has_started = False
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._settings = self._global_settings(
            acl=acl,
            persistence=persistence,
            max_keepalive=max_keepalive,
            max_inflight_messages=max_inflight_messages,
            extra=extra,
        )
        self._write_config()

    def _global_settings(
        self,
        *,
        acl: str | None,
        persistence: bool,
        max_keepalive: int | None,
        max_inflight_messages: int | None,
        extra: str,
    ) -> list[str]:
        """Return the config lines other than the listener block; write password/ACL files."""
        lines = [
            # Stay the current user even when tests run as root: otherwise Mosquitto switches
            # to the "mosquitto" user and cannot write into the test's private tmp directory.
            f"user {getpass.getuser()}",
            "per_listener_settings false",
            "log_dest stderr",
            "log_type all",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
        ]
        if self.users is not None:
            password_file = self.workdir / "passwords"
            _write_password_file(password_file, self.users)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_file = self.workdir / "acl"
            acl_file.write_text(acl)
            lines.append(f"acl_file {acl_file}")
        if persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}{os.sep}"]
        else:
            lines.append("persistence false")
        if max_keepalive is not None:
            lines.append(f"max_keepalive {max_keepalive}")
        if max_inflight_messages is not None:
            lines.append(f"max_inflight_messages {max_inflight_messages}")
        if extra:
            lines.append(extra)
        return lines

    def _write_config(self) -> None:
        listener = [f"listener {self.port} {self.host}"]
        if self.tls is not None:
            listener += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        if self.listener_extra:
            listener.append(self.listener_extra)
        header = ["# Written by tests/support/mosquitto.py for one test."]
        self.config_path.write_text("\n".join([*header, *self._settings, *listener]) + "\n")

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the running broker (e.g. to SIGSTOP it), or ``None`` if stopped."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def start(self) -> None:
        """Run the broker and wait until it accepts TCP connections on :attr:`port`.

        If the port was picked automatically and another process took it before the first
        start, a new port is picked (a restart always keeps the port).

        Raises:
            RuntimeError: If the broker is already running, or exits during start-up
                (bad config, port taken); the message includes the broker log.
            TimeoutError: If it does not accept connections within ``start_timeout``.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start_once()
            except _PortTakenError:
                if self._has_started or not self._auto_port or attempt == _START_ATTEMPTS:
                    raise
                self.port = free_port()
                self._write_config()
            else:
                self._has_started = True
                return

    def _start_once(self) -> None:
        if MOSQUITTO_BINARY is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log_file = self.log_path.open("ab")
        process = subprocess.Popen(
            [MOSQUITTO_BINARY, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self._process = process
        deadline = time.monotonic() + self._start_timeout
        while not self._ready(log_offset):
            if process.poll() is not None:
                self._close_log()
                log = self._log_since(log_offset)
                error = _PortTakenError if "Address already in use" in log else RuntimeError
                raise error(
                    f"mosquitto exited with status {process.returncode} during start-up on "
                    f"port {self.port}; log:\n{log}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"mosquitto on port {self.port} did not become ready within "
                    f"{self._start_timeout:.1f}s; log:\n{self._log_since(log_offset)}"
                )
            time.sleep(0.02)

    def _ready(self, log_offset: int) -> bool:
        """Whether this run logged that it is running and its port accepts connections."""
        # Mosquitto logs "running" once its listener is open; requiring it means a foreign
        # process that happens to hold the port cannot fool the check.
        if " running" not in self._log_since(log_offset):
            return False
        try:
            wait_for_port(self.host, self.port, timeout=0.2)
        except TimeoutError:
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker gracefully (SIGTERM), falling back to SIGKILL after ``timeout``.

        A graceful stop writes the persistence database when persistence is on. Calling it on a
        stopped broker does nothing.

        Args:
            timeout: Seconds to wait for a graceful exit before killing the process.
        """
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def kill(self) -> None:
        """Kill the broker with SIGKILL, like a crash.

        Nothing is saved: with persistence on, a later :meth:`start` loads the database written
        by the last graceful stop, so messages acknowledged since then may be delivered again.
        """
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self._close_log()

    def restart(self) -> None:
        """Stop the broker gracefully if it runs, then start it again on the same port."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        """Return everything the broker has logged so far (all runs of this broker)."""
        return self._log_since(0)

    def _log_since(self, offset: int) -> str:
        """Return the log written after byte ``offset``."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[offset:].decode(errors="replace")

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        """Start the broker (if not yet running) and return it."""
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()

    def __repr__(self) -> str:
        """Show where the broker listens and whether it runs."""
        state = "running" if self.running else "stopped"
        scheme = "mqtts" if self.tls is not None else "mqtt"
        return f"<MosquittoBroker {scheme}://{self.host}:{self.port} {state}>"


class _PortTakenError(RuntimeError):
    """Mosquitto could not bind its port because another process holds it."""


def _write_password_file(path: Path, users: Mapping[str, str]) -> None:
    """Create a Mosquitto password file with ``mosquitto_passwd -b``."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    for username, password in users.items():
        _run_tool(["mosquitto_passwd", "-b", str(path), username, password])


def _run_tool(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a Mosquitto CLI tool to completion.

    Raises:
        MosquittoToolError: If it exits with a non-zero status.
    """
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise MosquittoToolError(args, result.returncode, result.stdout, result.stderr)
    return result


def _client_args(
    broker: MosquittoBroker,
    *,
    username: str | None,
    password: str | None,
    cafile: Path | None,
    protocol: str,
    client_id: str | None,
) -> list[str]:
    """Connection arguments shared by mosquitto_pub and mosquitto_sub."""
    args = ["-h", broker.host, "-p", str(broker.port), "-V", protocol]
    if username is not None:
        args += ["-u", username]
    if password is not None:
        args += ["-P", password]
    if cafile is None and broker.tls is not None:
        cafile = broker.tls.ca_file
    if cafile is not None:
        args += ["--cafile", str(cafile)]
    if client_id is not None:
        args += ["-i", client_id]
    return args


def mosquitto_pub(
    broker: MosquittoBroker,
    topic: str,
    message: str,
    *,
    qos: int = 1,
    username: str | None = None,
    password: str | None = None,
    cafile: Path | None = None,
    protocol: str = "mqttv311",
    retain: bool = False,
    client_id: str | None = None,
) -> None:
    """Publish one message with the ``mosquitto_pub`` tool.

    For QoS 1/2 the tool exits only after the broker acknowledged the message, so the broker
    has processed it when this returns. Note that with MQTT 3.1.1 a publish denied by the ACL
    is acknowledged like any other (the broker just drops it); with ``protocol="mqttv5"`` the
    denial is reported and this function raises.

    Args:
        broker: Broker to publish to.
        topic: Topic to publish on.
        message: Payload text.
        qos: MQTT QoS level (0, 1 or 2).
        username: Username to connect with.
        password: Password to connect with.
        cafile: CA file for TLS; defaults to the broker's own CA when it serves TLS.
        protocol: ``mqttv311``, ``mqttv5`` or ``mqttv31``.
        retain: Ask the broker to retain the message.
        client_id: Client id to use; the tool picks one when ``None``.

    Raises:
        MosquittoToolError: If the connection is refused or fails (bad credentials, TLS error)
            or an MQTT 5 broker rejects the publish; the error carries the tool's stderr.
    """
    args = [
        "mosquitto_pub",
        *_client_args(
            broker,
            username=username,
            password=password,
            cafile=cafile,
            protocol=protocol,
            client_id=client_id,
        ),
        *("-t", topic, "-m", message, "-q", str(qos)),
    ]
    if retain:
        args.append("-r")
    result = _run_tool(args)
    # mosquitto_pub 2.0 exits 0 even when an MQTT 5 PUBACK carries a failure reason code; it
    # only prints "Warning: Publish 1 failed: Not authorized."
    if "Warning: Publish" in result.stderr:
        raise MosquittoToolError(args, result.returncode, result.stdout, result.stderr)


def mosquitto_sub_once(
    broker: MosquittoBroker,
    topic: str,
    *,
    count: int = 1,
    timeout: int = 5,
    qos: int = 1,
    username: str | None = None,
    password: str | None = None,
    cafile: Path | None = None,
    protocol: str = "mqttv311",
    client_id: str | None = None,
    clean_session: bool = True,
    verbose: bool = False,
) -> list[str]:
    """Subscribe with ``mosquitto_sub``, collect ``count`` messages and disconnect.

    The subscription only exists while this call runs, so use it for retained messages and for
    sessions prepared with :func:`mosquitto_subscribe_persistent`; a message published before
    the call (and not retained or queued) is not seen.

    Args:
        broker: Broker to subscribe to.
        topic: Topic filter.
        count: Number of messages to wait for.
        timeout: Seconds the tool waits for them.
        qos: Subscription QoS.
        username: Username to connect with.
        password: Password to connect with.
        cafile: CA file for TLS; defaults to the broker's own CA when it serves TLS.
        protocol: ``mqttv311``, ``mqttv5`` or ``mqttv31``.
        client_id: Client id; needed to resume a persistent session.
        clean_session: ``False`` resumes or keeps a persistent session (``-c``).
        verbose: Return ``"<topic> <payload>"`` lines instead of bare payloads.

    Returns:
        The received payloads (or topic + payload lines), in arrival order.

    Raises:
        MosquittoToolError: If the tool fails, including when fewer than ``count`` messages
            arrive within ``timeout`` (exit status 27, "Timed out").
    """
    args = [
        "mosquitto_sub",
        *_client_args(
            broker,
            username=username,
            password=password,
            cafile=cafile,
            protocol=protocol,
            client_id=client_id,
        ),
        *("-t", topic, "-q", str(qos), "-C", str(count), "-W", str(timeout)),
    ]
    if not clean_session:
        args.append("-c")
    if verbose:
        args.append("-v")
    return _run_tool(args).stdout.splitlines()


def mosquitto_subscribe_persistent(
    broker: MosquittoBroker,
    topic: str,
    *,
    client_id: str,
    qos: int = 1,
    username: str | None = None,
    password: str | None = None,
    cafile: Path | None = None,
    protocol: str = "mqttv311",
) -> None:
    """Create a persistent session subscribed to ``topic``, then disconnect.

    The broker queues QoS 1/2 messages for the session until a client with the same
    ``client_id`` reconnects with ``clean_session=False`` (see :func:`mosquitto_sub_once`).
    This makes "publish, then check what a subscriber got" tests race-free.

    Args:
        broker: Broker to subscribe on.
        topic: Topic filter.
        client_id: Session's client id.
        qos: Subscription QoS (use 1 or 2 for queueing).
        username: Username to connect with.
        password: Password to connect with.
        cafile: CA file for TLS; defaults to the broker's own CA when it serves TLS.
        protocol: ``mqttv311``, ``mqttv5`` or ``mqttv31``.

    Raises:
        MosquittoToolError: If the tool fails.
    """
    args = [
        "mosquitto_sub",
        *_client_args(
            broker,
            username=username,
            password=password,
            cafile=cafile,
            protocol=protocol,
            client_id=client_id,
        ),
        *("-t", topic, "-q", str(qos), "-c", "-E"),
    ]
    _run_tool(args)
