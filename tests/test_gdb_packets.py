"""The GDB packet codec, driven from tables of (bytes in -> events / bytes out). No sockets."""

from __future__ import annotations

import pytest

from cosim.gdb.packets import (
    Ack,
    BadPacket,
    Interrupt,
    Nak,
    Packet,
    PacketCodec,
    checksum,
    decode_body,
    encode,
    escape,
)


def frame(body: bytes) -> bytes:
    """A frame with the body sent raw (already escaped / run-length encoded by the test)."""
    return b"$%s#%02x" % (body, checksum(body))


def bad(reason_part: str):
    return ("bad", reason_part)


# (id, input chunks, expected events). A ("bad", text) entry matches a BadPacket whose reason contains text.
DECODE_CASES = [
    ("empty packet", [b"$#00"], [Packet(b"")]),
    ("simple", [b"$g#67"], [Packet(b"g")]),
    ("captured qSupported",
     [frame(b"qSupported:multiprocess+;swbreak+;hwbreak+")],
     [Packet(b"qSupported:multiprocess+;swbreak+;hwbreak+")]),
    ("upper-case checksum digits", [b"$vMustReplyEmpty#3A"], [Packet(b"vMustReplyEmpty")]),
    ("lower-case checksum digits", [b"$vMustReplyEmpty#3a"], [Packet(b"vMustReplyEmpty")]),
    ("escaped bytes", [frame(b"X0,4:}\x03}\x04}]}\x0a")], [Packet(b"X0,4:#$}*")]),
    ("escaped 0x7d then rle of it", [frame(b"a}]* ")], [Packet(b"a}}}}")]),
    ("rle minimal count ' ' = 3 more", [frame(b"0* ")], [Packet(b"0000")]),
    ("rle count '!' = 4 more", [frame(b"x0*!y")], [Packet(b"x00000y")]),
    ("rle large count '~'", [frame(b"f*~")], [Packet(b"f" * (1 + 126 - 29))]),
    ("two runs", [frame(b"1* 2* ")], [Packet(b"11112222")]),
    ("split in every place", [bytes([b]) for b in b"$m100,4#5e"], [Packet(b"m100,4")]),
    ("split inside checksum", [b"$m100,4#5", b"e"], [Packet(b"m100,4")]),
    ("split before checksum", [b"$m100,4", b"#", b"5e"], [Packet(b"m100,4")]),
    ("two packets in one feed", [b"$g#67$?#3f"], [Packet(b"g"), Packet(b"?")]),
    ("garbage before and between", [b"xx\r\n$g#67junk$?#3f"], [Packet(b"g"), Packet(b"?")]),
    ("garbage after", [b"$g#67zz"], [Packet(b"g")]),
    ("ack", [b"+"], [Ack()]),
    ("nak", [b"-"], [Nak()]),
    ("interrupt byte", [b"\x03"], [Interrupt()]),
    ("ack then packet then interrupt", [b"+$g#67\x03"], [Ack(), Packet(b"g"), Interrupt()]),
    ("0x03 inside a packet is data", [frame(b"a\x03b")], [Packet(b"a\x03b")]),
    ("+ and - inside a packet are data", [frame(b"Z0,-1,+4")], [Packet(b"Z0,-1,+4")]),
    ("bad checksum", [b"$g#68"], [bad("bad checksum")]),
    ("bad checksum then good packet", [b"$g#00$g#67"], [bad("bad checksum"), Packet(b"g")]),
    ("non-hex checksum", [b"$g#zz"], [bad("not hex")]),
    ("escape at end", [frame(b"ab}")], [bad("escape at end")]),
    ("rle with nothing to repeat", [frame(b"* ")], [bad("nothing to repeat")]),
    ("rle at end", [frame(b"a*")], [bad("run-length marker at end")]),
    ("rle bad count", [frame(b"a*\x1f")], [bad("bad run-length count")]),
    ("restart on $ inside packet", [b"$m10", b"$g#67"], [Packet(b"g")]),
    ("incomplete packet waits", [b"$m100,4#5"], []),
    ("only garbage", [b"hello world"], []),
]


@pytest.mark.parametrize("chunks, expected", [c[1:] for c in DECODE_CASES], ids=[c[0] for c in DECODE_CASES])
def test_decode(chunks, expected):
    codec = PacketCodec()
    got = []
    for chunk in chunks:
        codec.feed(chunk)
        got.extend(codec.events())
    assert len(got) == len(expected), got
    for g, e in zip(got, expected):
        if isinstance(e, tuple):
            assert isinstance(g, BadPacket) and e[1] in g.reason, g
        else:
            assert g == e


@pytest.mark.parametrize("chunks, expected", [c[1:] for c in DECODE_CASES], ids=[c[0] for c in DECODE_CASES])
def test_decode_byte_at_a_time_matches(chunks, expected):
    """Any split of the input yields the same events."""
    whole = b"".join(chunks)
    one = PacketCodec()
    one.feed(whole)
    expected_events = list(one.events())
    codec = PacketCodec()
    got = []
    for b in whole:
        codec.feed(bytes([b]))
        got.extend(codec.events())
    assert got == expected_events


def test_too_long_packet_is_dropped_then_codec_recovers():
    codec = PacketCodec(max_packet=16)
    codec.feed(b"$" + b"a" * 20)
    (ev,) = list(codec.events())
    assert isinstance(ev, BadPacket) and "longer" in ev.reason
    codec.feed(b"aaa#00$g#67")
    assert list(codec.events()) == [Packet(b"g")]


# (payload, exact frame)
ENCODE_CASES = [
    (b"", b"$#00"),
    (b"OK", b"$OK#9a"),
    (b"E01", b"$E01#a6"),
    (b"T05thread:p01.01;", b"$T05thread:p01.01;#06"),
    (b"$", b"$}\x04#81"),
    (b"#", b"$}\x03#80"),
    (b"}", b"$}]#da"),
    (b"*", b"$}\x0a#87"),
    (b"a$b#c}d*e", b"$a}\x04b}\x03c}]d}\x0ae#" + b"%02x" % checksum(b"a}\x04b}\x03c}]d}\x0ae")),
]


@pytest.mark.parametrize("payload, wire", ENCODE_CASES)
def test_encode(payload, wire):
    assert encode(payload) == wire


@pytest.mark.parametrize("payload", [p for p, _ in ENCODE_CASES] + [bytes(range(256)), b"0" * 300])
def test_encode_decode_round_trip(payload):
    codec = PacketCodec()
    codec.feed(encode(payload))
    assert list(codec.events()) == [Packet(payload)]


def test_escape_and_decode_body_are_inverse():
    data = bytes(range(256)) * 2
    assert decode_body(escape(data)) == data
    assert escape(b"plain") == b"plain"


# Link-level bookkeeping: a sequence of steps on one codec.
#   ("send", payload, bytes returned)
#   ("recv", bytes fed, [(event, bytes respond() returns), ...])
#   ("no_ack",)
LINK_CASES = [
    ("ack packet, nak bad packet", [
        ("recv", b"$g#67", [(Packet(b"g"), b"+")]),
        ("recv", b"$g#00", [(BadPacket, b"-")]),
    ]),
    ("nak retransmits last sent, ack clears it", [
        ("send", b"OK", b"$OK#9a"),
        ("recv", b"-", [(Nak(), b"$OK#9a")]),
        ("recv", b"-", [(Nak(), b"$OK#9a")]),
        ("recv", b"+", [(Ack(), b"")]),
        ("recv", b"-", [(Nak(), b"")]),
    ]),
    ("only the last sent frame is retransmitted", [
        ("send", b"first", encode(b"first")),
        ("send", b"second", encode(b"second")),
        ("recv", b"-", [(Nak(), encode(b"second"))]),
    ]),
    ("interrupt and garbage get no link answer", [
        ("recv", b"\x03", [(Interrupt(), b"")]),
    ]),
    ("no-ack mode after QStartNoAckMode", [
        ("recv", b"$QStartNoAckMode#b0", [(Packet(b"QStartNoAckMode"), b"+")]),
        ("send", b"OK", b"$OK#9a"),
        ("no_ack",),
        ("recv", b"+", [(Ack(), b"")]),  # gdb still acks the OK
        ("recv", b"$g#67", [(Packet(b"g"), b"")]),
        ("send", b"00", b"$00#60"),
        ("recv", b"-", [(Nak(), b"")]),  # nothing kept for retransmission
        ("recv", b"$g#00", [(BadPacket, b"")]),  # dropped silently
    ]),
]


@pytest.mark.parametrize("steps", [c[1] for c in LINK_CASES], ids=[c[0] for c in LINK_CASES])
def test_link(steps):
    codec = PacketCodec()
    for step in steps:
        if step[0] == "send":
            assert codec.send(step[1]) == step[2]
            assert codec.unacked == (not codec.no_ack)
        elif step[0] == "no_ack":
            codec.start_no_ack()
            assert codec.no_ack
        else:
            codec.feed(step[1])
            events = list(codec.events())
            assert len(events) == len(step[2])
            for ev, (want, answer) in zip(events, step[2]):
                if want is BadPacket:
                    assert isinstance(ev, BadPacket)
                else:
                    assert ev == want
                assert codec.respond(ev) == answer


# --- the one-packet fast path (PacketCodec.whole_packet) ----------------------------------------------
def _slow(data: bytes, no_ack: bool) -> tuple[list, bool]:
    codec = PacketCodec()
    if no_ack:
        codec.start_no_ack()
    codec._unacked = b"$OK#9a"
    codec.feed(data)
    return list(codec.events()), codec.unacked


@pytest.mark.parametrize("data, payload", [
    (frame(b"m10730,4"), b"m10730,4"),
    (b"+" + frame(b"g"), b"g"),
    (b"+++" + frame(b"vCont;c:p1.-1"), b"vCont;c:p1.-1"),
    (frame(b""), b""),
    (frame(b"X10,2:}]"), None),                  # an escape: the framing loop decodes it
    (frame(b"0* "), None),                       # a run length
    (frame(b"g") + frame(b"g"), None),           # two packets
    (b"$g#6", None),                             # incomplete
    (b"$g#68", None),                            # bad checksum: the loop answers `-`
    (b"$g#6G", None),                            # not hex
    (b"-" + frame(b"g"), None),                  # a nak first
    (b"\x03", None),
    (b"$m1#2" + frame(b"g")[1:], None),          # a `$` restarting inside the body
])
def test_whole_packet_takes_exactly_the_plain_single_packet(data, payload):
    codec = PacketCodec()
    codec._unacked = b"$OK#9a"
    assert codec.whole_packet(data) == payload
    if payload is not None:
        events, unacked = _slow(data, no_ack=False)
        assert events[-1] == Packet(payload) and all(isinstance(e, Ack) for e in events[:-1])
        assert codec.unacked == unacked                     # the acks were taken the same way


def test_whole_packet_waits_for_buffered_input():
    codec = PacketCodec()
    codec.feed(b"$m10")
    assert codec.whole_packet(frame(b"g")) is None           # bytes already buffered: the loop decides


def test_whole_packet_agrees_with_the_framing_loop_on_random_input():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    parts = st.one_of(st.sampled_from([b"+", b"-", b"$", b"#", b"}", b"*", b"\x03", b"00", b"6g"]),
                      st.binary(max_size=6), st.binary(max_size=8).map(frame))

    @settings(max_examples=400, deadline=None)
    @given(st.lists(parts, max_size=4).map(b"".join), st.booleans())
    def check(data, no_ack):
        codec = PacketCodec()
        if no_ack:
            codec.start_no_ack()
        codec._unacked = None if no_ack else b"$OK#9a"
        payload = codec.whole_packet(data)
        if payload is None:
            return
        events, unacked = _slow(data, no_ack)
        assert [e for e in events if not isinstance(e, Ack)] == [Packet(payload)]
        assert codec.unacked == (unacked if not no_ack else False)

    check()
