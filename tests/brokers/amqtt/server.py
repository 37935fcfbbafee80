"""amqtt for mqtthub's broker matrix: ``python server.py PORT [USER PASSWORD]`` (127.0.0.1 only).

Runs in its own venv (``make test-brokers`` makes ``.venv-amqtt`` with the version pinned in
``requirements.txt`` beside this file): amqtt pins libraries mqtthub's venv must not get.
Anonymous clients may connect unless a user is given; then only that user/password may.
Prints ``listening`` once the listener accepts connections; SIGTERM shuts the broker down.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin


class OneUserAuth(BaseAuthPlugin):
    """Only the configured user with its password may connect (CONNACK 5 otherwise)."""

    @dataclass
    class Config:
        user: str = ""
        password: str = ""

    async def authenticate(self, *, session: Any) -> bool:
        config = self.context.config
        password = session.password
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        return bool(session.username == config.user and password == config.password)


async def main(port: int, credentials: list[str]) -> None:
    if credentials:
        user, password = credentials
        auth = {f"{__name__}.OneUserAuth": {"user": user, "password": password}}
    else:
        auth = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": auth,
    }
    broker = Broker(config)
    await broker.start()
    print("listening", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
