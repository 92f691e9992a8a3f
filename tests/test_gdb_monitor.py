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
    instructions = timebase = clock = 0           # a vCPU stopped at instruction 0 (timer SPRs)
    shares_clock = False                          # one vCPU: its time-base writes are its own

    def set_iac(self, iac):
        pass

    def set_deadline(self, count):
        pass

    def set_timebase(self, tb):
        pass

    def set_native_spr(self, spr, value):
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
        if number == SPR["DEC"]:                  # DEC lives in the timers: the guest wrote it, the stop shows it
            core.write_spr(number, old)
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

    def refused(self):
        return []


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
    assert monitor.run("info nonsense", Source()) == "unknown command: 'info nonsense'; try 'monitor help'\n"
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



# --- QEMU's HMP commands (cosim/gdb/monitor_qemu.py) -----------------------------------------------------
class Qemu(Source):
    """Source plus what the HMP commands read: 2 vCPUs, 64 KiB of RAM."""

    def __init__(self, tlb=None):
        self.cpu = 0
        self.ram = bytearray(0x10000)
        self.ram[0x100:0x108] = bytes.fromhex("38000000 00dddd00")
        self.ram[0x200:0x204] = b"Hi!\n"
        self.tlb_rows = tlb
        self.resets = 0
        self.refused_list: list[str] = []

    def cpu_count(self):
        return 2

    def current_cpu(self):
        return self.cpu

    def set_current_cpu(self, index):
        self.cpu = index

    def cpu_registers(self, index):
        regs = {f"r{i}": i + 0x100 * index for i in range(32)}
        regs.update(pc=0x100 + 4 * index, msr=0x1000, cr=0x48000002, lr=0x104, ctr=7, xer=0,
                    srr0=0x10, srr1=0x20, pvr=0x80230020, pir=index, dbcr0=0x80000000)
        return regs

    def read_memory(self, address, length, physical, cpu):
        if address + length > len(self.ram):
            raise ValueError(f"{address:#x} is outside guest RAM")
        return bytes(self.ram[address:address + length])

    def resolve(self, name):
        return {"bp_target": 0x100, "msg": 0x200}.get(name)

    def status(self):
        return "paused (debug)"

    def system_reset(self):
        self.resets += 1
        return ""

    def memory_map(self):
        return [{"start": 0, "end": 0xFFFF, "kind": "ram", "name": "cosim.guest-ram"}]

    def roms(self):
        return [{"address": 0x100, "size": 0x10, "name": "x.elf segment 0"}]

    def tlb(self):
        return self.tlb_rows

    def refused(self):
        return self.refused_list


def test_info_registers_as_qemu_prints_them():
    src = Qemu()
    lines = monitor.run("info registers", src).splitlines()
    assert lines[0] == "NIP 00000100   LR 00000104 CTR 00000007 XER 00000000 CPU#0"
    assert lines[1] == "MSR 00001000"
    assert lines[2] == "GPR00 " + " ".join(f"{i:08x}" for i in range(8))
    assert lines[5].startswith("GPR24 00000018")
    assert lines[6] == "CR 48000002  [ G  L  -  -  -  -  -  E  ]"
    assert any(x.split()[:4] == ["SRR0", "00000010", "SRR1", "00000020"] for x in lines)
    assert monitor.run("info reg", src) == monitor.run("info registers", src)          # alias
    both = monitor.run("info registers -a", src)
    assert "CPU#0" in both and "CPU#1" in both
    assert monitor.run("cpu 1", src) == "" and src.cpu == 1
    assert "CPU#1" in monitor.run("info registers", src)
    assert monitor.run("cpu 2", src).startswith("usage: cpu N") and src.cpu == 1
    assert monitor.run("info registers x", src).startswith("usage: info registers")


@pytest.mark.parametrize("command,want", [
    ("x /2xw 0x100", "00000100: 0x38000000 0x00dddd00\n"),
    ("x/2xw bp_target", "00000100: 0x38000000 0x00dddd00\n"),
    ("x /2x $pc", "00000100: 0x38000000 0x00dddd00\n"),
    ("x /4xb bp_target+4", "00000104: 0x00 0xdd 0xdd 0x00\n"),
    ("x /2dh 0x104", "00000104: 221 -8960\n"),
    ("x /1uw 0x104", "00000104: 14540032\n"),
    ("x /4c msg", "00000200: 'H' 'i' '!' '\\x0a'\n"),
    ("xp /1xw 0x100", "0000000000000100: 0x38000000\n"),
    ("xp/1xg 0x100", "0000000000000100: 0x3800000000dddd00\n"),
    ("x 0x100", "00000100: 0x38000000\n"),
])
def test_x_and_xp_as_qemu_prints_them(command, want):
    assert monitor.run(command, Qemu()) == want


def test_x_needs_a_format_an_address_and_memory():
    src = Qemu()
    assert monitor.run("x", src).startswith("usage: x /fmt addr")
    assert monitor.run("x /2q 0x100", src).startswith("usage: x /fmt addr")
    assert monitor.run("x /2xw nowhere", src) == "x: 'nowhere' is neither a number, a $register nor a guest symbol\n"
    assert monitor.run("xp /4xw 0xfffc", src).startswith("xp: ")
    assert monitor.run("x /1xw 0xfffc", src) == "0000fffc: 0x00000000\n"            # the last word


def test_x_i_disassembles():
    pytest.importorskip("capstone")
    assert monitor.run("x /2i 0x100", Qemu()) == ("0x00000100:  38000000  li r0, 0\n"
                                                  "0x00000104:  00dddd00  .long 0x00dddd00\n")


def test_machine_commands_and_maps():
    src = Qemu()
    assert monitor.run("stop", src) == "VM status: paused (debug)\n"
    assert monitor.run("info status", src) == "VM status: paused (debug)\n"
    cont = monitor.run("cont", src)
    assert "gdb's own 'continue'" in cont and monitor.run("c", src) == cont
    assert monitor.run("system_reset", src) == "" and src.resets == 1
    assert monitor.run("info mtree", src) == ("address-space: memory\n"
                                              "  0000000000000000-000000000000ffff (prio 0, ram): cosim.guest-ram\n")
    assert monitor.run("info roms", src) == 'addr=0000000000000100 size=0x000010 mem=ram name="x.elf segment 0"\n'


def test_info_tlb_is_the_mmus_hook():
    assert "has no guest MMU" in monitor.run("info tlb", Qemu())
    assert monitor.run("info tlb", Qemu(tlb=[])) == "No valid TLB entries.\n"
    rows = monitor.run("info tlb", Qemu(tlb=[{"tlb": 1, "index": 0, "valid": 1, "tid": 0, "ts": 0,
                                               "epn": 0xC0000000, "rpn": 0, "size": 0x10000000,
                                               "perms": "SR SW SX"}])).splitlines()
    assert rows[0].split()[:3] == ["TLB", "Idx", "V"]
    assert rows[1].split() == ["1", "0", "1", "0", "0", "00000000c0000000", "0000000000000000", "0x10000000",
                               "SR", "SW", "SX"]


def test_help_names_every_alias_and_refusals_are_explained():
    src = Qemu()
    text = monitor.run("help", src)
    for alias in ("? = help", "info cpus = info vcpus", "info break = info breakpoints", "c = cont"):
        assert alias in text
    src.refused_list = ["watch 0x2000 (64 bytes): needs both DAC slots"] * 2
    out = monitor.run("info breakpoints", src)
    assert out.count("needs both DAC slots") == 1 and "too many hardware breakpoints" in out
