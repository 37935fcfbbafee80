"""Settings for every mqtthub command: environment, ``.env`` file and CLI flags (flags win).

Nothing here connects to anything; :func:`load_settings` only reads variables and checks
that the files they name exist, so a bad configuration fails before any connection is tried.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from mqtthub.errors import ConfigError
from mqtthub.profiles import PROFILE_NAMES
from mqtthub.profiles.active import active_profiles
from mqtthub.retention import RetentionPolicy, parse_duration, parse_metric_durations

TLS_PORTS = frozenset({8883, 18883})
DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"
DEFAULT_DATABASE_URL = "sqlite:///data/mqtthub.db"
#: The names of this machine's loopback interface, in the order the API lists them.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
LOCAL_HOSTS = frozenset(LOOPBACK_NAMES)
#: Addresses that mean "every interface": not a name clients reach the API under.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
DEFAULT_MAX_REQUEST_BODY = 1024 * 1024
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")


class Delivery(StrEnum):
    """When ``serve`` acknowledges a QoS 1 message to the broker."""

    AT_LEAST_ONCE = "at_least_once"  # after the batch holding it is committed
    AT_MOST_ONCE = "at_most_once"  # on receipt: faster, loses what a crash interrupts


class MqttVersion(StrEnum):
    """Which MQTT protocol version to speak."""

    AUTO = "auto"  # MQTT 5, falling back to 3.1.1 when the broker refuses 5
    V5 = "5"
    V311 = "3.1.1"


class EmbeddedBroker(StrEnum):
    """When ``serve`` starts its own broker."""

    AUTO = "auto"  # only when nothing listens at a local, plain broker address
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where and how to reach the MQTT broker, resolved from all settings."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: SecretStr | None
    #: MQTT over WebSockets (``ws://``, ``wss://``): the HTTP request target to upgrade,
    #: e.g. ``/mqtt``; None for MQTT straight over TCP.
    websocket_path: str | None = None

    @property
    def is_local(self) -> bool:
        """True when the broker address is this machine's loopback."""
        return self.host in LOCAL_HOSTS

    @property
    def scheme(self) -> str:
        """``mqtt``, ``mqtts``, ``ws`` or ``wss``."""
        if self.websocket_path is not None:
            return "wss" if self.tls else "ws"
        return "mqtts" if self.tls else "mqtt"

    @property
    def address(self) -> str:
        """``scheme://host:port`` (and the path for WebSockets) without credentials, for
        comparing endpoints."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.websocket_path or ''}"

    def display(self) -> str:
        """The endpoint as a URL with the password masked, safe to log."""
        user = ""
        if self.username:
            user = f"{self.username}:***@" if self.password else f"{self.username}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}{self.websocket_path or ''}"


class Settings(BaseSettings):
    """Validated settings; each field reads ``MQTTHUB_<NAME>`` unless an alias is listed."""

    model_config = SettingsConfigDict(
        env_prefix="MQTTHUB_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    broker_url: str = DEFAULT_BROKER_URL
    mqtt_broker_host: str | None = Field(default=None, validation_alias="MQTT_BROKER_HOST")
    mqtt_broker_port: int | None = Field(
        default=None, ge=1, le=65535, validation_alias="MQTT_BROKER_PORT"
    )
    username: str | None = Field(
        default=None, validation_alias=AliasChoices("MQTTHUB_USERNAME", "MQTT_USERNAME", "username")
    )
    password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MQTTHUB_PASSWORD", "MQTT_PASSWORD", "password")
    )
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    tls_insecure: bool = False
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    keepalive: int = Field(default=60, ge=5, le=65535)
    mqtt_version: MqttVersion = MqttVersion.AUTO
    session_expiry: int = Field(default=3600, ge=0, le=0xFFFFFFFF)
    delivery: Delivery = Delivery.AT_LEAST_ONCE
    reconnect_base: float = Field(default=1.0, gt=0, le=3600)
    reconnect_cap: float = Field(default=60.0, gt=0, le=86400)
    heartbeat_timeout: float | None = Field(default=None, gt=0)
    missed_heartbeats: int = Field(default=3, ge=1, le=100)
    topic_prefix: str = "devices"
    app_prefix: str = "mqtt_app"
    device_broker_url: str | None = None
    embedded_broker: EmbeddedBroker = EmbeddedBroker.AUTO
    profiles: str = "mqtthub"
    mappings: Path | None = None
    tasmota_timezone: str = "local"
    homeassistant_prefix: str = "homeassistant"
    share_group: str | None = Field(default=None, max_length=64)
    workers: int = Field(default=1, ge=1, le=64)
    #: Set by ``serve --workers`` for each worker process it starts (0 serves the HTTP API).
    worker_index: int | None = Field(default=None, ge=0, le=63)

    database_url: str = DEFAULT_DATABASE_URL
    auto_register: bool = True
    max_payload: int = Field(default=65536, ge=64, le=268435455)
    batch_size: int = Field(default=5000, ge=1, le=100000)
    queue_size: int = Field(default=10000, ge=10, le=10_000_000)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    api_token: SecretStr | None = None
    smtp_url: SecretStr | None = None
    smtp_from: str = Field(default="mqtthub@localhost", max_length=200)
    allowed_hosts: str = ""
    max_request_body: int = Field(default=DEFAULT_MAX_REQUEST_BODY, ge=1024, le=1 << 30)
    log_level: str = "INFO"

    # Retention (durations: 30d, 12h, ...; 0 or forever keeps everything; see retention.py).
    retention_raw: str = "30d"
    retention_1m: str = "365d"
    retention_1h: str = "forever"
    retention_1d: str = "forever"
    retention_raw_metrics: str = ""
    retention_batch: int = Field(default=2000, ge=10, le=100_000)
    retention_interval: float = Field(default=60.0, ge=0, le=86400)  # 0: no retention task

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        _parse_broker_url(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        normalize_database_url(value)
        return value

    @field_validator("device_broker_url")
    @classmethod
    def _check_device_broker_url(cls, value: str | None) -> str | None:
        if value:
            _parse_broker_url(value)
        return value or None

    @field_validator("topic_prefix", "app_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/"):
            raise ValueError("must be a topic level like 'devices', without leading/trailing '/'")
        if any(ch in value for ch in "+#\0"):
            raise ValueError("must not contain the wildcards '+' or '#'")
        return value

    @field_validator("share_group")
    @classmethod
    def _check_share_group(cls, value: str | None) -> str | None:
        if not value:
            return None
        if any(ch in value for ch in "/+#\0"):
            raise ValueError("must be one topic level: no '/', '+' or '#'")
        return value

    @field_validator("profiles")
    @classmethod
    def _check_profiles(cls, value: str) -> str:
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in PROFILE_NAMES]
        if unknown or not names:
            raise ValueError(
                f"unknown profile {', '.join(unknown) or '(none given)'}: choose from "
                f"{', '.join(PROFILE_NAMES)} (comma-separated)"
            )
        return ",".join(dict.fromkeys(names))

    @field_validator("tasmota_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        if value != "local":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"{value!r} is not a time zone: use an IANA name such as Europe/Berlin, "
                    "UTC, or local (this machine's zone)"
                ) from None
        return value

    @property
    def profile_names(self) -> tuple[str, ...]:
        """The active firmware profiles, in the order given."""
        return tuple(self.profiles.split(","))

    def tasmota_zone(self) -> tzinfo:
        """The zone Tasmota's ``Time`` is read in."""
        if self.tasmota_timezone == "local":
            zone = datetime.now().astimezone().tzinfo
            assert zone is not None
            return zone
        return ZoneInfo(self.tasmota_timezone)

    @field_validator("ca_file", "client_cert", "client_key", "mappings", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ca_file", "client_cert", "client_key", "mappings")
    @classmethod
    def _check_readable(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.exists():
            raise ValueError(f"{value} does not exist")
        if not value.is_file() or not os.access(value, os.R_OK):
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("api_token", "password", "smtp_url")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value and value.get_secret_value() else None

    @field_validator("allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: str) -> str:
        for name in _host_list(value):
            if name != "*" and not _HOST_NAME.fullmatch(name) and not _is_ipv6(name):
                raise ValueError(
                    f"{name!r} is not a host name: list names or addresses without scheme, "
                    "path or port, separated by commas (or * for any)"
                )
        return value

    def exposure_problem(self) -> str | None:
        """Why ``serve`` must not listen with these settings, or None.

        An API on a non-loopback address without a token would let anyone who reaches the
        port read and change devices. Only ``serve`` checks this: ``doctor`` or ``listen``
        run with the same ``.env`` serve no API.
        """
        if is_loopback(self.http_host) or self.api_token is not None:
            return None
        return (
            f"MQTTHUB_HTTP_HOST={self.http_host!r} is not a loopback address and "
            "MQTTHUB_API_TOKEN is not set, so anyone who reaches the port could read and "
            "change devices: set MQTTHUB_API_TOKEN to a long random secret, or set "
            "MQTTHUB_HTTP_HOST=127.0.0.1"
        )

    @field_validator("retention_raw", "retention_1m", "retention_1h", "retention_1d")
    @classmethod
    def _check_retention(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("retention_raw_metrics")
    @classmethod
    def _check_retention_metrics(cls, value: str) -> str:
        parse_metric_durations(value)
        return value

    @property
    def retention(self) -> RetentionPolicy:
        """How long raw samples and each aggregate are kept."""
        return RetentionPolicy(
            raw=parse_duration(self.retention_raw),
            minute=parse_duration(self.retention_1m),
            hour=parse_duration(self.retention_1h),
            day=parse_duration(self.retention_1d),
            raw_metrics=parse_metric_durations(self.retention_raw_metrics),
        )

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    def __repr_args__(self) -> Any:
        """Like pydantic's, with the password in ``broker_url`` masked."""
        for name, value in super().__repr_args__():
            masked = {"broker_url", "database_url", "device_broker_url"}
            yield name, _mask_url(value) if name in masked and value else value

    @property
    def broker(self) -> BrokerEndpoint:
        """The broker endpoint: ``MQTTHUB_BROKER_URL``, else the ``MQTT_BROKER_*`` variables."""
        url = _parse_broker_url(self.broker_url)
        if "broker_url" not in self.model_fields_set and self.mqtt_broker_host:
            port = self.mqtt_broker_port or 1883
            url = _ParsedUrl(self.mqtt_broker_host, port, port in TLS_PORTS, None, None)
        elif "broker_url" not in self.model_fields_set and self.mqtt_broker_port:
            port = self.mqtt_broker_port
            url = _ParsedUrl(url.host, port, port in TLS_PORTS, None, None)
        tls = url.tls or self.client_cert is not None
        username = url.username or self.username
        password = SecretStr(url.password) if url.password else self.password
        return BrokerEndpoint(url.host, url.port, tls, username, password, url.websocket_path)

    @property
    def trusted_hosts(self) -> tuple[str, ...]:
        """Host header names the API answers to: the loopback names, ``MQTTHUB_HTTP_HOST``
        when it is a specific address, and ``MQTTHUB_ALLOWED_HOSTS``."""
        names = list(LOOPBACK_NAMES)
        if self.http_host not in WILDCARD_HOSTS:
            names.append(self.http_host.strip("[]").lower())
        names.extend(_host_list(self.allowed_hosts))
        return tuple(dict.fromkeys(names))

    @property
    def effective_share_group(self) -> str | None:
        """The shared-subscription group device topics are read through, or None (alone).

        ``serve --workers N`` puts its workers in ``MQTTHUB_SHARE_GROUP``, or in the group
        ``mqtthub`` when that is not set.
        """
        if self.share_group is None and self.workers > 1:
            return "mqtthub"
        return self.share_group

    def scale_out_problem(self) -> str | None:
        """Why these settings cannot share the device stream with other processes, or None."""
        if self.effective_share_group is None or not self.sqlalchemy_url.startswith("sqlite"):
            return None
        what = (
            f"MQTTHUB_WORKERS={self.workers}: more than one worker"
            if self.workers > 1
            else f"MQTTHUB_SHARE_GROUP={self.share_group}: instances that share the device stream"
        )
        return (
            f"{what} must write to one shared database, and SQLite takes one writer per file "
            "on one machine: set MQTTHUB_DATABASE_URL=postgresql://user@host/dbname"
        )

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver SQLAlchemy should use."""
        return normalize_database_url(self.database_url)

    @property
    def persistent_session(self) -> bool:
        """True when the broker should keep our session (and queue messages) while we are away."""
        return self.session_expiry > 0 and self.delivery is Delivery.AT_LEAST_ONCE

    @property
    def device_endpoint(self) -> str:
        """The broker address devices are given at provisioning (and the doctor compares)."""
        if self.device_broker_url:
            url = _parse_broker_url(self.device_broker_url)
            return BrokerEndpoint(
                url.host, url.port, url.tls, None, None, url.websocket_path
            ).address
        return self.broker.address

    def effective_client_id(self, state_dir: Path = Path("data")) -> str:
        """The client id to connect with.

        ``MQTTHUB_CLIENT_ID`` when set. Otherwise ``mqtthub-<host>-<random>``: fresh for
        each run without a persistent session; with one, created once and kept in
        ``<state_dir>/client-id`` so the broker recognises this instance after a restart.
        """
        if self.client_id:
            return self.client_id
        host = socket.gethostname().split(".")[0][:24] or "host"
        fresh = f"mqtthub-{host}-{os.urandom(4).hex()}"
        if not self.persistent_session:
            return fresh
        path = state_dir / "client-id"
        if path.exists():
            stored = path.read_text().strip()
            if stored:
                return stored
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(fresh + "\n")
        return fresh


@dataclass(frozen=True, slots=True)
class _ParsedUrl:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    websocket_path: str | None = None


#: Broker URL schemes: (TLS, WebSockets, default port). WebSocket URLs default to the
#: ports of RFC 6455 (80, 443); EMQX serves ``ws://host:8083/mqtt`` and
#: ``wss://host:8084/mqtt``, so give the port.
_SCHEMES = {
    "mqtt": (False, False, 1883),
    "tcp": (False, False, 1883),
    "mqtts": (True, False, 8883),
    "ssl": (True, False, 8883),
    "ws": (False, True, 80),
    "wss": (True, True, 443),
}
#: The path MQTT brokers (EMQX, Mosquitto's examples, HiveMQ, MQTT.js) serve WebSockets on.
DEFAULT_WEBSOCKET_PATH = "/mqtt"


def _parse_broker_url(value: str) -> _ParsedUrl:
    parts = urlsplit(value)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"{_mask_url(value)!r} must start with mqtt://, mqtts://, ws:// or wss://")
    if not parts.hostname:
        raise ValueError(f"{_mask_url(value)!r} has no host (expected mqtt://host:port)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{_mask_url(value)!r} has a port outside 1-65535") from None
    tls_scheme, websocket, default_port = _SCHEMES[parts.scheme]
    if port is None:
        port = default_port
    if not 1 <= port <= 65535:
        raise ValueError(f"{_mask_url(value)!r} has a port outside 1-65535")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if websocket:
        path = (parts.path or DEFAULT_WEBSOCKET_PATH) + (f"?{parts.query}" if parts.query else "")
        if any(ch.isspace() for ch in path):
            raise ValueError(f"{_mask_url(value)!r}: the path must not contain spaces")
        # The scheme alone decides TLS for WebSockets (wss://), as in browsers.
        return _ParsedUrl(parts.hostname, port, tls_scheme, username, password, path)
    return _ParsedUrl(parts.hostname, port, tls_scheme or port in TLS_PORTS, username, password)


def _host_list(value: str) -> list[str]:
    return [name.strip().strip("[]").lower() for name in value.split(",") if name.strip()]


def _is_ipv6(name: str) -> bool:
    try:
        ipaddress.IPv6Address(name)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _mask_url(value: str) -> str:
    """Mask whatever sits between user ``:`` and ``@``, even in a malformed URL."""
    at = value.rfind("@")
    if at == -1:
        return value
    start = value.rfind("/", 0, at) + 1
    user, colon, _ = value[start:at].partition(":")
    return f"{value[:start]}{user}{':***' if colon else ''}{value[at:]}"


def normalize_database_url(value: str) -> str:
    """Map ``postgresql://`` and ``postgres://`` to the psycopg 3 driver; check the scheme.

    Raises:
        ValueError: the URL is neither SQLite nor PostgreSQL.
    """
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError(f"{_mask_url(value)!r} is not a URL like sqlite:///data/mqtthub.db")
    if scheme in {"postgresql", "postgres", "postgresql+psycopg"}:
        return f"postgresql+psycopg://{rest}"
    if scheme in {"sqlite", "sqlite+pysqlite"}:
        if not rest.startswith("/"):
            raise ValueError(f"{_mask_url(value)!r} must look like sqlite:///relative/path.db")
        return f"sqlite:///{rest[1:]}"
    raise ValueError(f"{_mask_url(value)!r}: only sqlite:/// and postgresql:// are supported")


def env_name(field: str) -> str:
    """The environment variable that sets ``field``, for messages."""
    if field.isupper():  # pydantic reports a field with a validation_alias under that alias
        return field
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        return " / ".join(str(choice) for choice in alias.choices if str(choice).isupper())
    return f"MQTTHUB_{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, ``.env`` and ``overrides`` (CLI flags win).

    Raises:
        ConfigError: a value is invalid; the message names the variable.
    """
    flags = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = Settings(**flags)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    problem = settings.scale_out_problem()
    if problem is not None:
        raise ConfigError(problem)
    if settings.client_key and not settings.client_cert:
        raise ConfigError("MQTTHUB_CLIENT_KEY is set but MQTTHUB_CLIENT_CERT is not")
    if settings.broker.tls:
        build_ssl_context(settings)
    active_profiles(settings)  # a bad mapping file is a configuration error too
    return settings


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a check across settings names its variables itself
            lines.append(message)
            continue
        lines.append(f"{env_name(str(error['loc'][0]))}: {message}")
    return "\n".join(lines)


def build_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context for the broker connection.

    The chain is always verified (against ``MQTTHUB_CA_FILE`` or the system store);
    ``MQTTHUB_TLS_INSECURE`` skips only the hostname check, for brokers reached by IP.

    Raises:
        ConfigError: a CA, certificate or key file cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if settings.ca_file:
        try:
            context.load_verify_locations(cafile=str(settings.ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"MQTTHUB_CA_FILE: {settings.ca_file} is not a PEM CA: {exc}"
            ) from None
    if settings.client_cert:
        try:
            context.load_cert_chain(
                str(settings.client_cert), str(settings.client_key) if settings.client_key else None
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"MQTTHUB_CLIENT_CERT/MQTTHUB_CLIENT_KEY: cannot load {settings.client_cert}: {exc}"
            ) from None
    if settings.tls_insecure:
        context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return context
