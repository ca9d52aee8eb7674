"""adjtimex decoding: the struct layout is checked against kernel constants."""

from __future__ import annotations

import pytest
from timemon.probes.kernel import STA_UNSYNC, KernelSource, read_kernel_clock, status_flag_names

from timemon.families import Families


def test_struct_layout_gives_the_kernels_constants() -> None:
    clock = read_kernel_clock()
    # MAXFREQ is 500 ppm in every Linux kernel (include/linux/timex.h); a wrong
    # struct layout would put another field here.
    assert clock.tolerance_ratio == pytest.approx(500e-6)
    # tick is 1e6/USER_HZ µs = 10 ms with USER_HZ = 100, unless someone adjusted it.
    assert clock.tick_seconds == pytest.approx(0.01, rel=0.1)
    assert 0 <= clock.clock_state <= 5
    assert clock.sync_status == (0 if clock.status & STA_UNSYNC else 1)
    assert clock.maxerror_seconds >= 0 and clock.estimated_error_seconds >= 0


def test_status_flag_names() -> None:
    assert status_flag_names(0x0041) == ["STA_PLL", "STA_UNSYNC"]


def test_kernel_source_exports_only_kernel_families() -> None:
    src = KernelSource(interval=1.0)
    src.poll_once()
    out = Families()
    src.collect(out)
    names = {f.name for f in out}
    assert names and all(n.startswith("timemon_kernel_") for n in names)
    assert "timemon_kernel_tai_offset_seconds" in names
