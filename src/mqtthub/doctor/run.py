"""Run the doctor's checks in layers; the first hard failure skips the layers after it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from mqtthub.client import check_recipient
from mqtthub.config import TLS_PORTS, Settings, load_settings
from mqtthub.doctor import limits, mqtt_rules, mtls, network_rules, probes, traffic_rules, websocket
from mqtthub.doctor.checks import Check, Outcome, skipped
from mqtthub.doctor.mqtt_rules import StabilityEvidence
from mqtthub.doctor.network_rules import ConfigEvidence
from mqtthub.errors import ConfigError

ORDER = (
    "config",
    "dns",
    "tcp",
    "tls",
    "mqtt_connect",
    "subscribe",
    "publish",
    "stability",
    "traffic",
    "pipeline",
)
OPTIONAL = {
    "stability": "not requested (--soak SECONDS)",
    "traffic": "not requested (--expect-traffic SECONDS)",
    "pipeline": "not requested (--api URL)",
}


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """What to check beyond the basic layers."""

    soak: float | None = None
    client_id: str | None = None
    expect_traffic: float | None = None
    api: str | None = None
    payload_size: int | None = None  # None: MQTTHUB_MAX_PAYLOAD, as a warning only
    #: Check subscribe and publish as the task app of this recipient (mqtthub inbox,
    #: listen) instead of as serve; None: as serve.
    recipient: str | None = None


def load_config(
    flags: dict[str, Any], recipient: str | None = None
) -> tuple[Settings | None, ConfigEvidence]:
    """Load settings like ``serve`` does; a failure is evidence, not an exception."""
    try:
        settings = load_settings(**flags)
    except ConfigError as exc:
        return None, ConfigEvidence({}, error=str(exc))
    if recipient is not None:
        try:
            check_recipient(recipient)
        except ValueError as exc:
            return None, ConfigEvidence({}, error=f"--recipient: {exc}")
    endpoint = settings.broker
    summary = {
        "broker": endpoint.display(),
        "tls": "yes" if endpoint.tls else "no",
        "ca_file": str(settings.ca_file) if settings.ca_file else "-",
        "client_id": settings.client_id or "unique per instance",
        "keepalive": settings.keepalive,
        "topic_prefix": settings.topic_prefix,
        **(
            {"checked_as": f"task app of {recipient}", "app_prefix": settings.app_prefix}
            if recipient is not None
            else {}
        ),
        "database": settings.sqlalchemy_url.split("@")[-1],
    }
    return settings, ConfigEvidence(summary, contradictions=_contradictions(settings))


def _contradictions(settings: Settings) -> tuple[str, ...]:
    found = []
    url = settings.broker_url
    if "broker_url" in settings.model_fields_set and settings.mqtt_broker_host:
        legacy = f"{settings.mqtt_broker_host}:{settings.mqtt_broker_port or 1883}"
        if legacy != f"{settings.broker.host}:{settings.broker.port}":
            found.append(
                f"MQTTHUB_BROKER_URL ({settings.broker.address}) and MQTT_BROKER_HOST/PORT "
                f"({legacy}) name different brokers; MQTTHUB_BROKER_URL wins"
            )
    if url.startswith("mqtt://") and settings.broker.port in TLS_PORTS:
        found.append(
            f"MQTTHUB_BROKER_URL says mqtt:// but port {settings.broker.port} is a TLS port "
            "(TLS is switched on by the port)"
        )
    if settings.ca_file and not settings.broker.tls:
        found.append("MQTTHUB_CA_FILE is set but the connection is plain MQTT")
    return tuple(found)


async def run_doctor(flags: dict[str, Any], options: DoctorOptions) -> tuple[list[Check], str]:
    """Run every layer; return the checks in report order and the target description."""
    settings, config = load_config(flags, options.recipient)
    checks = [network_rules.check_config(config)]
    if settings is None:
        checks[0] = _client_cert_config(flags, config) or checks[0]
        return _finish(checks, options, "config"), "configuration"
    target = settings.broker.display()
    network = await probes.probe_network(settings.broker)
    for check in (network_rules.check_dns(network), network_rules.check_tcp(network)):
        checks.append(check)
        if check.status is Outcome.FAIL:
            return _finish(checks, options, check.id), target
    tcp = limits.check_accept(checks[-1], await probes.probe_accept(settings.broker))
    checks[-1] = tcp
    if tcp.status is Outcome.FAIL:
        return _finish(checks, options, "tcp"), target
    checks.append(network_rules.check_tls(await probes.probe_tls(settings.broker, settings)))
    checks[-1] = websocket.tls_check(settings, checks[-1])
    checks[-1] = await _client_cert_tls(settings, checks[-1])
    if checks[-1].status is Outcome.FAIL:
        return _finish(checks, options, "tls"), target
    if (upgrade := await websocket.upgrade_check(settings)) is not None:
        checks.append(upgrade)
        if upgrade.status is Outcome.FAIL:
            return _finish(checks, options, upgrade.id), target
    broker_checks = await _broker_checks(settings, options)
    checks += broker_checks
    if broker_checks[0].status is Outcome.FAIL:
        return _finish(checks, options, "mqtt_connect"), target
    if options.soak:
        borrowed = options.client_id is not None
        client_id = options.client_id or f"mqtthub-doctor-{secrets.token_hex(4)}"
        evidence = await probes.probe_stability(settings, client_id, options.soak)
        checks.append(mqtt_rules.check_stability(_borrowed(evidence, borrowed)))
    return _finish(checks, options, None), target


async def _broker_checks(settings: Settings, options: DoctorOptions) -> list[Check]:
    probe = probes.Probe(settings, f"mqtthub-doctor-{secrets.token_hex(4)}")
    try:
        connect = await probe.connect()
        if probe.session is None:
            return [limits.check_connect_limit(mqtt_rules.check_connect(connect), connect)]
        delivery = await probe.delivery(options.recipient)
        checks = [mqtt_rules.check_subscribe(delivery), mqtt_rules.check_publish(delivery)]
        if options.expect_traffic:
            census = probes.build_census(settings)
            listened, limit = await probe.traffic(options.expect_traffic, census)
            evidence = probes.traffic_evidence(
                settings, options.expect_traffic, census, listened=listened, limit=limit
            )
            checks.append(traffic_rules.check_traffic(evidence))
        if options.api:
            token = settings.api_token.get_secret_value() if settings.api_token else None
            checks.append(traffic_rules.check_pipeline(await probe.pipeline(options.api, token)))
        if delivery.delivered and options.recipient is None:
            # Device-sized payloads are serve's concern; a task app gets tasks the server
            # sized, and its own receipts are small.
            checks[1] = await _payload_check(probe, settings, options, checks[1])
        # Last: a broker that drops us for the $SYS filter (rumqttd) has had its checks.
        version = await probe.broker_version()
        return [mqtt_rules.check_connect(replace(connect, broker_version=version)), *checks]
    finally:
        await probe.close()


async def _payload_check(
    probe: probes.Probe, settings: Settings, options: DoctorOptions, publish: Check
) -> Check:
    """A probe of the size devices send (last: a broker may drop us for it)."""
    size = options.payload_size or settings.max_payload
    evidence = await probes.probe_payload(probe, size, options.payload_size is not None)
    return publish if evidence is None else limits.check_payload(publish, evidence)


def _client_cert_config(flags: dict[str, Any], config: ConfigEvidence) -> Check | None:
    """A client certificate and key that do not match: its own cause, found locally."""
    if "MQTTHUB_CLIENT_CERT" not in (config.error or ""):
        return None
    files = probes.client_cert_files(flags)
    return mtls.check_client_cert_files(files) if files else None


async def _client_cert_tls(settings: Settings, tls: Check) -> Check:
    """The broker's verdict on our client certificate (or its absence) refines ``tls``."""
    if not settings.broker.tls or tls.status is Outcome.FAIL:
        return tls
    return mtls.check_client_cert(tls, await probes.probe_client_cert(settings))


def _borrowed(evidence: StabilityEvidence, borrowed: bool) -> StabilityEvidence:
    return replace(evidence, borrowed_id=borrowed)


def _finish(checks: list[Check], options: DoctorOptions, failed_at: str | None) -> list[Check]:
    """Add skipped checks for what did not run, and sort into report order."""
    done = {check.id for check in checks}
    for check_id in ORDER:
        if check_id in done:
            continue
        if failed_at is not None:
            checks.append(skipped(check_id, f"skipped: {failed_at} failed"))
        elif check_id in OPTIONAL and not _requested(check_id, options):
            checks.append(skipped(check_id, OPTIONAL[check_id]))
    return sorted(checks, key=_position)


def _position(check: Check) -> float:
    """Report order; the websocket check (ws:// and wss:// URLs only) right after tls."""
    if check.id == websocket.CHECK_ID:
        return ORDER.index("tls") + 0.5
    return ORDER.index(check.id)


def _requested(check_id: str, options: DoctorOptions) -> bool:
    return bool(
        {"stability": options.soak, "traffic": options.expect_traffic, "pipeline": options.api}[
            check_id
        ]
    )
