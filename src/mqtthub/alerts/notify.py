"""Deliver alert notifications: webhook, MQTT publish, e-mail (I/O at the edge).

Every notification is logged (``notifications``: channel, target, state, attempts, detail)
and readable at ``GET /api/notifications``. Webhooks and e-mail are retried with
exponential backoff (``RETRY_DELAYS_S``); a webhook carries ``X-Mqtthub-Signature:
sha256=<hex>``, the HMAC-SHA256 of the body with the channel's secret, when one is set.
Secrets and SMTP passwords are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import smtplib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from mqtthub.ingest.writer import ExecuteWrite
from mqtthub.store import alerts as db
from mqtthub.timefmt import iso_utc

log = logging.getLogger("mqtthub.alerts")
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0)  # after attempts 1..4; 5 attempts in all
WEBHOOK_TIMEOUT_S = 10.0
SIGNATURE_HEADER = "X-Mqtthub-Signature"


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where e-mail notifications go (``MQTTHUB_SMTP_URL``) and who sends them."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    sender: str

    @classmethod
    def from_url(cls, url: str, sender: str) -> SmtpServer:
        """``smtp://[user:pass@]host[:port]`` (STARTTLS when the server offers it) or
        ``smtps://`` (TLS from the start)."""
        parts = urlsplit(url)
        tls = parts.scheme == "smtps"
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or (465 if tls else 25),
            tls,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            sender,
        )


def shown_url(url: str) -> str:
    """A webhook URL as it may be shown and logged: ``scheme://host[:port]/…``.

    Slack, Discord and many other webhooks carry their credential in the path or query
    (or as ``user:password@``), so only the scheme and host are ever shown.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def signature(secret: str, body: bytes) -> str:
    """The webhook signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def message_of(alert: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """The notification's JSON body: the rule, the device, the state, the value, the time."""
    return {
        "rule": {"id": rule["id"], "name": rule["name"], "condition": rule["condition"]},
        "alert_id": alert["id"],
        "device_id": alert["device_id"],
        "state": alert["state"],
        "value": alert["value"],
        "metric": rule.get("metric"),
        "detail": alert.get("detail", ""),
        "at": iso_utc(alert["at"]),
    }


class Notifier:
    """Sends one alert's notifications to each channel of its rule."""

    def __init__(
        self,
        *,
        execute_write: ExecuteWrite,
        publish: Callable[[str, bytes], bool],
        smtp: SmtpServer | None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``publish``: the service's MQTT publish (QoS 1); ``smtp``: None disables e-mail."""
        self._write = execute_write
        self._publish = publish
        self._smtp = smtp
        self._sleep = sleep
        self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False)

    async def close(self) -> None:
        """Release the HTTP client."""
        await self._client.aclose()

    async def send(self, alert: dict[str, Any], rule: dict[str, Any]) -> None:
        """Notify every channel of ``rule`` about ``alert`` (a failure stays in the log)."""
        message = message_of(alert, rule)
        body = orjson.dumps(message)
        channels = orjson.loads(rule["notify"]) if rule.get("notify") else []
        await asyncio.gather(
            *(self._deliver(alert["id"], channel, message, body) for channel in channels)
        )

    async def _deliver(
        self, alert_id: str, channel: dict[str, Any], message: dict[str, Any], body: bytes
    ) -> None:
        kind = str(channel.get("type"))
        url = channel.get("url")
        target = (
            shown_url(str(url)) if url else str(channel.get("topic") or channel.get("to") or "")
        )
        entry = await self._write(
            db.log_notification,
            {
                "alert_id": alert_id,
                "channel": kind,
                "target": target,
                "state": "pending",
                "at": time.time(),
                "attempts": 0,
                "detail": "",
            },
        )
        attempts, state, detail = 0, "failed", "unknown channel type"
        while kind in {"webhook", "email", "mqtt"}:
            attempts += 1
            try:
                detail = await self._attempt(kind, channel, message, body)
                state = "delivered"
                break
            except (httpx.HTTPError, OSError, smtplib.SMTPException, DeliveryError) as exc:
                detail = _describe(exc)
                if attempts > len(RETRY_DELAYS_S) or kind == "mqtt":
                    break
                await self._write(
                    db.finish_notification,
                    entry,
                    state="retrying",
                    attempts=attempts,
                    detail=detail,
                    at=time.time(),
                )
                await self._sleep(RETRY_DELAYS_S[attempts - 1])
        if state != "delivered":
            log.warning("alert notification by %s to %s failed: %s", kind, target[:200], detail)
        await self._write(
            db.finish_notification,
            entry,
            state=state,
            attempts=attempts,
            detail=detail,
            at=time.time(),
        )

    async def _attempt(
        self, kind: str, channel: dict[str, Any], message: dict[str, Any], body: bytes
    ) -> str:
        if kind == "webhook":
            headers = {"Content-Type": "application/json"}
            if channel.get("secret"):
                headers[SIGNATURE_HEADER] = signature(str(channel["secret"]), body)
            response = await self._client.post(str(channel["url"]), content=body, headers=headers)
            if response.status_code >= 300:
                raise DeliveryError(f"HTTP {response.status_code}")
            return f"HTTP {response.status_code}"
        if kind == "mqtt":
            if not self._publish(str(channel["topic"]), body):
                raise DeliveryError("not connected to the broker")
            return "published"
        if self._smtp is None:
            raise DeliveryError("e-mail is not configured: set MQTTHUB_SMTP_URL")
        await asyncio.to_thread(_send_mail, self._smtp, str(channel["to"]), message)
        return "accepted by the SMTP server"


class DeliveryError(Exception):
    """A notification was refused (e.g. a webhook answered 500)."""


def _send_mail(server: SmtpServer, to: str, message: dict[str, Any]) -> None:
    mail = EmailMessage()
    mail["From"] = server.sender
    mail["To"] = to
    mail["Subject"] = (
        f"[mqtthub] {message['state']}: {message['rule']['name']} on {message['device_id']}"
    )
    mail.set_content(
        f"{message['rule']['name']} is {message['state']} on device {message['device_id']} "
        f"at {message['at']}.\n\n{message['detail']}\nvalue: {message['value']}\n"
    )
    connect = smtplib.SMTP_SSL if server.tls else smtplib.SMTP
    with connect(server.host, server.port, timeout=WEBHOOK_TIMEOUT_S) as smtp:
        if not server.tls:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls()
        if server.username:
            smtp.login(server.username, server.password or "")
        smtp.send_message(mail)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]
