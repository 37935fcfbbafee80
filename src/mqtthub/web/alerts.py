"""Alert routes: rules (create, list, change, delete), alerts (list, acknowledge) and the
notification delivery log."""

from __future__ import annotations

import json
import secrets
import time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mqtthub.alerts.notify import shown_url
from mqtthub.alerts.rules import METRIC_CONDITIONS, Condition
from mqtthub.messages import METRIC_PATTERN
from mqtthub.store import alerts as db
from mqtthub.web.api import ONE_LINE, Limit, Offset, RuntimeDep, StoreDep, iso

router = APIRouter()
_EMAIL = r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}$"
_MQTT_TOPIC = r"^[^+#\x00]{1,256}$"
_DEVICE_ID = r"^[A-Za-z0-9_.:-]{1,64}$"  # as messages.DEVICE_ID_PATTERN, without its look-ahead
MASK = "***"


class Channel(BaseModel):
    """Where a rule's notifications go: a webhook, an MQTT topic or an e-mail address."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook", "mqtt", "email"]
    url: Annotated[str | None, Field(max_length=2000)] = None
    secret: Annotated[str | None, Field(min_length=8, max_length=200)] = None
    topic: Annotated[str | None, Field(pattern=_MQTT_TOPIC)] = None
    to: Annotated[str | None, Field(pattern=_EMAIL)] = None

    @model_validator(mode="after")
    def _check_target(self) -> Channel:
        if self.type == "webhook":
            parts = urlsplit(self.url or "")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("a webhook needs an http:// or https:// url")
        elif self.type == "mqtt" and not self.topic:
            raise ValueError("an mqtt channel needs a topic (no wildcards)")
        elif self.type == "email" and not self.to:
            raise ValueError("an email channel needs an address in 'to'")
        return self


class RuleIn(BaseModel):
    """An alert rule (see ``mqtthub.alerts.rules`` for the conditions)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=ONE_LINE)]
    condition: Condition
    metric: Annotated[str | None, Field(pattern=f"^{METRIC_PATTERN.pattern}$")] = None
    threshold: float | None = None
    threshold_high: float | None = None
    for_seconds: Annotated[float, Field(ge=0, le=365 * 86400)] = 0.0
    window_average: bool = False
    device_id: Annotated[str | None, Field(pattern=_DEVICE_ID)] = None
    labels: dict[str, str] | None = None
    notify: Annotated[list[Channel], Field(max_length=10)] = []
    repeat_seconds: Annotated[float | None, Field(ge=60, le=30 * 86400)] = None
    enabled: bool = True

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 20 or any(len(k) > 64 for k in value)):
            raise ValueError("at most 20 labels, names up to 64 characters")
        return value

    @model_validator(mode="after")
    def _check_condition(self) -> RuleIn:
        condition = self.condition
        if condition in METRIC_CONDITIONS:
            if self.metric is None or self.threshold is None:
                raise ValueError(f"'{condition}' needs a metric and a threshold")
            if condition is Condition.OUTSIDE and (
                self.threshold_high is None or self.threshold_high < self.threshold
            ):
                raise ValueError("'outside' needs threshold <= threshold_high")
            if self.window_average and self.for_seconds <= 0:
                raise ValueError("a window average needs for_seconds > 0 (the window)")
        elif self.for_seconds <= 0:
            raise ValueError(f"'{condition}' needs for_seconds > 0")
        if condition is Condition.DEAD_LETTERS and self.threshold is None:
            raise ValueError("'dead_letters' needs a threshold (a count per for_seconds)")
        if self.device_id is not None and self.labels:
            raise ValueError("a rule applies to one device_id or to labels, not both")
        return self


class RulePatch(BaseModel):
    """Fields of a rule to change; omitted fields stay (the result is checked whole)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    condition: Condition | None = None
    metric: str | None = None
    threshold: float | None = None
    threshold_high: float | None = None
    for_seconds: float | None = None
    window_average: bool | None = None
    device_id: str | None = None
    labels: dict[str, str] | None = None
    notify: list[dict[str, Any]] | None = None  # checked as Channel after unmasking
    repeat_seconds: float | None = None
    enabled: bool | None = None


class RuleOut(RuleIn):
    """A stored rule; webhook secrets are shown as ``***``."""

    notify: list[dict[str, Any]] = []  # type: ignore[assignment]  # as stored, masked
    id: str
    created_at: str


class AlertOut(BaseModel):
    """An alert: one rule on one device, from firing to resolved."""

    id: str
    rule_id: str
    rule_name: str | None = None
    device_id: str
    state: str
    value: float | None
    started_at: str
    acknowledged_at: str | None
    resolved_at: str | None
    events: list[dict[str, Any]] | None = None


class Ack(BaseModel):
    """Who acknowledges, or why (optional)."""

    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, Field(max_length=500, pattern=ONE_LINE)] = "acknowledged"


def _row(rule: RuleIn, rule_id: str, created_at: float) -> dict[str, Any]:
    values = rule.model_dump()
    values["labels"] = json.dumps(rule.labels) if rule.labels else None
    values["notify"] = json.dumps([c.model_dump(exclude_none=True) for c in rule.notify])
    return {**values, "id": rule_id, "created_at": created_at}


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A stored rule with its labels and channels as JSON values (secrets and all)."""
    return {
        **row,
        "labels": json.loads(row["labels"]) if row["labels"] else None,
        "notify": json.loads(row["notify"]) if row["notify"] else [],
    }


def _out(row: dict[str, Any]) -> dict[str, Any]:
    rule = _decoded(row)
    for channel in rule["notify"]:
        if channel.get("secret"):
            channel["secret"] = MASK
        if channel.get("url"):
            channel["url"] = shown_url(channel["url"])
    return {**rule, "created_at": iso(row["created_at"])}


def _alert(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("started_at", "acknowledged_at", "resolved_at"):
        row[key] = iso(row[key]) if row.get(key) is not None else None
    for event in row.get("events") or []:
        event["at"] = iso(event["at"])
    return row


async def _reload(runtime: Any) -> None:
    if runtime.alerts is not None:
        await runtime.alerts.reload()


@router.post("/alert-rules", response_model=RuleOut, status_code=201, tags=["alerts"])
async def create_rule(rule: RuleIn, runtime: RuntimeDep) -> dict[str, Any]:
    """Create an alert rule; it applies from the next message on."""
    row = _row(rule, secrets.token_hex(8), time.time())
    await runtime.execute_write(db.create_rule, row)
    await _reload(runtime)
    return _out(row)


@router.get("/alert-rules", response_model=list[RuleOut], tags=["alerts"])
def get_rules(store: StoreDep) -> list[dict[str, Any]]:
    """Every alert rule."""
    return [_out(row) for row in store.read(db.list_rules)]


@router.get("/alert-rules/{rule_id}", response_model=RuleOut, tags=["alerts"])
def get_rule(rule_id: str, store: StoreDep) -> dict[str, Any]:
    """One alert rule."""
    row = store.read(db.get_rule, rule_id[:32])
    if row is None:
        raise HTTPException(404, "no such rule")
    return _out(row)


@router.patch("/alert-rules/{rule_id}", response_model=RuleOut, tags=["alerts"])
async def patch_rule(rule_id: str, patch: RulePatch, runtime: RuntimeDep) -> dict[str, Any]:
    """Change a rule. A webhook sent back as the API shows it (its URL shortened to
    ``scheme://host/…``, its secret as ``***``) keeps the stored URL and secret."""
    stored = await runtime.execute_write(db.get_rule, rule_id[:32])
    if stored is None:
        raise HTTPException(404, "no such rule")
    current = _decoded(stored)
    changes = patch.model_dump(exclude_unset=True)
    if "notify" in changes:
        kept = {shown_url(c["url"]): c for c in current["notify"] if c.get("url")}
        for channel in changes["notify"]:
            known = kept.get(str(channel.get("url")))
            if known is not None:
                channel["url"] = known["url"]
                if channel.get("secret") == MASK:
                    channel["secret"] = known.get("secret")
    merged = {
        key: value for key, value in {**current, **changes}.items() if key in RuleIn.model_fields
    }
    try:
        rule = RuleIn.model_validate(merged)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    row = _row(rule, stored["id"], stored["created_at"])
    await runtime.execute_write(db.update_rule, stored["id"], row)
    await _reload(runtime)
    return _out(row)


@router.delete("/alert-rules/{rule_id}", status_code=204, tags=["alerts"])
async def delete_rule(rule_id: str, runtime: RuntimeDep) -> Response:
    """Delete a rule; its open alerts resolve (and are kept, with their history)."""
    if not await runtime.execute_write(db.delete_rule, rule_id[:32], time.time()):
        raise HTTPException(404, "no such rule")
    await _reload(runtime)
    return Response(status_code=204)


@router.get("/alerts", response_model=list[AlertOut], tags=["alerts"])
def get_alerts(
    store: StoreDep,
    state: Literal["firing", "acknowledged", "resolved", "open"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Alerts, newest first; ``state=open`` is firing or acknowledged."""
    return [
        _alert(row) for row in store.read(db.list_alerts, state=state, limit=limit, offset=offset)
    ]


@router.get("/alerts/{alert_id}", response_model=AlertOut, tags=["alerts"])
def get_alert(alert_id: str, store: StoreDep) -> dict[str, Any]:
    """One alert with every transition (time, state, value, detail)."""
    row = store.read(db.get_alert, alert_id[:32])
    if row is None:
        raise HTTPException(404, "no such alert")
    return _alert(row)


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, tags=["alerts"])
async def acknowledge(alert_id: str, runtime: RuntimeDep, ack: Ack | None = None) -> dict[str, Any]:
    """Acknowledge a firing alert: no more repeated notifications; it still resolves."""
    note = (ack or Ack()).note
    row = await runtime.execute_write(db.acknowledge, alert_id[:32], time.time(), note)
    if row is None:
        raise HTTPException(404, "no such alert")
    runtime.events.publish("alert", {"id": row["id"], "state": row["state"]})
    return _alert(row)


@router.get("/notifications", tags=["alerts"])
def get_notifications(
    store: StoreDep,
    alert_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    """The notification delivery log, newest first: channel, target, state, attempts."""
    rows = store.read(db.list_notifications, alert_id=alert_id, limit=limit)
    return [{**row, "at": iso(row["at"])} for row in rows]
