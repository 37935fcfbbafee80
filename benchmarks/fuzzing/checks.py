"""The assertions of a fuzz run and its printed summary."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fuzzing.model import ANY, DEAD, STORED, TOO_LARGE

FINAL_CANARY_S = 30.0  # the last canary must be stored this soon
# Serve's resident memory may grow by this much over the run. What it legitimately holds
# beyond its start: up to MQTTHUB_QUEUE_SIZE (10,000) queued messages, almost all under
# 2 KiB (~20 MiB), plus a handful of the 1-3 MiB oversized ones the mix sends; one batch of
# up to 5,000 parsed messages, some with 10,000 readings each (~30 MiB of tuples); per
# device state for the ~300 devices of the mix; SQLite's page cache (2 MiB); and what
# glibc keeps after multi-megabyte payloads are freed. 128 MiB covers all of it with room
# for noise; a leak that grows with the message count (a cache keyed by hostile strings,
# a list of every payload) exceeds it within 200,000 messages.
RSS_GROWTH_LIMIT_MIB = 128
# Growth between the half-way point of the run and its end: nothing the mix does in its
# second half needs memory the first half did not already need.
RSS_LATE_GROWTH_LIMIT_MIB = 32
# MQTTHUB_QUEUE_SIZE (serve's default, which the fuzz keeps): serve stops reading from the
# broker when this many messages wait for the writer. Messages already read from the
# socket may still arrive after the pause: one socket read holds at most a few hundred.
QUEUE_SIZE = 10_000
QUEUE_SLACK = 1_000


@dataclass
class Check:
    """One assertion of the run and the figures behind it."""

    name: str
    ok: bool
    detail: str


def evaluate(results: dict[str, Any], args: argparse.Namespace) -> list[Check]:
    """Every check of the run, in the order of the summary."""
    checks = [Check("run completed", results.get("error") is None, results.get("error") or "")]
    checks += _liveness_checks(results)
    checks += _accounting_checks(results)
    checks += _kind_checks(results)
    checks += _resource_checks(results, args)
    return checks


def _liveness_checks(results: dict[str, Any]) -> list[Check]:
    canaries, health = results["canaries"], results["healthz"]
    final = canaries["final"]
    return [
        Check("serve alive at the end", results["alive"], results["died"] or "running"),
        Check(
            "ingestion never stalled",
            results.get("stall") is None,
            results.get("stall") or "the counters moved until everything was processed",
        ),
        Check(
            "every canary stored",
            canaries["stored"] == canaries["sent"] and canaries["sent"] > 0,
            f"{canaries['stored']} of {canaries['sent']} stored; "
            f"median {canaries['median_latency_s']} s, max {canaries['max_latency_s']} s "
            f"publish-to-stored; missing {canaries['missing']}",
        ),
        Check(
            f"final canary stored within {FINAL_CANARY_S:.0f} s",
            final["seconds"] is not None,
            f"{final['seconds']} s" if final["seconds"] is not None else "not stored",
        ),
        Check(
            "/healthz 200 at the end",
            health["status"] == 200,
            f"{health['status']} {json.dumps(health['body'])[:300]}",
        ),
    ]


def _accounting_checks(results: dict[str, Any]) -> list[Check]:
    stats, published, db = results["stats"], results["published"], results["database"]
    kinds = published.get("kinds", {})
    canaries = results["canaries"]["sent"]
    device = sum(k["device"] for k in kinds.values()) + canaries
    downlink = sum(k["downlink"] for k in kinds.values())
    droppable = sum(k["expect"].get(TOO_LARGE, 0) for k in kinds.values())
    received = stats.get("messages_received", 0)
    stored, dead = stats.get("messages_stored", 0), stats.get("dead_letters", 0)
    table_reasons: Counter[str] = Counter()
    for reasons in db["dead_letters_by_kind"].values():
        table_reasons.update(reasons)
    downlink_dead = 0
    for reasons in db["downlink_dead_letters_by_kind"].values():
        table_reasons.update(reasons)
        downlink_dead += sum(reasons.values())
    stats_reasons = Counter(stats.get("dead_letters_by_reason", {}))
    by_type = stats.get("by_type", {})
    type_lines, types_ok = [], True
    for kind in ("sensor", "status", "heartbeat"):
        low = sum(k["stored_by_type"].get(kind, 0) for k in kinds.values())
        low += canaries if kind == "sensor" else 0
        high = low + sum(k["any_by_type"].get(kind, 0) for k in kinds.values())
        actual = by_type.get(kind, 0)
        types_ok &= low <= actual <= high
        type_lines.append(f"{kind} {actual:,} in [{low:,}, {high:,}]")
    expected = device + downlink
    held = results.get("broker_held", {})
    return [
        Check(
            "the broker holds nothing for serve at the end (every QoS 1 message acknowledged)",
            held.get("held") == 0,
            f"{held.get('held')} messages held (Mosquitto's store {held.get('store')} - "
            f"retained {held.get('retained')})",
        ),
        Check(
            "received = what the broker accepted for serve's subscriptions",
            expected - droppable <= received <= expected,
            f"received {received:,}; expected {expected:,} ({device:,} on device topics incl. "
            f"{canaries} canaries, {downlink:,} on downlink topics), of which {droppable} "
            "multi-megabyte ones the broker may drop (serve's MQTT 5 Maximum Packet Size)",
        ),
        Check(
            "stored + dead letters = received on device topics",
            stored + dead - downlink_dead == received - downlink,
            f"stored {stored:,} + dead letters {dead:,} - {downlink_dead:,} dead letters on "
            f"downlink topics = {stored + dead - downlink_dead:,}; received on device topics "
            f"{received - downlink:,}; queue depth {stats.get('queue_depth')}",
        ),
        Check(
            "/api/stats dead letters = the dead_letters table, reason by reason",
            dead == db["dead_letters_table"] and stats_reasons == table_reasons,
            f"stats {dead:,}, table {db['dead_letters_table']:,}; differences "
            f"{dict((stats_reasons - table_reasons) + (table_reasons - stats_reasons))}",
        ),
        Check("stored messages by type", types_ok, "; ".join(type_lines)),
        Check(
            "no internal_error dead letters (every rejection has its specific reason)",
            not table_reasons.get("internal_error"),
            f"{table_reasons.get('internal_error', 0)} internal_error dead letters",
        ),
        Check(
            "every valid message stored",
            db["valid_seqs_missing"] == 0 and db["valid_seqs_expected"] > 0,
            f"{db['valid_seqs_expected'] - db['valid_seqs_missing']:,} of "
            f"{db['valid_seqs_expected']:,} seq values in readings; "
            f"missing (sample) {db['valid_seqs_missing_sample']}",
        ),
    ]


def _kind_checks(results: dict[str, Any]) -> list[Check]:
    """Per kind: each predicted reason at least as often as predicted, and as many dead
    letters as the predictions allow (messages on downlink topics are not predicted)."""
    kinds = results["published"].get("kinds", {})
    dead_by_kind = results["database"]["dead_letters_by_kind"]
    checks = []
    for name, entry in kinds.items():
        expect = Counter(entry["expect"])
        exact = {r: n for r, n in expect.items() if r not in (STORED, DEAD, ANY, TOO_LARGE)}
        observed = Counter(dead_by_kind.get(name, {}))
        low = sum(exact.values()) + expect[DEAD]
        high = low + expect[ANY] + expect[TOO_LARGE]
        total = sum(observed.values())
        short = {r: f"{observed[r]} < {n}" for r, n in exact.items() if observed[r] < n}
        checks.append(
            Check(
                f"kind {name}: outcomes as predicted",
                not short and low <= total <= high,
                f"dead letters {total:,} in [{low:,}, {high:,}]; predicted reasons "
                f"{dict(sorted(exact.items()))}; observed {dict(sorted(observed.items()))}"
                + (f"; too few: {short}" if short else ""),
            )
        )
    strays = {k: v for k, v in dead_by_kind.items() if k not in kinds}
    checks.append(Check("no dead letters from canaries or unknown topics", not strays, f"{strays}"))
    return checks


def _resource_checks(results: dict[str, Any], args: argparse.Namespace) -> list[Check]:
    rss, log_scan = results["rss_mib"], results["serve_log"]
    growth = rss["max"] - rss["start"]
    late = (rss["end"] or 0) - (rss["mid"] or rss["end"] or 0)
    return [
        Check(
            f"RSS growth under {RSS_GROWTH_LIMIT_MIB} MiB",
            growth < RSS_GROWTH_LIMIT_MIB,
            f"start {rss['start']} MiB, max {rss['max']} MiB, end {rss['end']} MiB: "
            f"+{growth:.1f} MiB",
        ),
        Check(
            f"queue depth at most MQTTHUB_QUEUE_SIZE ({QUEUE_SIZE:,}) + {QUEUE_SLACK:,}",
            (results.get("max_queue_depth") or 0) <= QUEUE_SIZE + QUEUE_SLACK,
            f"deepest queue seen in /api/stats (polled every 0.5 s): "
            f"{results.get('max_queue_depth'):,}",
        ),
        Check(
            f"RSS growth in the second half under {RSS_LATE_GROWTH_LIMIT_MIB} MiB",
            late < RSS_LATE_GROWTH_LIMIT_MIB,
            f"half-way {rss['mid']} MiB, end {rss['end']} MiB: {late:+.1f} MiB",
        ),
        Check(
            "no unhandled exception in serve's log",
            log_scan["unhandled"] == 0,
            f"{log_scan['unhandled']} (asyncio: task exception never retrieved, exception in "
            f"callback); lines by level {log_scan['levels']}",
        ),
        Check(
            "no traceback in serve's log (hostile input is rejected, not crashed on)",
            log_scan["tracebacks"] == 0,
            f"{log_scan['tracebacks']} tracebacks",
        ),
        Check(
            "serve exits with status 0 on SIGTERM",
            results.get("exit_status") == 0,
            f"exit status {results.get('exit_status')}",
        ),
        Check(
            f"finished within {args.time_limit:.0f} s",
            results["total_seconds"] <= args.time_limit,
            f"{results['total_seconds']} s in all; {results['seconds']} s from the first "
            "message to the last check",
        ),
    ]


def render(results: dict[str, Any], checks: list[Check]) -> str:
    """The human summary: per kind what was sent and what became of it, then the checks."""
    published = results["published"]
    lines = [
        f"mqtthub fuzz: seed {results['seed']}, {results['messages']:,} messages planned, "
        f"rate {results['rate']:,}/s, skip {results['skip'] or 'nothing'}",
        f"published in {published.get('seconds')} s; whole run {results['total_seconds']} s "
        f"(serve: {results.get('serve_source')})",
        "",
        f"{'kind':<10} {'published':>9} {'refused':>7} {'undeliv':>7} {'downlink':>8} "
        f"{'device':>7}  dead letters by reason (from the table)",
    ]
    dead = results["database"]["dead_letters_by_kind"]
    kinds = published.get("kinds", {})
    for name, entry in kinds.items():
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(dead.get(name, {}).items()))
        lines.append(
            f"{name:<10} {entry['published']:>9,} {entry['refused_by_broker']:>7,} "
            f"{entry['undelivered']:>7,} {entry['downlink']:>8,} {entry['device']:>7,}  "
            f"{reasons or '-'}"
        )
    total = sum(entry["published"] for entry in kinds.values())
    stats = results["stats"]
    lines += [
        f"{'total':<10} {total:>9,}  (+ {results['canaries']['sent']} canaries)",
        "",
        f"serve: received {stats.get('messages_received', 0):,}, stored "
        f"{stats.get('messages_stored', 0):,}, dead letters {stats.get('dead_letters', 0):,}, "
        f"batches {stats.get('batches', 0):,}",
        f"RSS MiB: start {results['rss_mib']['start']}, max {results['rss_mib']['max']}, "
        f"half-way {results['rss_mib']['mid']}, end {results['rss_mib']['end']}; "
        f"deepest queue {results.get('max_queue_depth')}",
        "",
    ]
    for check in checks:
        lines.append(f"[{'PASS' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
    excerpt = results["serve_log"]["excerpt"]
    if excerpt:
        lines += ["", "serve log around the first traceback:", *excerpt]
    failed = [check.name for check in checks if not check.ok]
    lines += ["", f"FAILED: {len(failed)} check(s): {'; '.join(failed)}" if failed else "OK"]
    return "\n".join(lines)
