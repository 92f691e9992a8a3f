"""The message schema, without sockets: round trips from one table of cases, and every way a message can
be malformed."""
import msgpack
import pytest

from cosim import wire

CASES = [
    wire.Hello("vcpu0", 123, "ipc:///tmp/x/vcpu0.in", "ipc:///tmp/x/vcpu0.kick"),
    wire.Peers({"kernel": "ipc://a"}, {"vcpu0": "ipc://b"}),
    wire.Start(True),
    wire.Shutdown("run over"),
    wire.Stats("kernel", {"decisions": {"trap:reflect": 3}}),
    wire.Log("userspace", "error", "text"),
    wire.Error("exit", "bad"),
    wire.ExitMsg(0, 1, "trap", 0x10760, 0x7FE00008, 6, 0x10760, 0x02000000),
    wire.ExitMsg(3, 9, "hcall", 0x100, 0x44000022, 8, 0x104, 0, 1, 0, 0, 0, False, 0, 5, 1),
    wire.Resume(0, 1, "reflect", "kernel"),
    wire.Resume(0, 2, "emulate", "kernel", pc=0x104, r3=12),
    wire.Resume(1, 2, "step_over", "userspace", pc=0x10760, word=0x38000000),
    wire.DebugExit(0, 1, 0x10760, 0, "illegal", 0x10760, 0x00DDDD00, 6, 0x10760, 0x08000000),
    wire.Pause(4), wire.Paused(0, 4, 2, 0x10000),
    wire.Continue(5), wire.Continue(5, [0x10760, 0x10780], False, True, True, False),
    wire.SetGuestDebug(0, 6, 0x10001, [0x10760, 0], [True, False], [0, 0], [0, 0]),
    wire.TableUpdate(7, [0x10760], []), wire.GetOneReg(8, "DEBUG_INST"), wire.OneReg(8, "DEBUG_INST", None),
    wire.Ack(9, "table_update"), wire.Halted(0, 0, "guest halted", 0x1234),
    wire.Detach(1), wire.Detached(1, 2), wire.Detach(1, "run over: completed", 0),
    wire.Shutdown("run over: completed", 3),
    wire.Sync(1, {"vcpu0": 3, "kernel": 1}, 123_456), wire.Synced("userspace", 1, {"vcpu1": 7}, 200_000),
    wire.RunFor(2, 5000, {"userspace": 4}), wire.Deliver(3, {}),
    wire.Ran(1, 2, "exit", 987_654, {"kernel": 12, "supervisor": 3}),
    wire.MmioExit(0, 1, 0xFE0004505, 1, False), wire.MmioExit(0, 2, 0xFE0004500, 1, True, 0x55, True),
    wire.MmioDone(1, 0x60), wire.SerialIn(b"version\r"), wire.IrqLine(0, True), wire.IrqProxy(True, 0xFE00400A0), wire.Doorbell(1, 0, False, 0), wire.PowerOff(0, "serial console showed '=> '"),
    wire.ReleaseVcpu(0x10000, {"3": 0x55, "7": 0x4000000}, [[0x10010000, 0x80000B00, 0x4, 0x3F, 0]]),
]


@pytest.mark.parametrize("msg", CASES, ids=lambda m: m.TAG)
def test_round_trip(msg):
    back = wire.decode(wire.encode(msg))
    assert type(back) is type(msg)
    assert [list(v) if isinstance(v, tuple) else v for v in back] == \
        [list(v) if isinstance(v, tuple) else v for v in msg]


def test_every_message_type_has_a_case():
    assert {m.TAG for m in CASES} == set(wire.MESSAGES)


def test_board_messages_are_range_checked():
    for bad, field in ((wire.MmioExit(0, 1, 1 << 36, 1, False), "paddr"), (wire.MmioExit(0, 1, 0, 9, False), "size"),
                       (wire.ReleaseVcpu(0x10000, {}, [[1 << 32]]), "tlb1")):
        with pytest.raises(wire.WireError, match=field):
            wire.decode(wire.encode(bad))


@pytest.mark.parametrize("data,problem", [
    (b"\xc1", "not msgpack"),
    (msgpack.packb({"a": 1}), "not a message"),
    (msgpack.packb([1]), "not a message"),
    (msgpack.packb([2, "pause", 1]), "version 2 not supported"),
    (msgpack.packb([1, "reboot", 1]), "unknown message type 'reboot'"),
    (msgpack.packb([1, 7, 1]), "unknown message type 7"),
    (msgpack.packb([1, "pause"]), "pause: expected 1 fields, got 0"),
    (msgpack.packb([1, "pause", 1, 2]), "pause: expected 1 fields, got 2"),
    (msgpack.packb([1, "pause", "1"]), "pause.seq: bad value '1'"),
    (msgpack.packb([1, "pause", True]), "pause.seq: bad value True"),
    (msgpack.packb([1, "table_update", 1, [1, "x"], []]), "table_update.insert: bad value"),
    (msgpack.packb([1, "one_reg", 1, "DEBUG_INST", "x"]), "one_reg.value: bad value"),
])
def test_malformed(data, problem):
    with pytest.raises(wire.WireError) as e:
        wire.decode(data)
    assert problem in str(e.value)


def test_error_reply_names_the_tag():
    assert wire.error_for(msgpack.packb([1, "pause", "x"]), "r") == wire.Error("pause", "r")
    assert wire.error_for(b"\xc1", "r").tag == "?"
