"""Local TCP port helpers for tests that start real servers on 127.0.0.1."""

from __future__ import annotations

import socket
import time

__all__ = ["free_port", "wait_for_port"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The operating system picks the port; the probe socket is closed before returning, so a
    process started right after this call can bind it.

    Returns:
        The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Args:
        host: Address to connect to (tests only ever use ``127.0.0.1``).
        port: TCP port to connect to.
        timeout: Seconds to keep trying before giving up.

    Raises:
        TimeoutError: If nothing accepted a connection within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last_error = exc
            time.sleep(0.05)
    raise TimeoutError(
        f"nothing accepted TCP connections on {host}:{port} within {timeout:.1f}s "
        f"(last error: {last_error!r})"
    )
