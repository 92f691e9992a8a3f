"""Book E SPRs for gdb and the `monitor` commands, without sockets: the SPR layout and access rules
(checked against the vCPU core's own mfspr/mtspr), the target description, `p`/`P` of SPRs and
`qRcmd` through GdbSession, and every monitor command over a fake source."""
from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from cosim.cpu_models import CPU_MODELS
from cosim.gdb import monitor
from cosim.gdb.commands import GdbSession
from cosim.gdb.packets import Packet, PacketCodec
from cosim.gdb.spr_regs import (DEBUG_SPRS, FEATURE, MODEL_SPRS, SprWriteRefused, read_spr, spr_layout,
                                write_msr, write_spr)
from cosim.gdb.target import NUM_REGISTERS, REGISTER_NAMES
from cosim.gdb.target_xml import build_target_xml
from cosim.isa import SPR, Dbcr0, GuestDebug, Msr
from cosim.vcpu.core import Core
from cosim.vcpu.runpage import RUNPAGE

from test_gdb_commands import FakeTarget

REQUIRED = (["srr0", "srr1", "csrr0", "csrr1", "dsrr0", "dsrr1", "mcsrr0", "mcsrr1", "esr", "dear",
             "pir", "pvr", "ivpr", "dbcr0", "dbcr1", "dbcr2", "dbsr", "iac1", "iac2", "dac1", "dac2"]
            + [f"sprg{i}" for i in range(8)] + [f"ivor{i}" for i in range(16)])
HOST = GuestDebug.ENABLE | GuestDebug.USE_HW_BP


# --- layout and target description ----------------------------------------------------------------
@pytest.mark.parametrize("model", sorted(CPU_MODELS))
def test_layout_is_qemus_spr_order_with_every_book_e_register(model):
    layout = spr_layout(model)
    names = [n for n, _ in layout]
    assert set(REQUIRED) <= set(names)
    assert [num for _, num in layout] == sorted(num for _, num in layout)   # SPR-number order
    assert len(set(names)) == len(names)
    assert not {"xer", "lr", "ctr", "msr"} & set(names)                     # already core registers
    e500mc_only = {"epcr", "msrp", "ivor36", "ivor37", "ivor40", "ivor41", "ivor42"}
    assert (e500mc_only <= set(names)) == (model == "e500mc")
    assert not e500mc_only & set(names) or model == "e500mc"


def test_every_model_has_a_layout():
    assert set(MODEL_SPRS) == set(CPU_MODELS)
    with pytest.raises(ValueError, match="no SPR layout"):
        spr_layout("e600")


@pytest.mark.parametrize("model", sorted(CPU_MODELS))
def test_target_xml_core_then_spr_feature(model):
    root = ET.fromstring(build_target_xml(model))
    features = root.findall("feature")
    assert [f.get("name") for f in features] == ["org.gnu.gdb.power.core", FEATURE]
    regs = [r for f in features for r in f.findall("reg")]
    assert [r.get("name") for r in regs] == list(REGISTER_NAMES) + [n for n, _ in spr_layout(model)]
    sprs = features[1].findall("reg")
    assert all(r.get("group") == "spr" and r.get("bitsize") == "32" and r.get("regnum") is None
               for r in sprs)
    assert build_target_xml(None).count(b"<feature") == 1


# --- access rules: the same as the guest's mfspr / mtspr ------------------------------------------------
class _NoEngine:
    def set_iac(self, iac):
        pass

    def set_dac(self, dac):
        pass


def _core(model: str, control: int) -> Core:
    rec = np.zeros(1, RUNPAGE)
    rec[0]["dbg_control"] = control
    return Core(_NoEngine(), rec, CPU_MODELS[model], np.zeros(16, ">u4"))


NUMBERS = sorted({num for m in MODEL_SPRS for _, num in spr_layout(m)})


def _cases(seed: int = 13, n: int = 2000):
    rng = random.Random(seed)
    edges = [0, 0xFFFFFFFF, Dbcr0.EDM, Dbcr0.RST, Dbcr0.IDM | Dbcr0.IAC1]
    for number in NUMBERS:
        for host in (False, True):
            yield number, rng.choice(edges), rng.choice(edges), host
    for _ in range(n):
        yield (rng.choice(NUMBERS), rng.getrandbits(32), rng.getrandbits(32), rng.random() < 0.5)


def test_gdb_reads_and_writes_like_the_guest():
    """Every listed SPR, host debugging or not, edge and random values: gdb's read is the guest's
    mfspr, and after gdb's write (refused or not) the SPR holds what the guest's mtspr leaves."""
    for number, old, value, host in _cases():
        control = HOST if host else 0
        core = _core("e500mc", control)
        core.spr[number] = old
        spr = np.zeros(1024, "<u4")
        spr[number] = old
        case = f"SPR {number} old {old:#x} value {value:#x} host {host}"
        assert read_spr(spr, number, control) == core.read_spr(number), case
        core.write_spr(number, value)
        try:
            write_spr(spr, number, value, control)
        except SprWriteRefused:
            assert number in (SPR["PIR"], SPR["PVR"]) or (host and number in DEBUG_SPRS), case
        assert int(spr[number]) == int(core.spr[number]), case


def test_debug_registers_belong_to_the_host_while_it_debugs():
    spr = np.zeros(1024, "<u4")
    spr[SPR["DBCR0"]] = Dbcr0.IDM
    assert read_spr(spr, SPR["DBCR0"], HOST) == Dbcr0.IDM | Dbcr0.EDM
    assert read_spr(spr, SPR["DBCR0"], 0) == Dbcr0.IDM
    with pytest.raises(SprWriteRefused, match="host debugs"):
        write_spr(spr, SPR["IAC1"], 0x1000, HOST)
    assert spr[SPR["IAC1"]] == 0
    with pytest.raises(SprWriteRefused, match="read-only"):
        write_spr(spr, SPR["PVR"], 1, 0)
    spr[SPR["DBSR"]] = 0xF0000000
    assert write_spr(spr, SPR["DBSR"], 0x30000000, 0) == 0xC0000000      # write one to clear
    assert write_spr(spr, SPR["DBCR0"], 0xFFFFFFFF, 0) == 0xFFFFFFFF & ~(Dbcr0.RST | Dbcr0.EDM)
    assert write_spr(spr, SPR["SRR0"], 0x1234, HOST) == 0x1234
    assert write_msr(Msr.DE, 0, HOST) == Msr.DE and write_msr(Msr.DE, 0, 0) == 0


# --- through the protocol -------------------------------------------------------------------------------
class SprTarget(FakeTarget):
    """FakeTarget plus SPRs (register numbers NUM_REGISTERS..) and a monitor."""

    def __init__(self):
        super().__init__()
        self.layout = spr_layout("e500mc")
        self.register_count = NUM_REGISTERS + len(self.layout)
        self.annexes = {b"target.xml": build_target_xml("e500mc")}
        self.sprs = {t: np.zeros(1024, "<u4") for t in self.regs}
        self.commands: list[str] = []

    def read_register(self, tid, regno):
        return read_spr(self.sprs[tid], self.layout[regno - NUM_REGISTERS][1], 0)

    def write_register(self, tid, regno, value):
        if regno >= NUM_REGISTERS:
            write_spr(self.sprs[tid], self.layout[regno - NUM_REGISTERS][1], value, 0)
        else:
            super().write_register(tid, regno, value)

    def monitor(self, command):
        self.commands.append(command)
        return "" if command == "quiet" else f"you said {command}\n"


def _ask(session: GdbSession, payload: bytes) -> bytes:
    codec = PacketCodec()
    codec.feed(session.receive(PacketCodec().send(payload)))
    return next(e for e in codec.events() if isinstance(e, Packet)).payload


def test_p_and_P_reach_sprs_past_the_core_registers():
    t = SprTarget()
    s = GdbSession(t)
    srr0 = NUM_REGISTERS + [n for n, _ in t.layout].index("srr0")
    assert _ask(s, b"P%x=00001234" % srr0) == b"OK"
    assert _ask(s, b"p%x" % srr0) == b"00001234"
    assert t.sprs[1][SPR["SRR0"]] == 0x1234
    assert _ask(s, b"p%x" % t.register_count) == b"E02"
    assert len(_ask(s, b"g")) == NUM_REGISTERS * 8                       # g stays the core registers
    doc = _ask(s, b"qXfer:features:read:target.xml:0,4000")
    assert doc.startswith(b"l") and FEATURE.encode() in doc


def test_plain_target_has_no_sprs():
    s = GdbSession(FakeTarget())
    assert _ask(s, b"p%x" % NUM_REGISTERS) == b"E02"
    assert _ask(s, b"qRcmd," + b"help".hex().encode()) == b""            # gdb: not supported


def test_qrcmd_hex_in_hex_out():
    t = SprTarget()
    s = GdbSession(t)
    assert bytes.fromhex(_ask(s, b"qRcmd," + b"info vcpus".hex().encode()).decode()) == b"you said info vcpus\n"
    assert _ask(s, b"qRcmd," + b"quiet".hex().encode()) == b"OK"
    assert _ask(s, b"qRcmd,zz") == b"E01"
    assert t.commands == ["info vcpus", "quiet"]


# --- the commands ---------------------------------------------------------------------------------------
class Source:
    def strategy(self):
        return {"name": "illegal", "summary": "0x00dddd00 advertised", "cpu": "e500mc", "match": "word",
                "hit_event": "illegal", "planted": 0x00DDDD00, "table_in_kernel": False}

    def breakpoints(self):
        return [{"kind": "sw", "address": 0x10730, "length": 4, "symbol": "bp_target", "saved": 0x38000000,
                 "in_ram": 0x00DDDD00, "owners": ["gdb", "script"], "hits": 7},
                {"kind": "watch", "address": 0x20000, "length": 4, "symbol": None, "saved": None,
                 "in_ram": None, "owners": ["gdb"], "hits": 2}]

    def vcpus(self):
        return [{"index": 0, "state": "stopped (sw)", "pc": 0x10730, "instructions": 12345,
                 "exits": {"vcpu": 30, "userspace": 7}},
                {"index": 1, "state": "halted (exit code 0)", "pc": 0x10800, "instructions": 99,
                 "exits": {"kernel": 1}}]

    def exits(self):
        return {"illegal": {"userspace": 7}, "priv": {"vcpu": 60}}

    def debug(self):
        return [{"index": 0, "control": HOST | GuestDebug.USE_SW_BP, "msr": Msr.DE,
                 "host_iac": [0x10730, None], "host_dac": [(0x20000, 2), None], "dbcr0": Dbcr0.IDM,
                 "dbcr1": 0, "dbcr2": 0, "dbsr": 0, "iac1": 0x500, "iac2": 0, "dac1": 0, "dac2": 0}]

    def gdb_points(self):
        return None                      # no gdb holds the world stopped


class StoppedByGdb(Source):
    def __init__(self, in_place, lifted):
        self.points = {"in_place": in_place, "lifted": lifted}

    def gdb_points(self):
        return self.points


def test_help_lists_every_command():
    text = monitor.run("help", Source())
    for row in monitor.COMMANDS:
        assert row.prefix in text
    assert monitor.run("  ?  ", Source()) == text


def test_info_strategy_names_the_planted_word_and_the_match():
    text = monitor.run("info strategy", Source())
    assert "planted word: 0x00dddd00" in text and "word:" in text and "DEBUG_INST" in text


def test_info_breakpoints_table():
    lines = monitor.run("info breakpoints", Source()).splitlines()
    assert lines[0].split() == ["Num", "Type", "Address", "Len", "Saved", "In", "RAM", "Owner", "Hits"]
    assert lines[1].split() == ["1", "sw", "0x00010730", "<bp_target>", "4", "0x38000000", "0x00dddd00",
                                "gdb,script", "7"]
    assert lines[2].split() == ["2", "watch", "0x00020000", "4", "-", "-", "gdb", "2"]


def test_info_vcpus_and_exits():
    lines = monitor.run("info vcpus", Source()).splitlines()
    assert lines[0].split() == ["vCPU", "State", "PC", "Instructions", "exits@vcpu", "exits@kernel",
                                "exits@userspace"]
    assert lines[1].split() == ["0", "stopped", "(sw)", "0x00010730", "12,345", "30", "0", "7"]
    ex = monitor.run("info exits", Source()).splitlines()
    assert ex[0].split() == ["Event", "vcpu", "userspace", "Total"]
    assert ex[-1].split() == ["total", "60", "7", "67"]


def test_info_debug_shows_host_points_and_guest_registers():
    text = monitor.run("info debug", Source())
    assert "ENABLE|USE_SW_BP|USE_HW_BP" in text
    assert "IAC1=0x00010730" in text and "DAC1=0x00020000/w" in text and "IAC2=-" in text
    assert f"DBCR0=0x{Dbcr0.IDM | Dbcr0.EDM:08x}" in text and "IAC1=0x00000500" in text
    assert "MSR[DE]=1" in text and "owned by: host" in text


def test_unknown_command_says_so():
    assert monitor.run("info tlb", Source()) == "unknown command: 'info tlb'; try 'monitor help'\n"
    assert "unknown command" in monitor.run("", Source())


@pytest.mark.parametrize("command", ["info breakpoints", "info debug"])
def test_a_stop_with_gdbs_points_lifted_says_so_and_how_to_keep_them(command):
    plain = monitor.run(command, Source())
    assert "always-inserted" not in plain
    assert monitor.run(command, StoppedByGdb(in_place=1, lifted=0)) == plain     # always-inserted on
    lifted = monitor.run(command, StoppedByGdb(in_place=0, lifted=2))
    assert lifted.startswith(plain)
    note = lifted[len(plain):]
    assert note.startswith("note: gdb lifted its 2 breakpoint(s)/watchpoint(s) at this stop")
    assert "set breakpoint always-inserted on" in note and note.count("\n") == 1
    assert "none of gdb's breakpoints is in place" in monitor.run(command, StoppedByGdb(0, 0))

