"""Exceptions raised by mqtthub.

Every error mqtthub raises derives from one root, so callers can catch them all::

    MqttHubError
    ├── ConfigError          bad settings; the message names the variable (exit status 2)
    ├── BrokerError          the MQTT broker could not be reached or refused us
    │   └── ConnectRefusedError   CONNACK with a failure reason code
    ├── StoreError           the database could not be opened, migrated, read or written
    │   ├── StoreUnavailableError   the database cannot be reached now (retry; HTTP 503)
    │   └── StoreConflictError      a unique key is already taken
    └── TaskFailedError      one of serve's long-running tasks ended unexpectedly (exit 1)
"""

from __future__ import annotations


class MqttHubError(Exception):
    """Root of every exception mqtthub raises on purpose."""


class ConfigError(MqttHubError):
    """Configuration is invalid; ``str(error)`` names the variable and the fix."""


class BrokerError(MqttHubError):
    """The MQTT broker could not be reached, or the connection failed."""


class ConnectRefusedError(BrokerError):
    """The broker answered CONNECT with a failure reason code.

    Attributes:
        code: the CONNACK return code (MQTT 3.1.1) or reason code (MQTT 5).
        reason: a stable snake_case name for the code, e.g. ``not_authorized``.
        permanent: True when retrying quickly cannot help (bad credentials, banned, ...).
        server_reference: where a redirecting broker (0x9C/0x9D) sends us, if it says.
    """

    def __init__(
        self, *, code: int, reason: str, permanent: bool, server_reference: str | None = None
    ) -> None:
        super().__init__(f"broker refused the connection: {reason} (code {code})")
        self.code = code
        self.reason = reason
        self.permanent = permanent
        self.server_reference = server_reference


class StoreError(MqttHubError):
    """The database could not be opened, migrated, read or written."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached now; the same operation may succeed later."""


class StoreConflictError(StoreError):
    """The database refused a row because a unique key is already taken."""


class TaskFailedError(MqttHubError):
    """A long-running task of ``serve`` raised or returned before shutdown.

    Attributes:
        task: the task's name (``mqtt``, ``writer``, ``http``, ``downlink``, ``stats``).
        description: what happened, e.g. ``died: RuntimeError: ...``.
    """

    def __init__(self, task: str, description: str) -> None:
        super().__init__(f"task {task} {description}")
        self.task = task
        self.description = description
