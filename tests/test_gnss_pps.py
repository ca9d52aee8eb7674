"""PPS without a PPS source: pairing on recorded timestamps, the RFC 2783 structures by
their layout, and the "no PPS device" state.  Nothing here ran against real pulses."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from timemon.probes.gnss_pps import (
    PPS_FETCH,
    NoPpsDevice,
    PpsFData,
    PpsKInfo,
    PpsKTime,
    PpsPairer,
    PpsUnpaired,
    edge_from_fdata,
    fdata_for_timeout,
    open_pps,
    wait_dcd,
)

NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # a UTC second
TRUE_OFFSET = 3_250_000  # the local clock is 3.25 ms ahead
LATENCY = 180_000_000  # the receiver sends its sentence 180 ms after the pulse


def feed_second(pairer: PpsPairer, k: int, latency: int = LATENCY) -> None:
    utc = T0 + k * NS
    pairer.add_epoch(utc + TRUE_OFFSET + latency, utc)


def test_each_pulse_pairs_with_its_second() -> None:
    pairer = PpsPairer(fixed_delay=0.15)
    for k in range(5):
        feed_second(pairer, k)
        match = pairer.add_pulse(T0 + (k + 1) * NS + TRUE_OFFSET + 40)
        assert match.utc_second_ns == T0 + (k + 1) * NS
        assert match.offset_ns == TRUE_OFFSET + 40


def test_missed_pulse_does_not_shift_the_next_pairing() -> None:
    pairer = PpsPairer(fixed_delay=0.15)
    for k in range(3):
        feed_second(pairer, k)
    # The pulse of second 3 never comes; second 3's sentence does.
    feed_second(pairer, 3)
    feed_second(pairer, 4)
    match = pairer.add_pulse(T0 + 5 * NS + TRUE_OFFSET)
    assert match.utc_second_ns == T0 + 5 * NS and match.offset_ns == TRUE_OFFSET


def test_late_sentence_is_flagged_and_does_not_mispair() -> None:
    pairer = PpsPairer(fixed_delay=0.15)
    for k in range(4):
        feed_second(pairer, k)
    # Second 4's sentence arrives 900 ms late (after the next pulse): it is not used...
    assert pairer.add_epoch(T0 + 4 * NS + TRUE_OFFSET + LATENCY + 900_000_000, T0 + 4 * NS) is False
    assert pairer.late_sentences == 1
    # ...and the pulse still pairs with the right second.
    match = pairer.add_pulse(T0 + 5 * NS + TRUE_OFFSET)
    assert match.utc_second_ns == T0 + 5 * NS


def test_pulse_before_the_first_fix_is_not_paired() -> None:
    pairer = PpsPairer()
    with pytest.raises(PpsUnpaired) as info:
        pairer.add_pulse(T0 + TRUE_OFFSET)
    assert info.value.reason == "no_fix"


def test_pulse_long_after_the_last_fix_is_not_paired() -> None:
    pairer = PpsPairer(fixed_delay=0.15)
    feed_second(pairer, 0)
    with pytest.raises(PpsUnpaired):
        pairer.add_pulse(T0 + 10 * NS + TRUE_OFFSET)


def test_ambiguous_half_second_is_refused() -> None:
    pairer = PpsPairer(fixed_delay=0.0)  # a wrong fixed delay: 680 ms latency taken as offset
    feed_second(pairer, 0, latency=680_000_000)
    with pytest.raises(PpsUnpaired) as info:
        pairer.add_pulse(T0 + NS + TRUE_OFFSET)
    assert info.value.reason == "pps_ambiguous"


def test_pps_structures_by_layout() -> None:
    """<linux/pps.h>: pps_ktime {s64 sec; s32 nsec; u32 flags} = 16 bytes; pps_kinfo =
    two u32 sequences, two pps_ktime, an int mode, padded to 48; pps_fdata = 64; and
    PPS_FETCH = _IOWR('p', 0xa4, struct pps_fdata *) with a pointer-sized size field."""
    assert ctypes.sizeof(PpsKTime) == 16
    assert PpsKInfo.assert_tu.offset == 8 and PpsKInfo.clear_tu.offset == 24
    assert PpsKInfo.current_mode.offset == 40 and ctypes.sizeof(PpsKInfo) == 48
    assert PpsFData.timeout.offset == 48 and ctypes.sizeof(PpsFData) == 64
    assert PPS_FETCH == 0xC00870A4
    data = fdata_for_timeout(1.5)
    assert (data.timeout.sec, data.timeout.nsec, data.timeout.flags) == (1, 500_000_000, 0)
    assert fdata_for_timeout(None).timeout.flags == 1  # PPS_TIME_INVALID: wait forever
    raw = bytearray(bytes(data))
    raw[0:4] = (41).to_bytes(4, "little")
    raw[8:16] = (1_700_000_001).to_bytes(8, "little")
    raw[16:20] = (123_456_789).to_bytes(4, "little")
    edge = edge_from_fdata(PpsFData.from_buffer_copy(raw))
    assert edge.sequence == 41 and edge.t_ns == 1_700_000_001_123_456_789


def test_layout_matches_the_kernel_header_compiled(tmp_path: Path) -> None:
    """The same numbers from gcc and the installed <linux/pps.h>, where they exist."""
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/linux/pps.h").exists():
        pytest.skip("gcc or linux-libc-dev missing: layout checked against the numbers above")
    src = tmp_path / "pps.c"
    src.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <sys/ioctl.h>\n"
        "#include <linux/pps.h>\nint main(void){printf(\"%zu %zu %zu %zu %lu\\n\","
        "sizeof(struct pps_ktime),sizeof(struct pps_kinfo),sizeof(struct pps_fdata),"
        "offsetof(struct pps_fdata,timeout),(unsigned long)PPS_FETCH);return 0;}\n")
    exe = tmp_path / "pps"
    subprocess.run([gcc, "-o", str(exe), str(src)], check=True, timeout=60)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert [int(x) for x in out] == [ctypes.sizeof(PpsKTime), ctypes.sizeof(PpsKInfo),
                                     ctypes.sizeof(PpsFData), PpsFData.timeout.offset,
                                     PPS_FETCH]


def test_no_pps_device_states() -> None:
    assert not any(Path("/dev").glob("pps*")), "this machine has a PPS device: test it there"
    with pytest.raises(NoPpsDevice) as info:
        open_pps("/dev/pps0")
    assert info.value.reason == "no_pps_device" and "no PPS device" in str(info.value)
    master, slave = os.openpty()
    try:
        with pytest.raises(NoPpsDevice) as info:
            wait_dcd(slave)  # a pty has no modem lines: TIOCMIWAIT fails at once
        assert "TIOCMIWAIT" in str(info.value)
    finally:
        os.close(master)
        os.close(slave)
