"""Epoch decoding of UBX health messages, on frames built with pyubx2 (an independent
encoder), and of the fix/status mappings."""

from __future__ import annotations

from pyubx2 import UBXMessage
from timemon.probes.gnss_decode import Epoch, EpochDecoder
from timemon.probes.gnss_stream import Frame, split_bytes


def feed_all(*raws: bytes) -> tuple[EpochDecoder, Epoch | None]:
    decoder = EpochDecoder()
    for event in split_bytes(b"".join(raws)):
        assert isinstance(event, Frame), event
        decoder.feed(event)
    return decoder, decoder.flush()


def nav_pvt(itow: int = 345_618_000, fix_type: int = 3, fix_ok: int = 1, **kw) -> bytes:
    fields = dict(iTOW=itow, year=2024, month=3, day=24, hour=0, min=0, second=0,
                  validDate=1, validTime=1, fixType=fix_type, gnssFixOk=fix_ok, numSV=9,
                  tAcc=25, nano=-1200, pDOP=1.5)
    fields.update(kw)
    return UBXMessage("NAV", "NAV-PVT", 0, **fields).serialize()


def test_mon_hw_antenna_and_jamming() -> None:
    raw = UBXMessage("MON", "MON-HW", 0, aStatus=4, jamInd=77, jammingState=2).serialize()
    assert len(raw) == 8 + 60
    decoder, _ = feed_all(raw, nav_pvt())
    assert (decoder.antenna_status, decoder.jamming_indicator, decoder.jamming_state) == (4, 77, 2)
    _, epoch = feed_all(raw, nav_pvt())
    assert epoch is not None and epoch.antenna_status == 4 and epoch.jamming_indicator == 77
    assert epoch.as_json()["antenna_status_text"] == "open"


def test_mon_rf_worst_band_wins() -> None:
    raw = UBXMessage("MON", "MON-RF", 0, version=0, nBlocks=2,
                     blockId_01=0, antStatus_01=2, jamInd_01=12, jammingState_01=1,
                     blockId_02=1, antStatus_02=3, jamInd_02=40, jammingState_02=1).serialize()
    _, epoch = feed_all(raw, nav_pvt())
    assert epoch is not None
    assert (epoch.antenna_status, epoch.jamming_indicator, epoch.jamming_state) == (3, 40, 1)


def test_f9t_capture_mon_rf() -> None:
    from gnss_support import capture_body
    from timemon.probes.gnss_decode import decode_frames
    events = split_bytes(capture_body("ublox-zed-f9t-ubx_nmea_l5.log"))
    epochs = decode_frames([e for e in events if isinstance(e, Frame)])
    assert epochs[-1].antenna_status == 2  # the F9T's MON-RF says antenna OK
    assert epochs[-1].jamming_indicator is not None
    assert epochs[-1].clock_bias_seconds is not None  # NAV-CLOCK


def test_tim_tp_qerr_and_qerr_invalid() -> None:
    tp = UBXMessage("TIM", "TIM-TP", 0, towMS=345_619_000, qErr=-1500, week=2307).serialize()
    decoder, _ = feed_all(tp, nav_pvt())
    assert decoder.qerr == -1.5e-9
    assert decoder.next_pulse == (2307, 345_619_000, 0)
    bad = UBXMessage("TIM", "TIM-TP", 0, towMS=345_619_000, qErr=-1500, week=2307,
                     qErrInvalid=1).serialize()
    decoder, _ = feed_all(bad, nav_pvt())
    assert decoder.qerr is None


def test_survey_in_tim_svin_and_nav_svin() -> None:
    tim = UBXMessage("TIM", "TIM-SVIN", 0, dur=600, meanV=250_000, obs=600, valid=0,
                     active=1).serialize()
    decoder, _ = feed_all(tim, nav_pvt())
    assert decoder.survey_active is True and decoder.survey_valid is False
    assert abs(decoder.survey_accuracy - 0.5) < 1e-12  # sqrt(250000 mm^2) = 500 mm
    nav = UBXMessage("NAV", "NAV-SVIN", 0, iTOW=345_618_000, dur=3600, meanAcc=12_345,
                     obs=3600, valid=1, active=0).serialize()
    decoder, _ = feed_all(nav)
    assert decoder.survey_valid is True and decoder.survey_active is False
    assert abs(decoder.survey_accuracy - 1.2345) < 1e-12  # 0.1 mm units


def test_nav_timeutc_beats_nav_pvt_and_gives_tacc() -> None:
    utc = UBXMessage("NAV", "NAV-TIMEUTC", 0, iTOW=345_618_000, tAcc=12, nano=250,
                     year=2024, month=3, day=24, hour=0, min=0, sec=0, validTOW=1, validWKN=1,
                     validUTC=1).serialize()
    clock = UBXMessage("NAV", "NAV-CLOCK", 0, iTOW=345_618_000, clkB=-881036, clkD=-63,
                       tAcc=30).serialize()
    _, epoch = feed_all(nav_pvt(), clock, utc)
    assert epoch is not None
    assert epoch.utc_from == "NAV-TIMEUTC" and epoch.utc == "2024-03-24T00:00:00.000000250Z"
    assert abs(epoch.time_accuracy_seconds - 12e-9) < 1e-18
    assert abs(epoch.clock_bias_seconds + 881036e-9) < 1e-15
    assert abs(epoch.clock_drift_ratio + 63e-9) < 1e-18
    assert epoch.messages == ["NAV-PVT", "NAV-CLOCK", "NAV-TIMEUTC"]  # one epoch


def test_ubx_fix_types_as_gpsd_numbers_them() -> None:
    cases = {(0, 1): (1, 0), (1, 1): (2, 5), (2, 1): (2, 1), (3, 1): (3, 1), (4, 1): (3, 6),
             (5, 1): (3, 7), (3, 0): (1, 0)}
    for (fix_type, ok), want in cases.items():
        _, epoch = feed_all(nav_pvt(fix_type=fix_type, fix_ok=ok))
        assert epoch is not None and (epoch.fix_mode, epoch.fix_status) == want, fix_type
    _, epoch = feed_all(nav_pvt(carrSoln=2))
    assert epoch is not None and epoch.fix_status == 3  # RTK fixed


def test_epochs_split_on_itow_and_nav_eoe() -> None:
    eoe = UBXMessage("NAV", "NAV-EOE", 0, iTOW=345_618_000).serialize()
    decoder = EpochDecoder()
    out = []
    for event in split_bytes(nav_pvt() + eoe + nav_pvt(itow=345_619_000, second=1)):
        out += decoder.feed(event)
    assert len(out) == 1 and out[0].utc.startswith("2024-03-23T23:59:59.99999")
    last = decoder.flush()
    assert last is not None and last.utc.startswith("2024-03-24T00:00:00.99999")


def test_nmea_gga_quality_and_rmc_void() -> None:
    gga0 = b"$GPGGA,113258,3238.9148,N,10822.4466,W,0,00,,,M,,M,,*44\r\n"
    rmcv = b"$GPRMC,113258,V,,,,,,,181022,,*35\r\n"
    decoder = EpochDecoder()
    for event in split_bytes(gga0 + rmcv):
        assert isinstance(event, Frame), event
        decoder.feed(event)
    epoch = decoder.flush()
    assert epoch is not None and (epoch.fix_mode, epoch.fix_status) == (1, 0)
    assert epoch.utc == "2022-10-18T11:32:58Z"
