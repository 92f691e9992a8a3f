"""QEMU 7.2 as the oracle for U-Boot on the harness (issue 19, item 8): the same keys typed at the same
output; transcripts line by line (masked lines listed), guest instructions until the first command's
handler within 2% of QEMU's TCG-plugin count."""
import shutil

import pytest

from cosim.uboot_oracle import UBOOT, compare

pytestmark = pytest.mark.skipif(not UBOOT.exists() or shutil.which("qemu-system-ppc") is None
                                or shutil.which("cc") is None, reason="needs u-boot-qemu, QEMU and cc")


@pytest.mark.parametrize("cpu", ["e500mc", "e500v2"])
def test_uboot_matches_qemu(cpu):
    """Transcript and instruction count against QEMU. QEMU runs in host time: a key typed late into its
    countdown (this test's reader delayed on a loaded machine) adds countdown-polling instructions to
    QEMU's count only (7.07M against 6.39M seen under load; the harness counts 6.39M every run), so a
    count off by more than 2% is measured again, up to three times."""
    for _ in range(3):
        r = compare(cpu)
        assert r["harness_ok"], r["harness_failed"]
        assert r["transcript"]["same"], r["transcript"]["different"]
        assert r["transcript"]["lines"] > 20
        if abs(r["instructions"]["ratio"] - 1) <= 0.02:
            break
    assert abs(r["instructions"]["ratio"] - 1) <= 0.02, r["instructions"]
