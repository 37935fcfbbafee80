"""The mosquitto#2662 trap, measured: a shared-subscription member with a persistent session
that goes away keeps receiving its share of the group's messages, into its session queue.

Usage::

    .venv/bin/python benchmarks/shared_sessions.py [--messages 2000] [--protocol 5|4]
        [--json out.json]
    .venv/bin/python benchmarks/shared_sessions.py --mqtthub [--rate 4000] [--seconds 8]

Raw mode starts a private Mosquitto on a free 127.0.0.1 port for every scenario (never
1883) and two members, ``share-a`` and ``share-b``, of ``$share/g/bench/+/sensor`` with
persistent sessions (MQTT 5: clean start 0, session expiry 3600 s, as ``mqtthub serve``
connects; ``--protocol 4``: MQTT 3.1.1 clean session 0), QoS 1. ``share-b`` is a child
process. Each scenario:

1. publishes 200 QoS 1 messages while both are connected (how the broker splits them);
2. takes ``share-b`` away: ``kill`` (SIGKILL, no DISCONNECT), ``disconnect`` (a normal
   DISCONNECT, the session stays, as a cleanly stopped ``serve`` leaves it), or
   ``expire`` (MQTT 5 DISCONNECT with Session Expiry Interval 0: the session ends);
3. publishes ``--messages`` QoS 1 messages and counts what ``share-a`` receives;
4. reconnects ``share-b`` with its client id (clean start 0) and counts what it collects.

with Mosquitto's default per-client queue (``max_queued_messages`` 1000) and without a
limit (``max_queued_messages 0``). Every message carries a unique number, so the tally
tells delivered, lost and duplicated apart.

``--mqtthub`` checks the service itself: ``serve --workers 2`` on a fresh PostgreSQL
database with persistent sessions (session expiry 3600 s), a steady QoS 1 stream over 100
devices (``publishers.py paced``: every message has its own ``ts``), worker 1 killed with
SIGKILL (its pid from ``/api/stats``) a quarter of the way in, with Mosquitto's default
queue limit (1000) and without a limit (the private broker allows unlimited in-flight
messages, as ``benchmarks/run.py``'s does); reports when the restarted worker showed up
in ``/api/stats`` (it stores its row every 2 s), when everything was stored, and what is
missing. Then a plain ``serve`` in a share group with a raw member is stopped cleanly
(SIGTERM) before a 2,000-message burst, and a raw client with serve's client id collects
what its session kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from mqtt_clients import (  # noqa: E402  (benchmarks/ is not a package)
    _remaining_length,
    run_publisher,
)
from mqtt_clients import _string as _mqtt_string  # noqa: E402
from suite.procs import HOST, MOSQUITTO, free_port  # noqa: E402

GROUP_FILTER = "$share/g/bench/+/sensor"
SESSION_EXPIRY = 3600
IDLE_S = 2.0  # no message for this long: a member has everything it will get
WARMUP = 200
STILL_S = 30.0  # --mqtthub: nothing stored for this long means nothing more will be


# ----------------------------------------------------------------------------- packets


def _string(value: str) -> bytes:
    return _mqtt_string(value.encode())


def _packet(header: int, body: bytes) -> bytes:
    return bytes([header]) + _remaining_length(len(body)) + body


def connect_packet(client_id: str, protocol: int, *, clean: bool) -> bytes:
    """CONNECT with a persistent session (MQTT 5: Session Expiry Interval) unless ``clean``."""
    flags = 0x02 if clean else 0x00
    body = _string("MQTT") + bytes([protocol, flags]) + struct.pack("!H", 60)
    if protocol == 5:
        props = b"" if clean else b"\x11" + struct.pack("!I", SESSION_EXPIRY)
        props += b"\x21" + struct.pack("!H", 65535)  # Receive Maximum, as serve announces
        body += _remaining_length(len(props)) + props
    return _packet(0x10, body + _string(client_id))


def subscribe_packet(topic: str, protocol: int) -> bytes:
    body = struct.pack("!H", 1) + (b"\x00" if protocol == 5 else b"") + _string(topic) + b"\x01"
    return _packet(0x82, body)


def disconnect_packet(protocol: int, *, end_session: bool) -> bytes:
    """DISCONNECT; MQTT 5 with ``end_session``: reason 0 and Session Expiry Interval 0."""
    if protocol == 5 and end_session:
        props = b"\x11" + struct.pack("!I", 0)
        return _packet(0xE0, b"\x00" + _remaining_length(len(props)) + props)
    return b"\xe0\x00"


class Member:
    """One member of the share group on a raw socket: acknowledges and records every message."""

    def __init__(
        self,
        port: int,
        client_id: str,
        protocol: int,
        *,
        subscribe: bool,
        topic: str = GROUP_FILTER,
    ) -> None:
        self.protocol, self.seqs = protocol, []
        self.last_at = time.monotonic()
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.sendall(connect_packet(client_id, protocol, clean=False))
        connack = self._read_packet()
        if connack is None or connack[0] >> 4 != 2:
            raise ConnectionError(f"{client_id}: no CONNACK ({connack!r})")
        self.session_present = bool(connack[1][0] & 1)
        if connack[1][1] != 0:
            raise ConnectionError(f"{client_id}: CONNACK reason {connack[1][1]}")
        if subscribe:
            self.sock.sendall(subscribe_packet(topic, protocol))
            while (packet := self._read_packet()) is not None and packet[0] >> 4 != 9:
                self._handle(*packet)
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._run, daemon=True)
        self.reader.start()

    def _read_exactly(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _read_packet(self) -> tuple[int, bytes] | None:
        head = self._read_exactly(1)
        if head is None:
            return None
        length, shift = 0, 0
        while True:
            byte = self._read_exactly(1)
            if byte is None:
                return None
            length += (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        body = self._read_exactly(length) if length else b""
        return None if body is None else (head[0], body)

    def _handle(self, header: int, body: bytes) -> None:
        if header >> 4 != 3:
            return
        qos = (header >> 1) & 3
        topic_len = struct.unpack_from("!H", body)[0]
        offset = 2 + topic_len
        packet_id = b""
        if qos:
            packet_id, offset = body[offset : offset + 2], offset + 2
        if self.protocol == 5:
            props, shift = 0, 0
            while True:
                byte = body[offset]
                offset += 1
                props += (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            offset += props
        self.seqs.append(int(orjson.loads(body[offset:])["uptime"]) - 86400)
        self.last_at = time.monotonic()
        if qos:
            self.sock.sendall(b"\x40\x02" + packet_id)

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            while (packet := self._read_packet()) is not None:
                self._handle(*packet)

    def wait_idle(self, idle: float = IDLE_S, timeout: float = 60.0) -> None:
        """Return once no message arrived for ``idle`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_at < idle and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self, *, end_session: bool = False) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(disconnect_packet(self.protocol, end_session=end_session))
        self.sock.close()


def member_child(port: int, client_id: str, protocol: int, end_session: bool) -> None:
    """``share-b`` as a child process: subscribes, says ``ready``, prints the count on a
    line of stdin and disconnects (``end_session``) when stdin says ``disconnect``."""
    member = Member(port, client_id, protocol, subscribe=True)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(len(member.seqs), flush=True)
        elif line.strip() == "disconnect":
            member.close(end_session=end_session)
            print("gone", flush=True)
            time.sleep(3600)


# ------------------------------------------------------------------------------ broker


class Mosquitto:
    """A private Mosquitto with every log line kept (drops are logged as notices)."""

    def __init__(self, workdir: Path, max_queued: int | None) -> None:
        self.port = free_port()
        conf = workdir / f"mosquitto-{self.port}.conf"
        limit = "" if max_queued is None else f"max_queued_messages {max_queued}\n"
        conf.write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\n"
            f"{limit}log_dest stderr\nlog_type all\n"
        )
        self.log_path = workdir / f"mosquitto-{self.port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=self._log
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)

    def log_lines(self, needle: str) -> list[str]:
        self._log.flush()
        return [line for line in self.log_path.read_text().splitlines() if needle in line]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()


# ---------------------------------------------------------------------------- scenario


def _ask(child: subprocess.Popen[str], line: str) -> str:
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write(line + "\n")
    child.stdin.flush()
    ready, _, _ = select.select([child.stdout], [], [], 10)
    if not ready:
        raise TimeoutError(f"share-b did not answer {line!r}")
    return child.stdout.readline().strip()


def scenario(workdir: Path, way: str, max_queued: int | None, count: int, protocol: int) -> dict:
    """One run of the trap (see the module docstring); returns the tally."""
    broker = Mosquitto(workdir, max_queued)
    child = None
    try:
        a = Member(broker.port, "share-a", protocol, subscribe=True)
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", str(broker.port), str(protocol)]
            + (["--end-session"] if way == "expire" else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("share-b did not subscribe")
        # 1. both connected: seqs 0 .. WARMUP-1
        run_publisher(broker.port, 1, WARMUP, "pub-warmup")
        a.wait_idle(1.0)
        warm_a, warm_b = len(a.seqs), int(_ask(child, "count"))
        # 2. share-b goes away
        if way == "kill":
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        else:
            _ask(child, "disconnect")
        time.sleep(0.5)
        # 3. the burst while it is away: seqs 0 .. count-1 again, so a fresh tally
        a.seqs.clear()
        started = time.monotonic()
        run_publisher(broker.port, 1, count, "pub-burst")
        published_s = time.monotonic() - started
        a.wait_idle()
        while_away = sorted(a.seqs)
        # 4. share-b comes back with its client id
        b = Member(broker.port, "share-b", protocol, subscribe=False)
        b.wait_idle()
        a.wait_idle(0.5)
        after_a = a.seqs[len(while_away) :]
        collected = sorted(b.seqs)
        dropped_notices = broker.log_lines("Outgoing messages are being dropped")
        a.close()
        b.close(end_session=True)
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        broker.stop()
    every = set(range(count))
    got = [*while_away, *after_a, *collected]
    return {
        "way": way,
        "max_queued_messages": "default (1000)" if max_queued is None else max_queued,
        "protocol": "MQTT 5" if protocol == 5 else "MQTT 3.1.1",
        "warmup_split": [warm_a, warm_b],
        "published": count,
        "publish_seconds": round(published_s, 3),
        "survivor_received_while_away": len(while_away),
        "returning_session_present": b.session_present,
        "returning_member_collected": len(collected),
        "survivor_received_after_return": len(after_a),
        "lost": len(every - set(got)),
        "duplicates": len(got) - len(set(got)),
        "broker_drop_notices": len(dropped_notices),
        "broker_drop_notice": dropped_notices[0].split(": ", 1)[-1] if dropped_notices else None,
    }


def run_raw(count: int, protocol: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="mqtthub-shared-") as tmp:
        ways = ("kill", "disconnect", "expire") if protocol == 5 else ("kill", "disconnect")
        for way in ways:
            for max_queued in (None, 0):
                result = scenario(Path(tmp), way, max_queued, count, protocol)
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
    return results


# ------------------------------------------------------------------------------ mqtthub


def mqtthub_scenario(workdir: Path, max_queued: int, rate: float, seconds: float) -> dict:
    """``serve --workers 2`` with persistent sessions, a steady QoS 1 stream of ``rate``
    messages/s for ``seconds``; worker 1 killed with SIGKILL a quarter of the way in."""
    count = round(rate * seconds)
    from suite import publishers
    from suite.databases import provision
    from suite.procs import Broker, Serve, stop_process, wait_until

    broker = Broker(workdir, max_queued=max_queued)
    broker.start()
    try:
        with provision("postgresql", workdir) as database:
            env = {"MQTTHUB_WORKERS": "2", "MQTTHUB_SESSION_EXPIRY": str(SESSION_EXPIRY)}
            serve = Serve(broker, workdir, database.url, extra_env=env)
            publisher = None

            def listed() -> list[dict[str, Any]]:
                return list(serve.stats().get("workers") or [])

            def stored() -> int:
                return int(database.scalar("SELECT count(*) FROM samples"))

            try:
                serve.start()
                wait_until(lambda: len(listed()) == 2, 30, "2 workers")
                victim = next(w for w in listed() if w["id"].endswith("-w1"))
                publisher = publishers.launch("paced", broker.port, rate, seconds, 0, "pub")
                wait_until(lambda: stored() > count // 4, 60, "part of the stream stored", 0.02)
                os.kill(victim["pid"], signal.SIGKILL)
                killed_at, at_kill = time.monotonic(), stored()
                back = None
                while back is None and time.monotonic() - killed_at < 60:
                    if any(w["id"] == victim["id"] and w["pid"] != victim["pid"] for w in listed()):
                        back = time.monotonic() - killed_at
                    time.sleep(0.1)
                publisher.wait(seconds + 60)
                # The restarted worker may take seconds to start and then works through a
                # redelivered backlog: wait for everything, or until nothing changed for 30 s.
                last, still_since = -1, time.monotonic()
                while (now := stored()) < count and time.monotonic() - still_since < STILL_S:
                    if now != last:
                        last, still_since = now, time.monotonic()
                    time.sleep(0.25)
                all_stored_after = time.monotonic() - killed_at if now >= count else None
                final = stored()
            finally:
                stop_process(publisher)
                serve.stop()
    finally:
        broker.stop()
    return {
        "max_queued_messages": max_queued,
        "rate": rate,
        "published": count,
        "stored_at_kill": at_kill,
        "worker_back_after_s": None if back is None else round(back, 1),
        "stored": final,
        "missing": count - final,
        "all_stored_after_kill_s": None if all_stored_after is None else round(all_stored_after, 1),
    }


def serve_stop_scenario(count: int) -> dict:
    """A cleanly stopped ``serve`` (SIGTERM, exit 0) in a share group with a raw member:
    does its session stay and keep taking its share while it is gone?"""
    from suite.databases import provision
    from suite.procs import Broker, Serve

    with tempfile.TemporaryDirectory(prefix="mqtthub-shared-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir)  # unlimited queues: nothing dropped, everything counted
        broker.start()
        try:
            with provision("postgresql", workdir) as database:
                env = {"MQTTHUB_SHARE_GROUP": "g", "MQTTHUB_SESSION_EXPIRY": str(SESSION_EXPIRY)}
                serve = Serve(broker, workdir, database.url, extra_env=env)
                serve.start()
                client_id = f"bench-serve-{serve.http_port}"
                topic = "$share/g/bench/+/+"  # serve's filter: one shared subscription
                broker.wait_for_subscription(client_id, topic)
                a = Member(broker.port, "share-a", 5, subscribe=True, topic=topic)
                serve.stop()
                time.sleep(0.5)
                run_publisher(broker.port, 1, count, "pub-burst")
                a.wait_idle()
                back = Member(broker.port, client_id, 5, subscribe=False)
                back.wait_idle()
                a.close(end_session=True)
                back.close(end_session=True)
        finally:
            broker.stop()
    return {
        "way": "serve stopped with SIGTERM",
        "serve_exit_status": serve.proc.returncode if serve.proc else None,
        "published": count,
        "survivor_received_while_away": len(a.seqs),
        "serve_session_present": back.session_present,
        "serve_session_collected": len(back.seqs),
    }


def run_mqtthub(rate: float, seconds: float) -> list[dict]:
    """:func:`mqtthub_scenario` with Mosquitto's default queue limit and without a limit."""
    results = []
    with tempfile.TemporaryDirectory(prefix="mqtthub-shared-") as tmp:
        for max_queued in (1000, 0):
            workdir = Path(tmp) / f"q{max_queued}"
            workdir.mkdir()
            result = mqtthub_scenario(workdir, max_queued, rate, seconds)
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--protocol", type=int, choices=(4, 5), default=5)
    parser.add_argument("--mqtthub", action="store_true", help="check serve --workers 2")
    parser.add_argument("--rate", type=float, default=4000.0, help="--mqtthub: msg/s")
    parser.add_argument("--seconds", type=float, default=8.0, help="--mqtthub: stream length")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--end-session", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        member_child(int(args.child[0]), "share-b", int(args.child[1]), args.end_session)
        return 0
    if args.mqtthub:
        results = [*run_mqtthub(args.rate, args.seconds), serve_stop_scenario(2_000)]
    else:
        results = run_raw(args.messages or 2_000, args.protocol)
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
