"""The ``mqtthub`` command group: parse flags, call the library, map errors to exit codes.

Exit status: 0 on a clean stop, 1 when the service fails at run time, 2 for a bad
configuration or usage (before any connection is tried).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mqtthub import __version__
from mqtthub.config import Settings, load_settings
from mqtthub.errors import ConfigError, MqttHubError
from mqtthub.logutil import configure_logging
from mqtthub.simulate import simulate

log = logging.getLogger("mqtthub")


def _settings(**flags: Any) -> Settings:
    try:
        return load_settings(**flags)
    except ConfigError as exc:
        click.echo(f"mqtthub: configuration error\n{exc}", err=True)
        sys.exit(2)


def _recipient(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from mqtthub.client import check_recipient

    if value is not None:
        try:
            check_recipient(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def app_options(state_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--recipient`` and ``--state-dir``: the options of the task apps (listen, inbox)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        command = click.option(
            "--state-dir", type=click.Path(file_okay=False, path_type=Path), help=state_help
        )(command)
        return click.option(
            "--recipient",
            required=True,
            callback=_recipient,
            help="Whose tasks to receive, e.g. 61016968.",
        )(command)

    return decorate


@click.group()
@click.version_option(__version__, prog_name="mqtthub")
def main() -> None:
    """mqtthub: an MQTT device backend (ingest, store, serve).

    Every option can also be set with an environment variable (MQTTHUB_<NAME>) or in a
    .env file in the working directory; flags win.
    """


def settings_options(command: Callable[..., None]) -> Callable[..., None]:
    """The settings flags ``serve`` and ``doctor`` share (each also has a variable)."""
    options = [
        click.option(
            "--broker-url",
            help="MQTT broker, e.g. mqtts://user:pass@host:8883 [MQTTHUB_BROKER_URL]",
        ),
        click.option(
            "--database-url",
            help="sqlite:///data/mqtthub.db or postgresql://... [MQTTHUB_DATABASE_URL]",
        ),
        click.option(
            "--ca-file", help="CA certificate that signs the broker's certificate [MQTTHUB_CA_FILE]"
        ),
        click.option(
            "--topic-prefix", help="first topic level of device topics [MQTTHUB_TOPIC_PREFIX]"
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@settings_options
@click.option("--http-host", help="HTTP address to listen on [MQTTHUB_HTTP_HOST]")
@click.option("--http-port", type=int, help="HTTP port [MQTTHUB_HTTP_PORT]")
@click.option(
    "--client-id", help="MQTT client id; default mqtthub-<host>-<random> [MQTTHUB_CLIENT_ID]"
)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)
)
@click.option(
    "--share-group",
    help="split the device stream with other instances in this MQTT shared-subscription "
    "group [MQTTHUB_SHARE_GROUP]",
)
@click.option(
    "--workers",
    type=int,
    help="worker processes on this machine, in one share group (PostgreSQL only) [MQTTHUB_WORKERS]",
)
def serve(**flags: Any) -> None:
    """Ingest device messages from MQTT into SQL and serve the API.

    With no configuration: SQLite under ./data, HTTP on 127.0.0.1:8000, broker
    mqtt://127.0.0.1:1883 (an embedded broker is started there if none is listening).
    """
    settings = _settings(**flags)
    problem = settings.exposure_problem()
    if problem is not None:
        click.echo(f"mqtthub: configuration error\n{problem}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level)
    if settings.workers > 1 and settings.worker_index is None:
        from mqtthub.workers import WorkerPool

        sys.exit(WorkerPool(settings, flags).run())
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack
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


@main.command()
@settings_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object instead of a checklist."
)
@click.option(
    "--soak",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Also stay connected this long and explain every drop (client id conflicts, "
    "keepalive timeouts).",
)
@click.option(
    "--client-id",
    "soak_client_id",
    metavar="ID",
    help="Soak with this client id, e.g. that of a desktop app that keeps dropping. The "
    "probe then competes with the live client for the id (and may take over its session).",
)
@click.option(
    "--expect-traffic",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Also listen to every topic (#; the active profiles' topics where an ACL refuses #) "
    "for this long: per profile, how many messages on how many topics; topics no profile or "
    "mapping reads (profile_not_enabled, topic_prefix_mismatch, unmatched_topics); none "
    "while devices are registered is no_device_traffic, or endpoint_mismatch when they were "
    "provisioned elsewhere. At most 20,000 messages.",
)
@click.option(
    "--api",
    metavar="URL",
    help="Also publish a probe reading and check that the service at URL (e.g. "
    "http://127.0.0.1:8000) stored it; uses MQTTHUB_API_TOKEN when set.",
)
@click.option(
    "--payload-size",
    type=click.IntRange(min=1, max=268435455),
    metavar="BYTES",
    help="Publish a probe of this size (the largest payload devices send) and fail with "
    "packet_too_large if the broker refuses or drops it; default: MQTTHUB_MAX_PAYLOAD, "
    "as a warning. Not with --recipient.",
)
@click.option(
    "--recipient",
    metavar="RECIPIENT",
    callback=_recipient,
    help="Check as the task app of RECIPIENT (mqtthub inbox / listen) instead of as serve: "
    "subscribe to its tasks and receipts (<app prefix>/tasks/RECIPIENT/+ and .../+/ack) "
    "and publish a probe receipt (for a task that does not exist, which serve ignores); "
    "a refused receipt fails.",
)
@click.option(
    "--watch",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Repeat the checks (and the soak) every SECONDS: the whole checklist first, then "
    "only the checks whose status or cause changed; exit 1 at the first failure (for a "
    "cron job or a systemd timer).",
)
def doctor(
    as_json: bool,
    soak: float | None,
    soak_client_id: str | None,
    expect_traffic: float | None,
    api: str | None,
    payload_size: int | None,
    recipient: str | None,
    watch: float | None,
    **flags: Any,
) -> None:
    """Find the cause of an MQTT connection problem and say how to fix it.

    Checks, in layers (a hard failure skips the layers after it): config, dns, tcp, tls,
    mqtt_connect, subscribe, publish, and on request stability, traffic and pipeline.
    Subscribe and publish are checked as serve would (the device topics), or with
    --recipient as that recipient's task app would (its tasks and receipts).
    Reads the same settings as serve (environment, .env, flags). Each check reports a
    status (pass/warn/fail/skip), a cause code, the evidence and the fix.

    Exit status: 0 when nothing failed, 1 when a check failed, 2 for usage errors.
    """
    from mqtthub.doctor.report import as_json as render_json
    from mqtthub.doctor.report import as_text, failed
    from mqtthub.doctor.run import DoctorOptions, run_doctor

    if recipient is not None and payload_size is not None:
        raise click.UsageError("--payload-size checks device payloads: not with --recipient")
    logging.basicConfig(level=logging.CRITICAL)
    options = DoctorOptions(soak, soak_client_id, expect_traffic, api, payload_size, recipient)
    if watch is not None:
        from mqtthub.doctor.watch import watch as watch_doctor

        def emit(text: str) -> None:
            click.echo(text)
            sys.stdout.flush()

        rounds = watch_doctor(lambda: run_doctor(flags, options), watch, emit, as_json=as_json)
        try:
            sys.exit(asyncio.run(rounds))
        except KeyboardInterrupt:
            sys.exit(0)
    checks, target = asyncio.run(run_doctor(flags, options))
    click.echo(render_json(checks) if as_json else as_text(checks, target=target))
    sys.exit(1 if failed(checks) else 0)


@main.command()
@settings_options
@app_options("Where to remember the task ids already shown (default ~/.mqtthub).")
def listen(recipient: str, state_dir: Path | None, **flags: Any) -> None:
    """Receive tasks for RECIPIENT and acknowledge them: the reference desktop client.

    A unique client id per running instance, keepalive 60 s, jittered reconnects, a line
    for every connect and disconnect with its reason, each task shown once.
    """
    from mqtthub.client import TaskListener
    from mqtthub.transport.history import LinkEvent

    settings = _settings(**flags)
    configure_logging("WARNING")

    def show_task(task: dict[str, Any]) -> None:
        click.echo(f"task {task.get('task_id')}: {task.get('title')}")
        if task.get("body"):
            click.echo(f"  {task['body']}")

    def show_event(event: Any) -> None:
        if event.event == LinkEvent.CONNECTED:
            click.echo(f"connected to {settings.broker.display()} ({event.protocol})")
        else:
            click.echo(f"{event.event}: {event.reason} {event.detail}".rstrip())

    listener = TaskListener(
        settings=settings,
        recipient=recipient,
        on_task=show_task,
        on_event=show_event,
        state_dir=state_dir,
    )
    click.echo(f"listening for tasks of {recipient} as client id {listener.client_id}")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(listener.run())
        await stop.wait()
        await listener.close()
        await task

    asyncio.run(run())


@main.command()
@settings_options
@app_options("Where to keep this recipient's tasks and what was announced (default ~/.mqtthub).")
def inbox(recipient: str, state_dir: Path | None, **flags: Any) -> None:
    """Open the desktop inbox of RECIPIENT: tasks, Seen/Done, the link's status.

    The same settings as `listen`. Needs the desktop extra: pip install 'mqtthub[desktop]'.
    """
    settings = _settings(**flags)
    configure_logging("WARNING")
    try:
        from mqtthub.inbox.app import run_inbox
    except ImportError as exc:
        click.echo(f"mqtthub inbox needs Qt: pip install 'mqtthub[desktop]' ({exc})", err=True)
        sys.exit(2)
    state_dir = state_dir or Path.home() / ".mqtthub"
    sys.exit(run_inbox(settings=settings, flags=flags, recipient=recipient, state_dir=state_dir))


@main.command("broker-config")
@settings_options
@click.argument("broker", type=click.Choice(["mosquitto", "emqx"]))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the files into.",
)
def broker_config(broker: str, out: Path, **flags: Any) -> None:
    """Write broker access control from the device registry.

    mosquitto: `passwd` (password_file), `acl` (acl_file) and `mqtthub.conf` (the lines
    that load them and bind each device's client id to its username on the devices'
    listener). emqx: `acl.conf` and `emqx.conf` (the same binding). A device may publish
    only its own status, sensor, heartbeat and command replies, and read only its own
    command topic; the backend user (from MQTTHUB_BROKER_URL / MQTT_USERNAME, else
    "mqtthub") may read every device topic. passwd and the ACLs are created 0600.

    Exit status 1, with nothing written, when a device id is the backend's username or
    cannot be written safely to the broker's files.
    """
    from mqtthub import broker_config as generate
    from mqtthub.store import downlink as registry
    from mqtthub.store.database import Store

    settings = _settings(**flags)
    store = Store.open(settings.sqlalchemy_url)
    try:
        credentials = registry.credentials(store.engine)
    finally:
        store.close()
    backend = settings.broker.username or generate.DEFAULT_BACKEND_USER
    device_ids = [device_id for device_id, _hash in credentials]
    problems = generate.broker_config_problems(device_ids, backend_user=backend)
    if problems:
        click.echo("mqtthub broker-config: nothing written:", err=True)
        click.echo("".join(f"  {problem}\n" for problem in problems), err=True, nl=False)
        sys.exit(1)
    rules = {
        "backend_user": backend,
        "prefix": settings.topic_prefix,
        "app_prefix": settings.app_prefix,
    }
    listener = generate.device_listener(settings.device_endpoint)
    out.mkdir(parents=True, exist_ok=True)
    folder = out.resolve()
    if broker == "mosquitto":
        users = list(credentials)
        if settings.broker.password:
            users.insert(
                0, (backend, generate.hash_password(settings.broker.password.get_secret_value()))
            )
        files = {
            "passwd": (generate.mosquitto_passwd(users), generate.PRIVATE),
            "acl": (generate.mosquitto_acl(device_ids, **rules), generate.PRIVATE),
            "mqtthub.conf": (
                generate.mosquitto_conf(folder=folder, listener=listener),
                generate.PUBLIC,
            ),
        }
    else:
        files = {
            "acl.conf": (generate.emqx_acl(device_ids, **rules), generate.PRIVATE),
            "emqx.conf": (generate.emqx_conf(listener=listener), generate.PUBLIC),
        }
    for name, (text, mode) in files.items():
        generate.write_atomic(folder / name, text, mode=mode)
    written = ", ".join(str(folder / name) for name in files)
    click.echo(f"wrote {written} for {len(device_ids)} devices")


main.add_command(simulate)
