"""Broker access control from the device registry.

Each device may publish only its own ``status``, ``sensor`` and ``heartbeat`` messages and
its replies to commands, and may read only its own command topic; the broker binds its
client id to its username so it cannot take over another device's connection. The backend
user may read every device topic, publish commands, and talk to apps. Passwords are hashed
in Mosquitto's own PBKDF2-SHA512 ``$7$`` format, so the registry never holds a plain
password and the password file is written straight from it.

Everything here is pure text generation and checking, except :func:`write_atomic`, the one
function that touches the disk.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mqtthub.config import LOCAL_HOSTS
from mqtthub.messages import Kind

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 uses for $7$
SALT_BYTES = 12
DEFAULT_BACKEND_USER = "mqtthub"
"""The backend's username in the generated files when the settings name none."""
OWN_CLIENT_ID_PREFIX = "mqtthub-"
"""Start of the client ids mqtthub's own connections pick (``serve``, ``listen``)."""
DEVICE_ID_RULE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Device ids that every broker file can hold: ASCII letters, digits, ``_ . -``."""
PRIVATE = 0o600
PUBLIC = 0o644


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A Mosquitto ``$7$`` (PBKDF2-SHA512) hash of ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"$7${PBKDF2_ITERATIONS}${encoded[0]}${encoded[1]}"


def new_password() -> str:
    """A random device password (shown once, never stored)."""
    return secrets.token_urlsafe(18)


def provisioning_refusal(device_id: str, *, reserved: Collection[str] = ()) -> str | None:
    """Why ``device_id`` cannot be provisioned, or ``None`` when it can.

    A provisioned id becomes an MQTT username in the broker's password file and ACL, the
    client id on a listener that binds client ids to usernames, a topic level and a
    dashboard URL segment, so it must be safe in all of them.

    Args:
        device_id: The id asked for.
        reserved: Names mqtthub's own connections use (the backend's username and client
            id); ``mqtthub`` and ids starting with ``mqtthub-`` are always reserved.
    """
    if not DEVICE_ID_RULE.fullmatch(device_id):
        return _bad_characters(device_id)
    if device_id in {".", ".."}:
        return (
            f"device id {device_id!r} is a path segment: the dashboard and the API "
            "could not address this device"
        )
    if device_id in reserved or device_id == DEFAULT_BACKEND_USER:
        return (
            f"device id {device_id!r} is reserved: mqtthub itself connects to the broker with "
            "this name; a device with it would replace the backend's entry in the broker's "
            "password file and ACL (locking the backend out and letting the device read "
            "every device's topics)"
        )
    if device_id.startswith(OWN_CLIENT_ID_PREFIX):
        return (
            f"device id {device_id!r} starts with {OWN_CLIENT_ID_PREFIX!r}, the client ids of "
            "mqtthub's own connections: where the broker makes a device's username its "
            "client id, this device would disconnect them"
        )
    return None


def _bad_characters(device_id: str) -> str:
    if not 1 <= len(device_id) <= 64:
        return f"a device id has 1 to 64 characters, not {len(device_id)}"
    bad = sorted({ch for ch in device_id if not DEVICE_ID_RULE.fullmatch(ch)})
    why = "it becomes the device's MQTT username and a topic level"
    if ":" in bad:
        why = "':' ends the username in Mosquitto's password file, whose lines are user:hash"
    return (
        f"device id {device_id!r} contains {', '.join(map(repr, bad))}: use only ASCII "
        f"letters, digits, '_', '-' and '.' ({why})"
    )


def unsafe_user(name: str) -> str | None:
    """Why ``name`` cannot be written as a user to the broker files, or ``None``."""
    if not name or name != name.strip() or not name.isprintable():
        return f"user {name!r} is empty, has surrounding spaces or control characters"
    if ":" in name:
        return f"user {name!r} contains ':', which ends the username in Mosquitto's passwd"
    if name.startswith("#"):
        return f"user {name!r} starts with '#', which makes its line a comment for Mosquitto"
    if any(ch in name for ch in "\"\\'"):
        return f"user {name!r} contains a quote or backslash, which breaks EMQX's acl.conf"
    return None


def broker_config_problems(device_ids: Sequence[str], *, backend_user: str) -> list[str]:
    """Why the broker files for these users would be wrong; empty when they are safe.

    Each user must appear once (Mosquitto keeps only one entry of a repeated user, so a
    device named like the backend locks it out or inherits its rights) and be writable.
    """
    problems = []
    for name, count in Counter([backend_user, *device_ids]).items():
        if count > 1 and name == backend_user:
            problems.append(
                f"device {name!r} has the backend's MQTT username: delete the device "
                f"(DELETE /api/devices/{name}) or give the backend another username"
            )
        elif count > 1:
            problems.append(f"user {name!r} appears {count} times")
    problems += [p for p in map(unsafe_user, [backend_user, *device_ids]) if p is not None]
    return problems


def device_publish_topics(prefix: str, device_id: str) -> list[str]:
    """The topics a device may publish to: its messages and its command replies."""
    return [f"{prefix}/{device_id}/{kind.value}" for kind in Kind] + [
        f"{prefix}/{device_id}/command/+/reply"
    ]


def mosquitto_passwd(credentials: Sequence[tuple[str, str]]) -> str:
    """A Mosquitto ``password_file`` from (user, ``$7$`` hash) pairs."""
    return "".join(f"{user}:{hashed}\n" for user, hashed in credentials)


def mosquitto_acl(
    device_ids: Sequence[str], *, backend_user: str, prefix: str, app_prefix: str
) -> str:
    """A Mosquitto ``acl_file``: devices confined to their own topics."""
    lines = [
        "# Written by `mqtthub broker-config mosquitto` from the device registry.",
        f"user {backend_user}",
        f"topic read {prefix}/#",
        f"topic write {prefix}/+/command",
        f"topic readwrite {app_prefix}/#",
        "topic read $SYS/#",
        "",
    ]
    for device_id in device_ids:
        lines.append(f"user {device_id}")
        lines += [f"topic write {topic}" for topic in device_publish_topics(prefix, device_id)]
        lines += [f"topic read {prefix}/{device_id}/command", ""]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class DeviceListener:
    """Where devices connect: the port, whether it is TLS, and the address to bind."""

    port: int
    tls: bool
    bind: str | None  # only for a loopback endpoint; otherwise every interface


def device_listener(endpoint: str) -> DeviceListener:
    """The listener devices use, from the endpoint given to them (``mqtt[s]://host:port``)."""
    parts = urlsplit(endpoint)
    tls = parts.scheme in {"mqtts", "ssl"}
    port = parts.port or (8883 if tls else 1883)
    host = parts.hostname or ""
    return DeviceListener(port, tls, host if host in LOCAL_HOSTS else None)


def mosquitto_conf(*, folder: Path, listener: DeviceListener) -> str:
    """Mosquitto configuration lines that use the generated files and confine devices.

    The devices' listener replaces each client id with the username
    (``use_username_as_clientid``), so no device can take another's client id and
    disconnect it.
    """
    address = f" {listener.bind}" if listener.bind else ""
    lines = [
        "# Written by `mqtthub broker-config mosquitto`: add these lines to mosquitto.conf or",
        "# include them (include_dir reads *.conf). Assumes per_listener_settings false.",
        "# passwd and acl are 0600 and Mosquitto 2 reads them as its own user: chown them to",
        "# that user once (e.g. `chown mosquitto: passwd acl`); regenerating keeps the owner.",
        "allow_anonymous false",
        f"password_file {folder / 'passwd'}",
        f"acl_file {folder / 'acl'}",
        "",
        "# The listener devices connect to (the endpoint given at provisioning). The broker",
        "# replaces each client id with the username, so no device can take another device's",
        "# client id and disconnect it. Every listener devices can reach needs this line.",
        f"listener {listener.port}{address}",
        "use_username_as_clientid true",
    ]
    if listener.tls:
        lines += [
            "# certfile /etc/mosquitto/certs/server.crt",
            "# keyfile /etc/mosquitto/certs/server.key",
        ]
    lines += [
        "",
        "# mqtthub serve and `mqtthub listen` keep their own client ids on a listener devices",
        "# cannot reach, e.g. `listener 1884 127.0.0.1` (on the devices' listener, two clients",
        "# with one username would disconnect each other).",
    ]
    return "\n".join(lines) + "\n"


def emqx_acl(device_ids: Sequence[str], *, backend_user: str, prefix: str, app_prefix: str) -> str:
    """The same rules in EMQX's file-based ACL format (``acl.conf``).

    A device's rules apply only while its client id equals its username, so a device that
    connects under another client id gets no rights at all.
    """
    lines = [
        "%% Written by `mqtthub broker-config emqx` from the device registry.",
        f'{{allow, {{user, "{backend_user}"}}, subscribe, ["{prefix}/#", "$SYS/#"]}}.',
        f'{{allow, {{user, "{backend_user}"}}, publish, ["{prefix}/+/command"]}}.',
        f'{{allow, {{user, "{backend_user}"}}, all, ["{app_prefix}/#"]}}.',
    ]
    for device_id in device_ids:
        who = f'{{\'and\', [{{user, "{device_id}"}}, {{clientid, "{device_id}"}}]}}'
        topics = ", ".join(f'"{topic}"' for topic in device_publish_topics(prefix, device_id))
        lines += [
            f"{{allow, {who}, publish, [{topics}]}}.",
            f'{{allow, {who}, subscribe, ["{prefix}/{device_id}/command"]}}.',
        ]
    lines.append("{deny, all}.")
    return "\n".join(lines) + "\n"


def emqx_conf(*, listener: DeviceListener) -> str:
    """EMQX 5 settings that bind a device's client id to its username on its listener."""
    kind = "ssl" if listener.tls else "tcp"
    return "\n".join(
        [
            "## Written by `mqtthub broker-config emqx`: add to emqx.conf (EMQX 5).",
            f"## Devices connect to listeners.{kind}.default (port {listener.port}); in the zone",
            "## `devices` EMQX replaces each client id with the username, so no device can take",
            "## another device's client id and disconnect it. Give mqtthub serve and apps a",
            "## listener in the default zone: they keep their own client ids.",
            "zones.devices.mqtt.use_username_as_clientid = true",
            f"listeners.{kind}.default.zone = devices",
            "",
        ]
    )


def write_atomic(path: Path, text: str, *, mode: int) -> None:
    """Replace ``path`` with ``text`` so no reader ever sees a partial or too-open file.

    The text goes to a new file in the same folder, created with ``mode`` (never wider
    permissions in between), and is then renamed over ``path``. The new file keeps the
    owner and group of the one it replaces when this process may set them (as root), so a
    broker that reads the file as its own user still can after a regeneration.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(temporary, flags, mode)
    try:
        _keep_owner(descriptor, path)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _keep_owner(descriptor: int, path: Path) -> None:
    try:
        previous = path.stat()
    except FileNotFoundError:
        return
    with contextlib.suppress(PermissionError):
        os.fchown(descriptor, previous.st_uid, previous.st_gid)
