"""The pure logic that recognises a redelivery without DUP (ingest/redelivery.py, issue 16)."""

from __future__ import annotations

import zlib

from mqtthub.ingest.redelivery import (
    MAX_PAIRS,
    MIN_PAIRS,
    RedeliveryFilter,
    UnackedWindow,
    batch_pairs,
    decode,
    encode,
    fingerprint,
)


def pair(packet_id: int, topic: str = "devices/a/sensor", payload: bytes = b"") -> tuple[int, int]:
    return packet_id, fingerprint(topic, payload or b'{"n": %d}' % packet_id)


def test_fingerprint_is_stable_and_tells_topic_from_payload() -> None:
    assert fingerprint("devices/a/sensor", b"1") == fingerprint("devices/a/sensor", b"1")
    assert fingerprint("devices/a/sensor", b"1") != fingerprint("devices/a/sensor", b"2")
    assert fingerprint("devices/a/sensor", b"1") != fingerprint("devices/b/sensor", b"1")
    # CRC-32s, not Python's hash(): the same across processes and runs.
    assert fingerprint("t", b"p") == zlib.crc32(b"t") << 32 | zlib.crc32(b"p")
    assert 0 <= fingerprint("\ufffd/\udcff", b"\x00" * 100) < 2**64


def test_encode_decode_round_trip_and_truncated_tail() -> None:
    pairs = [(1, 0), (65535, 2**64 - 1), pair(7)]
    data = encode(pairs)
    assert len(data) == 30
    assert decode(data) == pairs
    assert decode(data + b"\x01\x02") == pairs  # a torn tail is ignored
    assert decode(None) == []
    assert decode(b"") == []


def test_filter_takes_redeliveries_in_order_then_stops_at_new_traffic() -> None:
    recorded = [pair(1), pair(2), pair(3)]
    check = RedeliveryFilter(recorded)
    assert check.active
    assert check.check(*pair(1))
    assert check.check(*pair(2))
    assert not check.check(*pair(4))  # new traffic: stored
    assert not check.active
    assert not check.check(*pair(3))  # after the stop, nothing is taken any more
    assert check.matched == 2


def test_filter_skips_acknowledged_ones_and_stops_when_all_matched() -> None:
    """Pairs whose PUBACK did arrive are not re-sent: the filter takes what comes."""
    check = RedeliveryFilter([pair(1), pair(2), pair(3)])
    assert check.check(*pair(2))
    assert check.check(*pair(3))
    assert check.active  # 1 may still come
    assert check.check(*pair(1))
    assert not check.active
    assert check.matched == 3


def test_reused_packet_id_with_other_content_is_new() -> None:
    """The broker may reuse a packet id whose PUBACK went out: the fingerprint differs."""
    check = RedeliveryFilter([pair(5, payload=b'{"t": 1}')])
    assert not check.check(*pair(5, payload=b'{"t": 2}'))
    assert not check.active


def test_same_content_on_another_packet_id_is_new() -> None:
    check = RedeliveryFilter([pair(5, payload=b"x")])
    assert not check.check(*pair(6, payload=b"x"))


def test_qos0_message_ends_the_check() -> None:
    check = RedeliveryFilter([pair(1)])
    assert not check.check(None, None)
    assert not check.active


def test_identical_messages_on_one_packet_id_match_once_each() -> None:
    recorded = [pair(9, payload=b"a"), pair(9, payload=b"b")]
    check = RedeliveryFilter(recorded)
    assert check.check(*pair(9, payload=b"b"))
    assert not check.check(*pair(9, payload=b"b"))  # taken already: new traffic


def test_empty_filter_is_inactive() -> None:
    check = RedeliveryFilter([])
    assert not check.active
    assert not check.check(*pair(1))


def test_window_keeps_open_and_previous_group() -> None:
    window = UnackedWindow()
    big = [pair(n % 65535 + 1) for n in range(3 * MIN_PAIRS)]
    first, second, third = big[:MIN_PAIRS], big[MIN_PAIRS : 2 * MIN_PAIRS], big[2 * MIN_PAIRS :]
    window.committed(encode(first))
    window.acknowledged()
    window.committed(encode(second))
    assert window.pairs() == first + second
    assert decode(window.with_batch(encode(third))) == first + second + third
    assert window.pairs() == first + second  # with_batch does not change it
    window.acknowledged()
    window.committed(encode(third))
    assert window.pairs() == second + third  # the group before the previous one is gone
    window.acknowledged()
    assert window.pairs() == third


def test_window_keeps_at_least_min_pairs_of_small_batches() -> None:
    window = UnackedWindow()
    for n in range(1, MIN_PAIRS + 50):
        window.committed(encode([pair(n)]))
        window.acknowledged()
    pairs = window.pairs()
    assert len(pairs) == MIN_PAIRS
    assert pairs[-1] == pair(MIN_PAIRS + 49)
    assert pairs[0] == pair(50)


def test_window_groups_batches_until_acknowledged() -> None:
    """Batches written one at a time (a rejected batch) are acknowledged together: the
    whole open group stays in the window however large."""
    window = UnackedWindow()
    batches = [[pair(n * 1000 + k + 1) for k in range(1000)] for n in range(3)]
    for batch in batches:
        window.committed(encode(batch))
    assert window.pairs() == batches[0] + batches[1] + batches[2]
    window.acknowledged()
    assert len(window.pairs()) == 3000


def test_window_starts_from_the_recorded_pairs_and_is_bounded() -> None:
    recorded = [pair(n % 65535 + 1) for n in range(MAX_PAIRS + 10)]
    window = UnackedWindow(encode(recorded) + b"\x00\x01")  # a torn tail is ignored
    assert window.pairs() == recorded[-MAX_PAIRS:]
    window.committed(encode([pair(1)]))
    assert len(window.pairs()) == MAX_PAIRS
    assert len(decode(window.with_batch(encode([pair(2)])))) == MAX_PAIRS
    assert UnackedWindow(None).pairs() == []


def test_writer_pairs_match_the_transport_fingerprint() -> None:
    """The pairs the writer records (fingerprint inlined) equal the transport's, for every
    kind of ack."""
    from mqtthub.pipeline import RawMessage
    from mqtthub.transport.connection import Ack

    topics = ["devices/a/sensor", "devices/\u00e9\u6f22/sensor", "devices/\ufffd/heartbeat"]
    messages = [
        RawMessage(topics[n % 3], b"%d" % n, 1, False, 0.0, Ack(None, n + 1))  # type: ignore[arg-type]
        for n in range(6)
    ]
    messages.append(RawMessage(topics[0], b"qos0", 0, False, 0.0, None))
    messages.append(RawMessage(topics[1], b"fake", 1, False, 0.0, 77))  # a test transport's ack
    expected = [(n + 1, fingerprint(topics[n % 3], b"%d" % n)) for n in range(6)]
    pairs = [*expected, (77, fingerprint(topics[1], b"fake"))]
    assert batch_pairs(messages) == encode(pairs)
