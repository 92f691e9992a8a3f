"""Exit counts per time bin (cosim/exit_rate.py), on a clock the test drives: every tick lands in its
bin, none is lost when the bins coarsen, memory stays bounded, and `align` gives the report one width
and one length for every vCPU."""
from cosim.exit_rate import BIN_NS, MAX_BINS, ExitRate, align


class Clock:
    def __init__(self, t: int = 0):
        self.t = t

    def __call__(self) -> int:
        return self.t


def test_ticks_land_in_their_bins_from_the_origin():
    clock = Clock(5_000)
    rate = ExitRate(origin_ns=1_000, clock=clock)
    rate.tick()                                   # 4 us after the origin: bin 0
    clock.t = 1_000 + 3 * BIN_NS + 7              # bin 3
    rate.tick()
    rate.tick()
    clock.t = 1_000 + 3 * BIN_NS - 1              # the last ns of bin 2
    rate.tick()
    assert rate.snapshot() == {"bin_ns": BIN_NS, "counts": [1, 0, 1, 2]}


def test_a_clock_before_the_origin_counts_in_the_first_bin():
    rate = ExitRate(origin_ns=10 * BIN_NS, clock=Clock(0))
    rate.tick()
    assert rate.snapshot()["counts"] == [1]


def test_a_long_run_coarsens_and_loses_no_exit():
    clock = Clock()
    rate = ExitRate(origin_ns=0, clock=clock)
    ticks = 0
    for k in range(0, 5 * MAX_BINS * BIN_NS, BIN_NS // 3):     # ~3 exits per bin, over 5 x MAX_BINS bins
        clock.t = k
        rate.tick()
        ticks += 1
    snap = rate.snapshot()
    assert snap["bin_ns"] == 8 * BIN_NS                          # 10 -> 20 -> 40 -> 80 ms
    assert len(snap["counts"]) <= MAX_BINS
    assert sum(snap["counts"]) == ticks
    assert snap["counts"][0] == sum(1 for k in range(0, 8 * BIN_NS, BIN_NS // 3))


def test_align_to_the_widest_bin_and_the_longest_series():
    out = align([{"bin_ns": BIN_NS, "counts": [1, 2, 3, 4, 5]},
                 None,                                           # a vCPU whose stats never came
                 {"bin_ns": 2 * BIN_NS, "counts": [7]}])
    assert out == {"bin_seconds": 2 * BIN_NS / 1e9, "by_vcpu": [[3, 7, 5], None, [7, 0, 0]]}
    assert align([]) == {"bin_seconds": BIN_NS / 1e9, "by_vcpu": []}
