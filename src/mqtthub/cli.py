"""The ``mqtthub`` command group: parse flags, call the library, map errors to exit codes.

Exit status: 0 on a clean stop, 1 when the service fails at run time, 2 for a bad
configuration or usage (before any connection is tried).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click

from mqtthub import __version__
from mqtthub.config import Settings, load_settings
from mqtthub.errors import ConfigError, MqttHubError
from mqtthub.logutil import configure_logging

log = logging.getLogger("mqtthub")


def _settings(**flags: Any) -> Settings:
    try:
        return load_settings(**flags)
    except ConfigError as exc:
        click.echo(f"mqtthub: configuration error\n{exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(__version__, prog_name="mqtthub")
def main() -> None:
    """mqtthub: an MQTT device backend (ingest, store, serve).

    Every option can also be set with an environment variable (MQTTHUB_<NAME>) or in a
    .env file in the working directory; flags win.
    """


@main.command()
@click.option(
    "--broker-url", help="MQTT broker, e.g. mqtts://user:pass@host:8883 [MQTTHUB_BROKER_URL]"
)
@click.option(
    "--database-url", help="sqlite:///data/mqtthub.db or postgresql://... [MQTTHUB_DATABASE_URL]"
)
@click.option("--http-host", help="HTTP address to listen on [MQTTHUB_HTTP_HOST]")
@click.option("--http-port", type=int, help="HTTP port [MQTTHUB_HTTP_PORT]")
@click.option(
    "--client-id", help="MQTT client id; default mqtthub-<host>-<random> [MQTTHUB_CLIENT_ID]"
)
@click.option(
    "--ca-file", help="CA certificate that signs the broker's certificate [MQTTHUB_CA_FILE]"
)
@click.option("--topic-prefix", help="first topic level of device topics [MQTTHUB_TOPIC_PREFIX]")
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)
)
def serve(**flags: Any) -> None:
    """Ingest device messages from MQTT into SQL and serve the API.

    With no configuration: SQLite under ./data, HTTP on 127.0.0.1:8000, broker
    mqtt://127.0.0.1:1883 (an embedded broker is started there if none is listening).
    """
    settings = _settings(**flags)
    configure_logging(settings.log_level)
    from mqtthub.service import Service  # imported here so --help stays fast

    async def run() -> None:
        await Service(settings).run()

    try:
        asyncio.run(run())
    except MqttHubError as exc:
        log.error("%s", exc)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
