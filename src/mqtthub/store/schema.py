"""SQLAlchemy Core tables. Times are epoch seconds (UTC) stored as double precision.

The Alembic migrations in ``migrations/versions`` create exactly these tables; a test
compares the two so they cannot drift apart.

Readings live in ``samples``: one row per device and time, with every metric of that time
in one JSON object. A sensor message of seven values is one row (not seven), which is what
makes ingest cheap; the per-metric shape is still there for SQL by hand as the view
``readings`` (created by migration 0006, which keeps its own SQL), and
``latest_readings`` and ``readings_1m`` stay per metric because their readers look up
one metric at a time.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

devices = Table(
    "devices",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("first_seen", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Column("last_message_type", String(16), nullable=False),
    Column("status_changed_at", Double, nullable=False),
    Column("status_reason", String(32), nullable=True),
    Column("heartbeat_interval", Double, nullable=True),
    Column("heartbeat_timeout", Double, nullable=True),
    Column("broker_endpoint", String(255), nullable=True),
    Column("name", String(128), nullable=True),
    Column("labels", Text, nullable=True),  # a JSON object of string labels
    Column("mqtt_password_hash", String(255), nullable=True),  # Mosquitto $7$ PBKDF2 format
    # When the event that decided ``status`` happened (device ts, else receive time).
    Column("status_ts", Double, nullable=True),
    Column("last_heartbeat", Double, nullable=True),
)

presence_events = Table(
    "presence_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=False),
    Column("at", Double, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_presence_events_device_at", "device_id", "at"),
)

connection_events = Table(
    "connection_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("event", String(16), nullable=False),
    Column("protocol", String(16), nullable=True),
    Column("reason_code", Integer, nullable=True),
    Column("reason", String(48), nullable=False),
    Column("lasted", Double, nullable=True),
    Column("detail", Text, nullable=False),
    Index("ix_connection_events_at", "at"),
)

#: The JSON text of a sample's values: ``TEXT`` on SQLite, ``json`` on PostgreSQL (kept as
#: written, so numbers come back exactly as stored; ``jsonb`` is slower to insert).
SAMPLE_METRICS = Text().with_variant(JSON(), "postgresql")

# One row per (device, time): {"temperature": 21.5, "humidity": 40.0, ...}. The primary key
# makes redeliveries idempotent and serves the readings queries (device, newest first).
samples = Table(
    "samples",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("ts", Double, primary_key=True),
    Column("metrics", SAMPLE_METRICS, nullable=False),
    sqlite_with_rowid=False,
)

# Per-minute aggregates of readings, so a week-long chart reads 10,080 rows, not 604,800.
readings_1m = Table(
    "readings_1m",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("minute", Double, primary_key=True),
    Column("min", Double, nullable=False),
    Column("max", Double, nullable=False),
    Column("sum", Double, nullable=False),
    Column("count", Integer, nullable=False),
)


def _rollup(name: str, time_column: str) -> Table:
    """A table of aggregates shaped like ``readings_1m``, one row per ``time_column``."""
    return Table(
        name,
        metadata,
        Column("device_id", String(64), primary_key=True),
        Column("metric", String(64), primary_key=True),
        Column(time_column, Double, primary_key=True),
        Column("min", Double, nullable=False),
        Column("max", Double, nullable=False),
        Column("sum", Double, nullable=False),
        Column("count", Integer, nullable=False),
    )


# Hourly and daily rollups of ``readings_1m`` for closed hours and days (store/rollups.py).
readings_1h = _rollup("readings_1h", "hour")
readings_1d = _rollup("readings_1d", "day")

# Where rollups and retention stand, one value per name: ``rolled:1h`` (hours before it
# are rolled up), ``rolled:1d``, ``kept:<resolution>`` (the oldest time retention keeps),
# ``stripped:<metric>`` (samples before it no longer hold that metric).
rollup_state = Table(
    "rollup_state",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("value", Double, nullable=False),
)

# Hours already rolled up that received late per-minute data since (filled by triggers on
# readings_1m created by migration 0010): their rollups are recomputed.
rollup_pending = Table(
    "rollup_pending",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("hour", Double, primary_key=True),
)

latest_readings = Table(
    "latest_readings",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("ts", Double, nullable=False),
    Column("value", Double, nullable=False),
)

# Units and display names of metrics, as firmware announces them (Home Assistant discovery,
# Tasmota's TempUnit, Homie's $unit, a mapping file); one row per device and metric.
metric_info = Table(
    "metric_info",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("unit", String(32), nullable=True),
    Column("name", String(128), nullable=True),
    Column("device_class", String(64), nullable=True),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", Double, nullable=False),
    Column("topic", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_size", Integer, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("device_id", String(64), nullable=True),
    Index("ix_dead_letters_received_at", "received_at"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("recipient", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=True),
    Column("delivered_at", Double, nullable=True),
    Column("seen_at", Double, nullable=True),
    Column("done_at", Double, nullable=True),
    Column("publishes", Integer, nullable=False),
    Index("ix_tasks_recipient_state", "recipient", "state"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("device_id", String(64), nullable=False),
    Column("command", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("deadline", Double, nullable=False),
    Column("replied_at", Double, nullable=True),
    Column("reply", Text, nullable=True),
    Index("ix_commands_device_created", "device_id", "created_at"),
)

# One row per running ``serve`` process (worker), keyed by its MQTT client id: its counters
# as JSON, refreshed every few seconds, so any worker can answer for all of them.
workers = Table(
    "workers",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("started_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("leader", Boolean, nullable=False),
    Column("stats", Text, nullable=False),
)

# Alert rules: a metric above/below/outside thresholds (for a time, or as a window
# average), a device offline, no data, or dead letters above a rate; for one device, the
# devices matching labels, or all. ``notify``: a JSON list of channels.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("condition", String(16), nullable=False),
    Column("metric", String(64), nullable=True),
    Column("threshold", Double, nullable=True),
    Column("threshold_high", Double, nullable=True),
    Column("for_seconds", Double, nullable=False),
    Column("window_average", Boolean, nullable=False),
    Column("device_id", String(64), nullable=True),
    Column("labels", Text, nullable=True),
    Column("notify", Text, nullable=False),
    Column("repeat_seconds", Double, nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
)

# One alert per (rule, device) episode: firing -> acknowledged -> resolved.
alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("rule_id", String(32), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Double, nullable=True),
    Column("started_at", Double, nullable=False),
    Column("acknowledged_at", Double, nullable=True),
    Column("resolved_at", Double, nullable=True),
    Column("last_notified_at", Double, nullable=True),
    Index("ix_alerts_state", "state"),
    Index("ix_alerts_rule_device", "rule_id", "device_id"),
)

# Every transition of an alert, with its time and the value that caused it.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(32), nullable=False),
    Column("at", Double, nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Double, nullable=True),
    Column("detail", Text, nullable=False),
    Index("ix_alert_events_alert", "alert_id", "at"),
)

# The delivery log of notifications (webhook, MQTT, e-mail), one row per notification.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(32), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("at", Double, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_notifications_at", "at"),
)

# One row per MQTT client id of ``serve`` (issue 16): the QoS 1 messages its last batches
# committed whose PUBACK may not have reached the broker (``unacked``: 10 bytes a message,
# packet id and fingerprint, see ingest/redelivery.py), written in each batch's
# transaction, and when that client id was last connected (``connected_at``), so a restart
# can tell a lost session from a fresh install.
mqtt_sessions = Table(
    "mqtt_sessions",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("unacked", LargeBinary, nullable=True),
    Column("unacked_at", Double, nullable=True),
    Column("connected_at", Double, nullable=True),
)
