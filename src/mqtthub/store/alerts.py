"""Alert rules, alerts and the notification log in SQL (blocking; writes go through the
single writer's ``execute_write``, reads through ``Store.read``)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, select, update

from mqtthub.alerts.rules import AlertState, Change, Condition, DeviceFacts, Rule
from mqtthub.store.database import lock_devices
from mqtthub.store.schema import alert_events, alert_rules, alerts, devices, notifications

_OPEN = alerts.c.state != str(AlertState.RESOLVED)


def create_rule(engine: Engine, row: dict[str, Any]) -> None:
    """Store a new rule (``row`` has every column; ``labels``/``notify`` as JSON text)."""
    with engine.begin() as connection:
        connection.execute(insert(alert_rules), [row])


def list_rules(engine: Engine) -> list[dict[str, Any]]:
    """Every rule, oldest first."""
    with engine.connect() as connection:
        query = select(alert_rules).order_by(alert_rules.c.created_at, alert_rules.c.id)
        return [dict(row._mapping) for row in connection.execute(query)]


def get_rule(engine: Engine, rule_id: str) -> dict[str, Any] | None:
    """One rule, or None."""
    with engine.connect() as connection:
        row = connection.execute(select(alert_rules).where(alert_rules.c.id == rule_id)).first()
        return dict(row._mapping) if row else None


def update_rule(engine: Engine, rule_id: str, values: dict[str, Any]) -> bool:
    """Change a rule's columns; False when it does not exist."""
    with engine.begin() as connection:
        result = connection.execute(
            update(alert_rules).where(alert_rules.c.id == rule_id).values(**values)
        )
        return bool(result.rowcount)


def delete_rule(engine: Engine, rule_id: str, now: float) -> bool:
    """Delete a rule; its open alerts resolve ("rule deleted"). False when unknown."""
    with engine.begin() as connection:
        gone = connection.execute(alert_rules.delete().where(alert_rules.c.id == rule_id))
        if not gone.rowcount:
            return False
        open_ids = [
            row.id
            for row in connection.execute(
                select(alerts.c.id).where(alerts.c.rule_id == rule_id, _OPEN)
            )
        ]
        for alert_id in open_ids:
            _transition(connection, alert_id, AlertState.RESOLVED, None, now, "rule deleted")
        return True


def rule_of(row: dict[str, Any]) -> Rule:
    """A stored rule as the evaluator's :class:`Rule`."""
    return Rule(
        id=row["id"],
        name=row["name"],
        condition=Condition(row["condition"]),
        metric=row["metric"],
        threshold=row["threshold"],
        threshold_high=row["threshold_high"],
        for_seconds=row["for_seconds"],
        window_average=row["window_average"],
        device_id=row["device_id"],
        labels=json.loads(row["labels"]) if row["labels"] else {},
    )


def open_alerts(engine: Engine) -> list[tuple[str, str]]:
    """(rule id, device id) of every alert not resolved."""
    with engine.connect() as connection:
        query = select(alerts.c.rule_id, alerts.c.device_id).where(_OPEN)
        return [(row.rule_id, row.device_id) for row in connection.execute(query)]


def device_labels(engine: Engine) -> dict[str, dict[str, str]]:
    """Each labelled device's labels."""
    with engine.connect() as connection:
        query = select(devices.c.id, devices.c.labels).where(devices.c.labels.is_not(None))
        labelled: dict[str, dict[str, str]] = {}
        for row in connection.execute(query):
            try:
                labels = json.loads(row.labels)
            except ValueError:
                continue  # not written by the API; a rule by label cannot match it
            if isinstance(labels, dict):
                labelled[row.id] = {str(k): str(v) for k, v in labels.items()}
        return labelled


def device_facts(engine: Engine) -> list[DeviceFacts]:
    """What the offline and no-data conditions need, for every device that ever spoke."""
    query = select(
        devices.c.id, devices.c.status, devices.c.status_changed_at, devices.c.last_seen
    ).where(devices.c.first_seen > 0)
    with engine.connect() as connection:
        return [
            DeviceFacts(row.id, row.status == "online", row.status_changed_at, row.last_seen)
            for row in connection.execute(query)
        ]


def apply_changes(engine: Engine, changes: Sequence[Change]) -> list[dict[str, Any]]:
    """Open and resolve alerts; return those that really changed (each to notify once).

    A rule and device have at most one open alert: a firing seen twice (two workers, or
    again after a restart) opens nothing new. The devices are locked for the transaction
    (PostgreSQL), so two workers cannot both open one.
    """
    changed: list[dict[str, Any]] = []
    with engine.begin() as connection:
        lock_devices(connection, sorted({c.device_id for c in changes}))
        for change in changes:
            current = connection.execute(
                select(alerts).where(
                    alerts.c.rule_id == change.rule_id,
                    alerts.c.device_id == change.device_id,
                    _OPEN,
                )
            ).first()
            if change.state is AlertState.FIRING and current is None:
                alert_id = secrets.token_hex(8)
                connection.execute(
                    insert(alerts),
                    [
                        {
                            "id": alert_id,
                            "rule_id": change.rule_id,
                            "device_id": change.device_id,
                            "state": str(AlertState.FIRING),
                            "value": change.value,
                            "started_at": change.at,
                            "last_notified_at": change.at,
                        }
                    ],
                )
                _event(
                    connection, alert_id, AlertState.FIRING, change.value, change.at, change.detail
                )
            elif change.state is AlertState.RESOLVED and current is not None:
                alert_id = current.id
                _transition(
                    connection,
                    alert_id,
                    AlertState.RESOLVED,
                    change.value,
                    change.at,
                    change.detail,
                )
            else:
                continue
            changed.append(
                {
                    "id": alert_id,
                    "rule_id": change.rule_id,
                    "device_id": change.device_id,
                    "state": str(change.state),
                    "value": change.value,
                    "at": change.at,
                    "detail": change.detail,
                }
            )
    return changed


def acknowledge(engine: Engine, alert_id: str, now: float, note: str) -> dict[str, Any] | None:
    """A user acknowledges a firing alert; the alert (as it is now), or None if unknown.

    Acknowledging stops repeated notifications; the alert still resolves by itself.
    """
    with engine.begin() as connection:
        row = connection.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            return None
        if row.state == str(AlertState.FIRING):
            _transition(connection, alert_id, AlertState.ACKNOWLEDGED, row.value, now, note)
        found = connection.execute(select(alerts).where(alerts.c.id == alert_id)).one()
        return dict(found._mapping)


def list_alerts(
    engine: Engine, *, state: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Alerts newest first, optionally in one state (``open``: firing or acknowledged)."""
    query = select(alerts, alert_rules.c.name.label("rule_name")).outerjoin(
        alert_rules, alert_rules.c.id == alerts.c.rule_id
    )
    if state == "open":
        query = query.where(_OPEN)
    elif state is not None:
        query = query.where(alerts.c.state == state)
    query = query.order_by(alerts.c.started_at.desc(), alerts.c.id).limit(limit).offset(offset)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def get_alert(engine: Engine, alert_id: str) -> dict[str, Any] | None:
    """One alert with its transitions (oldest first), or None."""
    with engine.connect() as connection:
        row = connection.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            return None
        events = connection.execute(
            select(
                alert_events.c.at, alert_events.c.state, alert_events.c.value, alert_events.c.detail
            )
            .where(alert_events.c.alert_id == alert_id)
            .order_by(alert_events.c.at, alert_events.c.id)
        )
        return {**row._mapping, "events": [dict(e._mapping) for e in events]}


def due_repeats(engine: Engine, now: float) -> list[dict[str, Any]]:
    """Firing (not acknowledged) alerts whose rule repeats and whose last notification is
    at least ``repeat_seconds`` old; each marked as notified now."""
    query = (
        select(alerts, alert_rules.c.repeat_seconds)
        .join(alert_rules, alert_rules.c.id == alerts.c.rule_id)
        .where(
            alerts.c.state == str(AlertState.FIRING),
            alert_rules.c.repeat_seconds.is_not(None),
            alerts.c.last_notified_at + alert_rules.c.repeat_seconds <= now,
        )
    )
    with engine.begin() as connection:
        due = [dict(row._mapping) for row in connection.execute(query)]
        for alert in due:
            connection.execute(
                update(alerts).where(alerts.c.id == alert["id"]).values(last_notified_at=now)
            )
        return due


def log_notification(engine: Engine, row: dict[str, Any]) -> int:
    """Start a delivery log entry; its id."""
    with engine.begin() as connection:
        result = connection.execute(insert(notifications).returning(notifications.c.id), [row])
        return int(result.scalar_one())


def finish_notification(
    engine: Engine, notification_id: int, *, state: str, attempts: int, detail: str, at: float
) -> None:
    """Record how a delivery ended (or how its latest attempt went)."""
    with engine.begin() as connection:
        connection.execute(
            update(notifications)
            .where(notifications.c.id == notification_id)
            .values(state=state, attempts=attempts, detail=detail, at=at)
        )


def list_notifications(engine: Engine, *, alert_id: str | None, limit: int) -> list[dict[str, Any]]:
    """The delivery log, newest first."""
    query = select(notifications).order_by(notifications.c.id.desc()).limit(limit)
    if alert_id is not None:
        query = query.where(notifications.c.alert_id == alert_id)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def _transition(
    connection: Connection,
    alert_id: str,
    state: AlertState,
    value: float | None,
    at: float,
    detail: str,
) -> None:
    values: dict[str, Any] = {"state": str(state)}
    if state is AlertState.RESOLVED:
        values["resolved_at"] = at
        if value is not None:
            values["value"] = value
    elif state is AlertState.ACKNOWLEDGED:
        values["acknowledged_at"] = at
    connection.execute(update(alerts).where(and_(alerts.c.id == alert_id, _OPEN)).values(**values))
    _event(connection, alert_id, state, value, at, detail)


def _event(
    connection: Connection,
    alert_id: str,
    state: AlertState,
    value: float | None,
    at: float,
    detail: str,
) -> None:
    connection.execute(
        insert(alert_events),
        [{"alert_id": alert_id, "at": at, "state": str(state), "value": value, "detail": detail}],
    )
