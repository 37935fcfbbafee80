"""Broker access control from the device registry (pure text generation, no I/O).

Each device may publish only under ``{prefix}/<its id>/`` and read only its own command
topic; the backend user may read every device topic, publish commands, and talk to apps.
Passwords are hashed in Mosquitto's own PBKDF2-SHA512 ``$7$`` format, so the registry
never holds a plain password and the password file is written straight from it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 uses for $7$
SALT_BYTES = 12


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A Mosquitto ``$7$`` (PBKDF2-SHA512) hash of ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"$7${PBKDF2_ITERATIONS}${encoded[0]}${encoded[1]}"


def new_password() -> str:
    """A random device password (shown once, never stored)."""
    return secrets.token_urlsafe(18)


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
        lines += [
            f"user {device_id}",
            f"topic write {prefix}/{device_id}/#",
            f"topic read {prefix}/{device_id}/command",
            "",
        ]
    return "\n".join(lines)


def emqx_acl(device_ids: Sequence[str], *, backend_user: str, prefix: str, app_prefix: str) -> str:
    """The same rules in EMQX's file-based ACL format (``acl.conf``)."""
    lines = [
        "%% Written by `mqtthub broker-config emqx` from the device registry.",
        f'{{allow, {{user, "{backend_user}"}}, subscribe, ["{prefix}/#", "$SYS/#"]}}.',
        f'{{allow, {{user, "{backend_user}"}}, publish, ["{prefix}/+/command"]}}.',
        f'{{allow, {{user, "{backend_user}"}}, all, ["{app_prefix}/#"]}}.',
    ]
    for device_id in device_ids:
        lines += [
            f'{{allow, {{user, "{device_id}"}}, publish, ["{prefix}/{device_id}/#"]}}.',
            f'{{allow, {{user, "{device_id}"}}, subscribe, ["{prefix}/{device_id}/command"]}}.',
        ]
    lines.append("{deny, all}.")
    return "\n".join(lines) + "\n"
