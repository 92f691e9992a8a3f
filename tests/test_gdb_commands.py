"""GdbSession against a fake in-memory Target: every command, from tables. No sockets."""

from __future__ import annotations

import errno
import xml.etree.ElementTree as ET

import pytest

from cosim.gdb.commands import (
    ALL,
    GdbSession,
    LocalProtocolError,
    format_thread_id,
    parse_thread_id,
)
from cosim.gdb.packets import Ack, Packet, PacketCodec, checksum, encode
from cosim.gdb.target import (
    NUM_REGISTERS,
    PC,
    REGISTER_NAMES,
    NotSupported,
    StopEvent,
    Target,
    TargetError,
)
from cosim.gdb.target_xml import TARGET_XML

MEM_BASE = 0x100000
MEM_SIZE = 0x1000
BP_ADDR = 0x100040
ORIGINAL_WORD = bytes.fromhex("38600001")  # li r3,1


class FakeTarget:
    """Two vCPUs, 4 KiB of RAM at MEM_BASE, two hardware breakpoint slots; records every call."""

    def __init__(self, ncpu: int = 2) -> None:
        self.regs = {t: [(t << 24) | (i << 8) for i in range(NUM_REGISTERS)] for t in range(1, ncpu + 1)}
        for t in self.regs:
            self.regs[t][PC] = BP_ADDR
        self.mem = bytearray(MEM_SIZE)
        self.mem[BP_ADDR - MEM_BASE : BP_ADDR - MEM_BASE + 4] = ORIGINAL_WORD
        self.breakpoints: set[tuple[int, int, int]] = set()
        self.hw_slots = 2
        self.calls: list[tuple] = []

    def threads(self):
        return sorted(self.regs)

    def thread_extra_info(self, tid):
        return f"vCPU {tid - 1} halted"

    def read_registers(self, tid):
        self.calls.append(("read_registers", tid))
        return list(self.regs[tid])

    def read_register(self, tid, regno):
        self.calls.append(("read_register", tid, regno))
        raise NotImplementedError("only core registers here")

    def write_register(self, tid, regno, value):
        self.calls.append(("write_register", tid, regno, value))
        self.regs[tid][regno] = value

    def _offset(self, addr, length):
        if addr < MEM_BASE or addr + length > MEM_BASE + len(self.mem):
            raise TargetError(errno.EFAULT)
        return addr - MEM_BASE

    def read_memory(self, addr, length):
        off = self._offset(addr, length)
        return bytes(self.mem[off : off + length])  # breakpoints are not planted: always original words

    def write_memory(self, addr, data):
        off = self._offset(addr, len(data))
        self.calls.append(("write_memory", addr, bytes(data)))
        self.mem[off : off + len(data)] = data

    def insert_breakpoint(self, kind, addr, length):
        if kind == 3:
            raise NotSupported
        if kind == 1 and sum(1 for b in self.breakpoints if b[0] == 1) >= self.hw_slots:
            raise TargetError(errno.ENOSPC)
        self.calls.append(("insert_breakpoint", kind, addr, length))
        self.breakpoints.add((kind, addr, length))

    def remove_breakpoint(self, kind, addr, length):
        if kind == 3:
            raise NotSupported
        if (kind, addr, length) not in self.breakpoints:
            raise TargetError(errno.ENOENT)
        self.calls.append(("remove_breakpoint", kind, addr, length))
        self.breakpoints.discard((kind, addr, length))

    def resume(self, actions, default):
        self.calls.append(("resume", dict(actions), default))

    def interrupt(self):
        self.calls.append(("interrupt",))

    def detach(self):
        self.calls.append(("detach",))

    def kill(self):
        self.calls.append(("kill",))


class Gdb:
    """The gdb side: sends framed packets into a session, checks the ack, returns the reply payloads."""

    def __init__(self, session: GdbSession) -> None:
        self.session = session
        self.decoder = PacketCodec()
        self.acks = True

    def exchange(self, payload: bytes) -> list[bytes]:
        out = self.session.receive(encode(payload))
        if self.acks:
            assert out.startswith(b"+"), (payload, out)
            out = out[1:]
        self.decoder.feed(out)
        events = list(self.decoder.events())
        assert all(isinstance(e, Packet) for e in events), events
        return [e.payload for e in events]

    def ask(self, payload: bytes) -> bytes:
        """Send a packet that must get exactly one reply now."""
        (reply,) = self.exchange(payload)
        return reply


def connected(features: bytes = b"multiprocess+;swbreak+;hwbreak+", ncpu: int = 2):
    target = FakeTarget(ncpu)
    session = GdbSession(target)
    gdb = Gdb(session)
    gdb.ask(b"qSupported:" + features)
    return target, session, gdb


def regs_hex(values) -> bytes:
    return b"".join(b"%08x" % v for v in values)


# -- the connect sequence of gdb-rsp.md ----------------------------------------------------------------

QSUPPORTED = (
    b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;exec-events+;"
    b"vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+;xmlRegisters=i386"
)

CONNECT_SEQUENCE = [
    (QSUPPORTED,
     b"PacketSize=4000;qXfer:features:read+;vContSupported+;multiprocess+;QStartNoAckMode+;swbreak+;hwbreak+"),
    (b"vMustReplyEmpty", b""),
    (b"Hgp0.0", b"OK"),
    (b"qXfer:features:read:target.xml:0,ffb", b"l" + TARGET_XML),
    (b"qTStatus", b""),
    (b"?", b"T05thread:p01.01;"),
    (b"qfThreadInfo", b"mp01.01,p01.02"),
    (b"qsThreadInfo", b"l"),
    (b"qAttached:1", b"1"),
    (b"Hc-1", b"OK"),
    (b"qOffsets", b""),
    (b"g", regs_hex(FakeTarget().regs[1])),
    (b"m%x,4" % BP_ADDR, ORIGINAL_WORD.hex().encode()),
    (b"m%x,8" % (MEM_BASE + 0x10), b"00" * 8),
    (b"qSymbol::", b""),
]


def test_connect_sequence():
    target = FakeTarget()
    session = GdbSession(target)
    gdb = Gdb(session)
    for packet, reply in CONNECT_SEQUENCE:
        assert gdb.ask(packet) == reply, packet
    assert not session.running and not session.closed
    assert len(CONNECT_SEQUENCE[11][1]) == 304  # 38 registers x 4 bytes, hex


def test_connect_wire_bytes_exact():
    session = GdbSession(FakeTarget())
    assert session.receive(b"$vMustReplyEmpty#3a") == b"+$#00"
    assert session.receive(b"+$?#3f") == b"+$T05thread:p01.01;#06"
    assert session.receive(b"+$Hgp0.0#ad") == b"+$OK#9a"


# -- breakpoint steady state, stepping, Ctrl-C, watchpoints -------------------------------------------


def test_breakpoint_hit_cycle():
    target, session, gdb = connected()
    assert gdb.ask(b"Z0,%x,4" % BP_ADDR) == b"OK"
    assert gdb.exchange(b"vCont;c:p1.-1") == []
    assert session.running
    assert target.calls[-1] == ("resume", {}, "c")
    wire = session.stop_reply(StopEvent(1, reason="swbreak"))
    assert wire == encode(b"T05thread:p01.01;swbreak:;")
    assert not session.running
    assert session.receive(b"+") == b""
    gdb.decoder.feed(b"")
    assert gdb.ask(b"g") == regs_hex(target.regs[1])
    assert gdb.ask(b"qfThreadInfo") == b"mp01.01,p01.02"
    assert gdb.ask(b"qsThreadInfo") == b"l"
    assert gdb.ask(b"z0,%x,4" % BP_ADDR) == b"OK"
    assert gdb.ask(b"m%x,4" % BP_ADDR) == b"38600001"
    assert gdb.exchange(b"vCont;s:p1.1") == []
    assert target.calls[-1] == ("resume", {1: "s"}, None)
    assert session.stop_reply(StopEvent(1)) == encode(b"T05thread:p01.01;")
    assert gdb.ask(b"Z0,%x,4" % BP_ADDR) == b"OK"
    assert target.breakpoints == {(0, BP_ADDR, 4)}


def test_stop_on_other_vcpu_selects_it():
    target, session, gdb = connected()
    gdb.exchange(b"vCont;c:p1.-1")
    assert session.stop_reply(StopEvent(2, reason="swbreak")) == encode(b"T05thread:p01.02;swbreak:;")
    assert gdb.ask(b"g") == regs_hex(target.regs[2])
    assert gdb.ask(b"qC") == b"QCp01.02"
    assert gdb.ask(b"?") == b"T05thread:p01.02;swbreak:;"


@pytest.mark.parametrize(
    "features, event, reply",
    [
        (b"multiprocess+;swbreak+;hwbreak+", StopEvent(1, reason="swbreak"), b"T05thread:p01.01;swbreak:;"),
        (b"multiprocess+;swbreak+;hwbreak+", StopEvent(1, reason="hwbreak"), b"T05thread:p01.01;hwbreak:;"),
        (b"multiprocess+", StopEvent(1, reason="swbreak"), b"T05thread:p01.01;"),
        (b"multiprocess+", StopEvent(1, reason="hwbreak"), b"T05thread:p01.01;"),
        (b"multiprocess+;swbreak+", StopEvent(2, reason="hwbreak"), b"T05thread:p01.02;"),
        (b"multiprocess+", StopEvent(1, reason=("watch", 0x110000)), b"T05thread:p01.01;watch:00110000;"),
        (b"multiprocess+", StopEvent(2, reason=("rwatch", 0x100ffc)), b"T05thread:p01.02;rwatch:00100ffc;"),
        (b"multiprocess+", StopEvent(1, reason=("awatch", 0x10)), b"T05thread:p01.01;awatch:00000010;"),
        (b"multiprocess+", StopEvent(1, signal=2), b"T02thread:p01.01;"),
        (b"swbreak+", StopEvent(2, reason="swbreak"), b"T05thread:02;swbreak:;"),
    ],
)
def test_stop_reply(features, event, reply):
    target, session, gdb = connected(features)
    gdb.exchange(b"vCont;c")
    assert session.stop_reply(event) == encode(reply)


@pytest.mark.parametrize(
    "features, reply",
    [
        (b"", b"PacketSize=4000;qXfer:features:read+;vContSupported+;multiprocess+;QStartNoAckMode+"),
        (b"multiprocess+;hwbreak+",
         b"PacketSize=4000;qXfer:features:read+;vContSupported+;multiprocess+;QStartNoAckMode+;hwbreak+"),
        (b"swbreak-;hwbreak?;xmlRegisters=i386",
         b"PacketSize=4000;qXfer:features:read+;vContSupported+;multiprocess+;QStartNoAckMode+"),
    ],
)
def test_qsupported_echoes_only_offered_break_reasons(features, reply):
    session = GdbSession(FakeTarget())
    packet = b"qSupported:" + features if features else b"qSupported"
    assert Gdb(session).ask(packet) == reply


def test_ctrl_c_interrupts_once_while_running():
    target, session, gdb = connected()
    assert session.receive(b"\x03") == b""  # stopped: ignored
    assert ("interrupt",) not in target.calls
    gdb.exchange(b"vCont;c:p1.-1")
    assert session.receive(b"\x03") == b""
    assert session.receive(b"\x03") == b""
    assert target.calls.count(("interrupt",)) == 1
    assert session.stop_reply(StopEvent(1, signal=2)) == encode(b"T02thread:p01.01;")
    gdb.exchange(b"vCont;c:p1.-1")
    session.receive(b"\x03")
    assert target.calls.count(("interrupt",)) == 2


def test_packets_while_running_get_error_and_leave_target_alone():
    target, session, gdb = connected()
    gdb.exchange(b"vCont;c:p1.-1")
    n = len(target.calls)
    assert gdb.ask(b"g") == b"E01"
    assert gdb.ask(b"vCont;c") == b"E01"
    assert len(target.calls) == n and session.running


def test_stop_reply_while_stopped_is_a_local_error():
    _, session, _ = connected()
    with pytest.raises(LocalProtocolError):
        session.stop_reply(StopEvent(1))


# -- vCont, c, s ------------------------------------------------------------------------------------------

VCONT_CASES = [
    (b"vCont;c:p1.-1", {}, "c"),
    (b"vCont;c", {}, "c"),
    (b"vCont;c:-1", {}, "c"),
    (b"vCont;s:p1.1", {1: "s"}, None),
    (b"vCont;s:p1.1;c:p1.-1", {1: "s"}, "c"),
    (b"vCont;s:p01.02;c", {2: "s"}, "c"),
    (b"vCont;s:2;c:1", {2: "s", 1: "c"}, None),
    (b"vCont;S05:p1.2;C02:p1.-1", {2: "s"}, "c"),
    (b"vCont;C05", {}, "c"),
    (b"vCont;t:p1.1;c", {}, "c"),  # t: thread 1 stays stopped, the rest continue
    (b"vCont;c;s:p1.1", {}, "c"),  # leftmost wins: the all-threads c shadows the later s
    (b"vCont;s:p1.1;c:p1.1", {1: "s"}, None),
    (b"vCont;c:p-1.-1", {}, "c"),
    (b"vCont;s:p1.0", {1: "s"}, None),  # "any thread" = the current one
]


@pytest.mark.parametrize("packet, actions, default", VCONT_CASES)
def test_vcont(packet, actions, default):
    target, session, gdb = connected()
    assert gdb.exchange(packet) == []
    assert session.running
    assert target.calls[-1] == ("resume", actions, default)


@pytest.mark.parametrize(
    "packet, reply",
    [
        (b"vCont;", b"E01"),
        (b"vCont;x", b"E01"),
        (b"vCont;cc", b"E01"),
        (b"vCont;Czz", b"E01"),
        (b"vCont;c:pzz", b"E01"),
        (b"vCont;c:p1.9", b"E02"),
        (b"vCont;c:p2.1", b"E02"),
        (b"vCont;t", b"E01"),  # nothing would run
        (b"vCont;r1000,2000:p1.1", b"E01"),  # range stepping not offered
    ],
)
def test_vcont_errors(packet, reply):
    target, session, gdb = connected()
    assert gdb.ask(packet) == reply
    assert not session.running
    assert not any(c[0] == "resume" for c in target.calls)
    assert gdb.ask(b"?") == b"T05thread:p01.01;"  # still serving


def test_vcont_query():
    _, _, gdb = connected()
    assert gdb.ask(b"vCont?") == b"vCont;c;C;s;S;t"


@pytest.mark.parametrize(
    "setup, packet, calls",
    [
        ([], b"c", [("resume", {1: "c"}, "c")]),
        ([], b"s", [("resume", {1: "s"}, "c")]),
        ([b"Hc-1", b"Hgp1.2"], b"s", [("resume", {2: "s"}, "c")]),
        ([b"Hcp1.2"], b"s", [("resume", {2: "s"}, None)]),
        ([b"Hc2"], b"c", [("resume", {2: "c"}, None)]),
        ([b"Hc0"], b"c", [("resume", {1: "c"}, "c")]),
        ([], b"c100080", [("write_register", 1, PC, 0x100080), ("resume", {1: "c"}, "c")]),
        ([b"Hcp1.2"], b"s100084", [("write_register", 2, PC, 0x100084), ("resume", {2: "s"}, None)]),
    ],
)
def test_legacy_continue_and_step(setup, packet, calls):
    target, session, gdb = connected()
    for p in setup:
        assert gdb.ask(p) == b"OK"
    target.calls.clear()
    assert gdb.exchange(packet) == []
    assert session.running
    assert [c for c in target.calls if c[0] != "read_registers"] == calls


# -- registers --------------------------------------------------------------------------------------------


def xml_register_names() -> list[str]:
    root = ET.fromstring(TARGET_XML)
    assert root.findtext("architecture") == "powerpc:common"
    (feature,) = root.findall("feature")
    assert feature.get("name") == "org.gnu.gdb.power.core"
    regs = feature.findall("reg")
    assert all(r.get("bitsize") == "32" and r.get("regnum") is None for r in regs)
    assert {r.get("name"): r.get("type") for r in regs}["pc"] == "code_ptr"
    return [r.get("name") for r in regs]


def test_target_xml_lists_38_core_registers_in_remote_order():
    names = xml_register_names()
    assert names == list(REGISTER_NAMES)
    assert names[32:] == ["pc", "msr", "cr", "lr", "ctr", "xer"] and len(names) == 38


@pytest.mark.parametrize("regno", range(NUM_REGISTERS))
def test_p_uses_the_numbering_of_the_served_xml(regno):
    """Remote register N is the N-th <reg> of the XML we serve (no regnum attributes)."""
    target, _, gdb = connected()
    name = xml_register_names()[regno]
    assert gdb.ask(b"p%x" % regno) == b"%08x" % target.regs[1][REGISTER_NAMES.index(name)]
    assert gdb.ask(b"P%x=%08x" % (regno, 0xC0DE0000 + regno)) == b"OK"
    assert target.regs[1][regno] == 0xC0DE0000 + regno


@pytest.mark.parametrize(
    "packet, reply",
    [
        (b"p20", b"%08x" % 0x100040),  # pc is remote register 32 = 0x20
        (b"p26", b"E02"),  # one past xer
        (b"p40", b"E02"),  # gdb's internal pc number is not a remote number here
        (b"p", b"E01"),
        (b"pzz", b"E01"),
        (b"P20=", b"E01"),
        (b"P20=1234", b"E01"),
        (b"P20=zzzzzzzz", b"E01"),
        (b"P20", b"E01"),
        (b"P40=00000000", b"E02"),
    ],
)
def test_register_edge_cases(packet, reply):
    _, _, gdb = connected()
    assert gdb.ask(packet) == reply


def test_g_reads_the_general_thread_and_G_writes_all():
    target, _, gdb = connected()
    assert gdb.ask(b"Hgp1.2") == b"OK"
    assert gdb.ask(b"g") == regs_hex(target.regs[2])
    new = [0x11111111 * (i % 15 + 1) for i in range(NUM_REGISTERS)]
    target.calls.clear()
    assert gdb.ask(b"G" + regs_hex(new)) == b"OK"
    assert target.calls == [("write_register", 2, i, v) for i, v in enumerate(new)]
    assert target.regs[2] == new
    assert gdb.ask(b"G" + regs_hex(new)[:-8]) == b"E01"
    assert gdb.ask(b"G" + b"zz" * 152) == b"E01"


# -- memory -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "packet, reply, written",
    [
        (b"m100000,4", b"00000000", None),
        (b"m%x,4" % BP_ADDR, b"38600001", None),
        (b"mfff0,4", b"E0e", None),  # EFAULT
        (b"m100ffe,4", b"E0e", None),
        (b"m100000", b"E01", None),
        (b"mzz,4", b"E01", None),
        (b"m100000,", b"E01", None),
        (b"M100010,4:deadbeef", b"OK", (0x100010, bytes.fromhex("deadbeef"))),
        (b"M100010,4:deadbe", b"E01", None),
        (b"M100010,4:deadbeeg", b"E01", None),
        (b"M100010,4", b"E01", None),
        (b"M0,4:deadbeef", b"E0e", None),
        (b"X100020,0:", b"OK", None),  # gdb's probe for X
        (b"X100020,4:\x00\x01\x02\x03", b"OK", (0x100020, b"\x00\x01\x02\x03")),
        (b"X100020,4:$#}*", b"OK", (0x100020, b"$#}*")),  # escaped on the wire by encode()
        (b"X100020,4:\x00\x01", b"E01", None),
        (b"X0,1:\x00", b"E0e", None),
    ],
)
def test_memory(packet, reply, written):
    target, _, gdb = connected()
    target.calls.clear()
    assert gdb.ask(packet) == reply
    writes = [c[1:] for c in target.calls if c[0] == "write_memory"]
    assert writes == ([written] if written else [])


def test_x_binary_escapes_on_the_wire():
    target = FakeTarget()
    session = GdbSession(target)
    body = b"X100030,4:}\x03}\x04}]}\x0a"
    assert session.receive(b"$%s#%02x" % (body, checksum(body))) == b"+$OK#9a"
    assert target.read_memory(0x100030, 4) == b"#$}*"


def test_large_memory_read_is_truncated_to_packet_size():
    target, _, gdb = connected()
    target.mem = bytearray(0x10000)
    reply = gdb.ask(b"m100000,8000")
    assert 0 < len(reply) < 0x4000 and reply == b"0" * len(reply)


# -- breakpoints and watchpoints --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "packets, replies, breakpoints",
    [
        ([b"Z0,100040,4"], [b"OK"], {(0, 0x100040, 4)}),
        ([b"Z0,100040,4", b"z0,100040,4"], [b"OK", b"OK"], set()),
        ([b"Z1,100040,4"], [b"OK"], {(1, 0x100040, 4)}),
        ([b"Z1,100040,4", b"Z1,100044,4", b"Z1,100048,4"], [b"OK", b"OK", b"E1c"],  # ENOSPC: no IAC slot
         {(1, 0x100040, 4), (1, 0x100044, 4)}),
        ([b"Z2,110000,4"], [b"OK"], {(2, 0x110000, 4)}),
        ([b"Z3,110000,4"], [b""], set()),  # NotSupported -> empty
        ([b"z3,110000,4"], [b""], set()),
        ([b"Z4,110000,8"], [b"OK"], {(4, 0x110000, 8)}),
        ([b"z2,110000,4"], [b"E02"], set()),  # ENOENT from the target
        ([b"Z5,100040,4"], [b""], set()),
        ([b"Z0,100040"], [b"E01"], set()),
        ([b"Z0,100040,4;X3,220100"], [b"E01"], set()),
        ([b"z0"], [b"E01"], set()),
    ],
)
def test_breakpoints(packets, replies, breakpoints):
    target, _, gdb = connected()
    assert [gdb.ask(p) for p in packets] == replies
    assert target.breakpoints == breakpoints


# -- threads ----------------------------------------------------------------------------------------------

THREAD_ID_CASES = [
    (b"p1.2", (1, 2)),
    (b"p01.02", (1, 2)),
    (b"p1.-1", (1, ALL)),
    (b"p1", (1, ALL)),
    (b"p-1", (ALL, ALL)),
    (b"p0.0", (0, 0)),
    (b"-1", (None, ALL)),
    (b"0", (None, 0)),
    (b"2", (None, 2)),
    (b"1a", (None, 0x1A)),
]


@pytest.mark.parametrize("text, parsed", THREAD_ID_CASES)
def test_parse_thread_id(text, parsed):
    assert parse_thread_id(text) == parsed


def test_format_thread_id():
    assert format_thread_id(1) == b"p01.01"
    assert format_thread_id(0x12) == b"p01.12"
    assert format_thread_id(2, multiprocess=False) == b"02"


@pytest.mark.parametrize(
    "packet, reply, general",
    [
        (b"Hgp1.2", b"OK", 2),
        (b"Hgp01.02", b"OK", 2),
        (b"Hg2", b"OK", 2),
        (b"Hgp1.1", b"OK", 1),
        (b"Hg-1", b"OK", 1),
        (b"Hg0", b"OK", 1),
        (b"Hgp0.0", b"OK", 1),
        (b"Hgp1.9", b"E02", 1),
        (b"Hgp2.1", b"E02", 1),
        (b"Hg", b"E01", 1),
        (b"Hgxyz", b"E01", 1),
        (b"Hgp1.", b"E01", 1),
        (b"Hx1", b"", 1),  # unknown H operation
    ],
)
def test_set_general_thread(packet, reply, general):
    target, _, gdb = connected()
    assert gdb.ask(packet) == reply
    assert gdb.ask(b"qC") == b"QC" + format_thread_id(general)
    assert gdb.ask(b"g") == regs_hex(target.regs[general])


@pytest.mark.parametrize(
    "packet, reply",
    [
        (b"qThreadExtraInfo,p1.2", b"vCPU 1 halted".hex().encode()),
        (b"qThreadExtraInfo,p01.01", b"vCPU 0 halted".hex().encode()),
        (b"qThreadExtraInfo,p1.3", b"E02"),
        (b"qThreadExtraInfo,-1", b"E02"),
        (b"qThreadExtraInfo,", b"E01"),
        (b"Tp1.2", b"OK"),
        (b"T1", b"OK"),
        (b"Tp1.3", b"E02"),
        (b"Tp1.-1", b"E02"),
        (b"qC", b"QCp01.01"),
        (b"qfThreadInfo", b"mp01.01,p01.02"),
        (b"qsThreadInfo", b"l"),
    ],
)
def test_thread_queries(packet, reply):
    _, _, gdb = connected()
    assert gdb.ask(packet) == reply


def test_without_multiprocess_thread_ids_are_plain():
    _, _, gdb = connected(b"swbreak+")
    assert gdb.ask(b"qfThreadInfo") == b"m01,02"
    assert gdb.ask(b"?") == b"T05thread:01;"
    assert gdb.ask(b"Hg2") == b"OK"
    assert gdb.ask(b"qC") == b"QC02"


def test_four_vcpus():
    _, session, gdb = connected(ncpu=4)
    assert gdb.ask(b"qfThreadInfo") == b"mp01.01,p01.02,p01.03,p01.04"
    gdb.exchange(b"vCont;c:p1.-1")
    assert session.stop_reply(StopEvent(4, reason="swbreak")) == encode(b"T05thread:p01.04;swbreak:;")


# -- target description -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 100, 0x200, 0xFFB])
def test_qxfer_chunking_reassembles_the_document(chunk):
    _, _, gdb = connected()
    data, offset = b"", 0
    while True:
        reply = gdb.ask(b"qXfer:features:read:target.xml:%x,%x" % (offset, chunk))
        assert reply[:1] in (b"m", b"l") and len(reply) - 1 <= chunk
        data += reply[1:]
        offset += len(reply) - 1
        if reply[:1] == b"l":
            break
        assert len(reply) - 1 == chunk
    assert data == TARGET_XML


@pytest.mark.parametrize(
    "packet, reply",
    [
        (b"qXfer:features:read:target.xml:%x,10" % len(TARGET_XML), b"l"),
        (b"qXfer:features:read:target.xml:%x,10" % (len(TARGET_XML) + 5), b"l"),
        (b"qXfer:features:read:target.xml:%x,10" % (len(TARGET_XML) - 3), b"l" + TARGET_XML[-3:]),
        (b"qXfer:features:read:target.xml:0,5", b"m" + TARGET_XML[:5]),
        (b"qXfer:features:read:power-fpu.xml:0,ffb", b"E00"),
        (b"qXfer:features:read:target.xml:0", b"E01"),
        (b"qXfer:features:read:target.xml", b"E01"),
        (b"qXfer:memory-map:read::0,ffb", b""),  # not offered
    ],
)
def test_qxfer_edges(packet, reply):
    _, _, gdb = connected()
    assert gdb.ask(packet) == reply


# -- detach, kill, unknown and malformed packets ----------------------------------------------------------


@pytest.mark.parametrize(
    "packet, replies, call",
    [
        (b"D", [b"OK"], ("detach",)),
        (b"D;1", [b"OK"], ("detach",)),
        (b"vKill;1", [b"OK"], ("kill",)),
        (b"k", [], ("kill",)),
    ],
)
def test_detach_and_kill(packet, replies, call):
    target, session, gdb = connected()
    assert gdb.exchange(packet) == replies
    assert target.calls[-1] == call
    assert session.closed
    assert session.receive(encode(b"g")) == b""  # input ignored once closed


@pytest.mark.parametrize("packet, reply", [(b"D;2", b"E02"), (b"D;zz", b"E01"), (b"vKill;2", b"E02")])
def test_detach_kill_wrong_process(packet, reply):
    target, session, gdb = connected()
    assert gdb.ask(packet) == reply
    assert not session.closed and not any(c[0] in ("detach", "kill") for c in target.calls)


@pytest.mark.parametrize(
    "packet",
    [b"qRcmd,7265736574", b"vFile:open:6a7573742070726f62696e67,0,1c0", b"!", b"qCRC:100000,4",
     b"qfThreadInfoX", b"QNonStop:1", b"qThreadEvents", b"jThreadsInfo", b"vRun;", b"vAttach;1",
     b"QPassSignals:", b"qL1200000000000000000", b"bc", b"i", b"vContX"],
)
def test_unknown_packets_get_empty_reply(packet):
    _, session, gdb = connected()
    assert gdb.ask(packet) == b""
    assert gdb.ask(b"?") == b"T05thread:p01.01;"


@pytest.mark.parametrize(
    "packet",
    [b"mzz,4", b"m100000", b"m,4", b"M100000,4", b"M100000:00", b"Z0,100000", b"z", b"p", b"Pzz=00000000",
     b"Hg", b"Hc", b"Tzz", b"vCont;q", b"G1", b"g1", b"?1", b"kx", b"Dx", b"c1x", b"sq", b"vKill;", b"m 100,4",
     b"m+100,4", b"m0x100,4", b"m100_0,4"],
)
def test_malformed_packets_get_E01_and_session_keeps_serving(packet):
    target, session, gdb = connected()
    assert gdb.ask(packet) == b"E01"
    assert not session.running
    assert gdb.ask(b"g") == regs_hex(target.regs[1])


# -- link level through the session -----------------------------------------------------------------------


def test_no_ack_mode():
    session = GdbSession(FakeTarget())
    assert session.receive(encode(b"QStartNoAckMode")) == b"+$OK#9a"
    assert session.codec.no_ack
    assert session.receive(b"+") == b""  # gdb acknowledges the OK
    assert session.receive(encode(b"?")) == b"$T05thread:p01.01;#06"
    assert session.receive(b"$?#00") == b""  # bad checksum: dropped, no nak
    assert session.receive(encode(b"vCont;c")) == b""
    assert session.stop_reply(StopEvent(1)) == b"$T05thread:p01.01;#06"


def test_nak_retransmits_last_reply():
    session = GdbSession(FakeTarget())
    first = session.receive(encode(b"?"))
    assert first == b"+$T05thread:p01.01;#06"
    assert session.receive(b"-") == b"$T05thread:p01.01;#06"
    assert session.receive(b"+") == b""
    assert session.receive(b"-") == b""


def test_nak_retransmits_stop_reply():
    target, session, gdb = connected()
    gdb.exchange(b"vCont;c")
    stop = session.stop_reply(StopEvent(1, reason="swbreak"))
    assert session.receive(b"-") == stop


def test_bad_checksum_is_nakked_and_session_keeps_serving():
    session = GdbSession(FakeTarget())
    assert session.receive(b"$g#00") == b"-"
    assert session.receive(b"$?#3f") == b"+$T05thread:p01.01;#06"


def test_split_feeds_and_pipelined_packets():
    session = GdbSession(FakeTarget())
    wire = encode(b"qfThreadInfo") + b"+" + encode(b"qsThreadInfo")
    out = b"".join(session.receive(bytes([b])) for b in wire)
    decoder = PacketCodec()
    decoder.feed(out)
    events = list(decoder.events())
    assert events == [Ack(), Packet(b"mp01.01,p01.02"), Ack(), Packet(b"l")]


def test_fake_target_satisfies_protocol():
    assert isinstance(FakeTarget(), Target)


@pytest.mark.parametrize(
    "kwargs",
    [dict(tid=0), dict(tid=1, reason="watch"), dict(tid=1, reason=("foo", 1)), dict(tid=1, signal=300)],
)
def test_bad_stop_events_rejected(kwargs):
    with pytest.raises(ValueError):
        StopEvent(**kwargs)
