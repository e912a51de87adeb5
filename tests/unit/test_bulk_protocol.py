"""The lean bulk connection's framing, fed bytes by hand: deliveries and control messages."""

from __future__ import annotations

import pytest

from streams import bulk

SUBJECT = b"jz.games.r1.selfplay.game.finished"
HEADER = b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n"


class Wire:
    """The transport side: records what the protocol writes, in order with what it hands."""

    def __init__(self, log: list):
        self.log = log
        self.closed = False

    def write(self, data: bytes) -> None:
        self.log.append(("write", bytes(data)))

    def close(self) -> None:
        self.closed = True


def reply(seq: int, dseq: int, pending: int, ns: int = 1_700_000_000_123_456_789) -> bytes:
    return b"$JS.ACK.GAMES.c1.1.%d.%d.%d.%d" % (seq, dseq, ns, pending)


def hmsg(seq: int, dseq: int, pending: int, body: bytes) -> bytes:
    return (
        b"HMSG %s 1 %s %d %d\r\n" % (SUBJECT, reply(seq, dseq, pending), len(HEADER),
                                     len(HEADER) + len(body))
        + HEADER + body + b"\r\n"
    )


def msg(seq: int, dseq: int, pending: int, body: bytes) -> bytes:
    return b"MSG %s 1 %s %d\r\n%s\r\n" % (SUBJECT, reply(seq, dseq, pending), len(body), body)


def status(text: bytes, reply_to: bytes = b"") -> bytes:
    header = b"NATS/1.0 " + text + b"\r\n\r\n"
    middle = b" " + reply_to if reply_to else b""
    return b"HMSG _INBOX.x 1%s %d %d\r\n%s\r\n" % (middle, len(header), len(header), header)


def deliveries(end: int = 10**9) -> tuple[bulk._Deliveries, list]:
    log: list = []
    proto = bulk._Deliveries(lambda seq, subj, ts, data: log.append((seq, subj, ts, data)), end)
    proto.connection_made(Wire(log))
    return proto, log


STREAM_BYTES = b"".join([
    hmsg(10, 1, 4, b"first"),
    b"PING\r\n",
    msg(12, 2, 3, b"second, without headers"),
    status(b"100 FlowControl Request", b"$JS.FC.GAMES.x.1"),
    hmsg(13, 3, 2, b"\r\nthird has CRLF\r\n inside"),
    status(b"100 Idle Heartbeat\r\nNats-Consumer-Stalled: $JS.FC.GAMES.y.2"),
    hmsg(15, 4, 1, b"x" * 3000),
])


async def test_any_split_of_the_bytes_gives_the_same_deliveries_and_answers():
    whole, expected = deliveries()
    whole.data_received(STREAM_BYTES)
    assert [e[0] for e in expected if isinstance(e[0], int)] == [10, 12, 13, 15]
    assert ("write", b"PONG\r\n") in expected
    for cut in range(1, len(STREAM_BYTES)):
        proto, got = deliveries()
        proto.data_received(STREAM_BYTES[:cut])
        proto.data_received(STREAM_BYTES[cut:])
        assert got == expected, cut
    bytewise, got = deliveries()
    for i in range(len(STREAM_BYTES)):
        bytewise.data_received(STREAM_BYTES[i : i + 1])
    assert got == expected


async def test_flow_control_is_answered_after_the_deliveries_before_it():
    proto, log = deliveries()
    proto.data_received(STREAM_BYTES)
    kinds = [e[0] if isinstance(e[0], int) else e[1] for e in log]
    assert kinds == [10, b"PONG\r\n", 12, b"PUB $JS.FC.GAMES.x.1 0\r\n\r\n", 13,
                     b"PUB $JS.FC.GAMES.y.2 0\r\n\r\n", 15]
    seq, subject, ts, data = log[0]
    assert subject == SUBJECT.decode() and data == b"first"
    assert ts == pytest.approx(1_700_000_000.123456789, abs=1e-6)


async def test_a_skipped_delivery_interrupts_with_the_last_handled_sequence():
    proto, log = deliveries()
    proto.data_received(hmsg(10, 1, 5, b"a") + hmsg(11, 2, 4, b"b") + hmsg(13, 4, 2, b"d"))
    assert [e[0] for e in log] == [10, 11]
    with pytest.raises(bulk.Interrupted) as info:
        proto.finished.result()
    assert info.value.last == 11


async def test_a_handle_error_is_carried_unchanged_and_stops_the_deliveries():
    boom = ValueError("fold failed")
    handled = []

    def handle(seq, subject, ts, data):
        handled.append(seq)
        if seq == 2:
            raise boom

    proto = bulk._Deliveries(handle, 10**9)
    proto.connection_made(Wire([]))
    proto.data_received(b"".join(hmsg(s, s, 9 - s, b"x") for s in (1, 2, 3)))
    assert handled == [1, 2]
    with pytest.raises(bulk.HandleFailed) as info:
        proto.finished.result()
    assert info.value.error is boom


async def test_stops_at_the_end_sequence_or_when_nothing_is_pending():
    proto, log = deliveries(end=11)
    proto.data_received(hmsg(10, 1, 5, b"a") + hmsg(11, 2, 4, b"b") + hmsg(12, 3, 3, b"c"))
    assert proto.finished.result() == 11 and [e[0] for e in log] == [10, 11]
    proto, log = deliveries()
    proto.data_received(hmsg(10, 1, 0, b"a") + hmsg(11, 2, 0, b"late"))
    assert proto.finished.result() == 10 and [e[0] for e in log] == [10]
    proto, log = deliveries(end=5)
    proto.data_received(hmsg(7, 1, 0, b"beyond"))
    assert proto.finished.result() == 0 and log == []


async def test_reply_subjects_with_domain_and_account_hash_are_read():
    proto, log = deliveries()
    long_reply = b"$JS.ACK.hub.ACCHASH.GAMES.c1.1.42.1.1700000000000000000.0.rnd"
    proto.data_received(
        b"HMSG %s 1 %s %d %d\r\n%sz\r\n" % (SUBJECT, long_reply, len(HEADER), len(HEADER) + 1,
                                            HEADER)
    )
    assert [(e[0], e[3]) for e in log] == [(42, b"z")]
    assert proto.finished.result() == 42


async def test_a_consumer_status_other_than_100_interrupts():
    proto, _ = deliveries()
    proto.data_received(hmsg(3, 1, 5, b"a") + status(b"409 Consumer Deleted"))
    with pytest.raises(bulk.Interrupted, match="409") as info:
        proto.finished.result()
    assert info.value.last == 3


def ack(call: int, index: int, body: bytes) -> bytes:
    return b"MSG _INBOX.abc.%d.%d 1 %d\r\n%s\r\n" % (call, index, len(body), body)


ACK_BYTES = b"".join([
    ack(1, 0, b'{"stream":"GAMES","seq":41}'),
    ack(2, 0, b'{"stream":"EVENTS","seq":7}'),
    b"PING\r\n",
    ack(1, 2, b'{"stream":"GAMES","seq":41,"duplicate":true}'),
    ack(9, 0, b'{"stream":"GAMES","seq":99}'),  # a call that has returned: ignored
    b"HMSG _INBOX.abc.1.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
    ack(2, 1, b'{"error":{"code":400,"err_code":10054,"description":"maximum messages exceeded"}}'),
])


def acks() -> tuple[bulk._Acks, dict[int, tuple[list, list]], list]:
    wire: list = []
    proto = bulk._Acks()
    proto.connection_made(Wire(wire))
    calls = {1: ([0, 0, 0], []), 2: ([0, 0], [])}
    for call, (seqs, errors) in calls.items():
        proto.batches[call] = bulk._Batch(seqs, errors, 100)
        proto.batches[call].in_flight = len(seqs)
    return proto, calls, wire


async def test_acknowledgements_settle_their_own_call_however_the_bytes_are_split():
    proto, calls, wire = acks()
    proto.data_received(ACK_BYTES)
    assert calls == {1: ([41, -1, 41], [(1, "no stream takes this subject")]),
                     2: ([7, -1], [(1, "maximum messages exceeded")])}
    assert wire == [("write", b"PONG\r\n")]
    assert all(b.done.done() and b.in_flight == 0 for b in proto.batches.values())
    for cut in range(1, len(ACK_BYTES)):
        split, got, _ = acks()
        split.data_received(ACK_BYTES[:cut])
        split.data_received(ACK_BYTES[cut:])
        assert got == calls, cut


async def test_a_lost_connection_fails_every_call_in_flight():
    proto, _, _ = acks()
    proto.data_received(ack(1, 0, b'{"stream":"GAMES","seq":41}'))
    proto.connection_lost(None)
    for batch in proto.batches.values():
        with pytest.raises(bulk.Interrupted, match="lost"):
            batch.done.result()
    assert proto.stopped
