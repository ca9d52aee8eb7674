"""The registry of source kinds: what each accepts in the config, and how it is built.

A new probe adds one ``KindSpec`` here: the keys it accepts besides ``name``,
``kind`` and ``interval``, its default interval, a ``parse`` that checks those
keys and returns the options its source is built with, and ``build``.  Probe
modules are imported only in ``build``, so reading a config stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from timemon.address import AddressError, parse_host_port
from timemon.units import parse_duration

if TYPE_CHECKING:
    from timemon.config import SourceConfig
    from timemon.source import Source

# fail(message, key) returns the ConfigError to raise, pointing at the key's line.
Fail = Callable[[str, "str | None"], Exception]


@dataclass(frozen=True)
class KindSpec:
    keys: frozenset[str]
    default_interval: float
    parse: Callable[[dict[str, Any], float, Fail], dict[str, Any]]
    build: Callable[[SourceConfig], Source]
    default_name: str | None = None
    #: A reference (not the kernel) has an offset, and so live statistics.
    reference: bool = True


# Keys every reference kind accepts for its live statistics (issue 4).
STABILITY_KEYS = frozenset({"stability_window", "max_tau", "masks"})
DEFAULT_STABILITY_WINDOW = 16384
MIN_STABILITY_WINDOW = 16
MAX_STABILITY_WINDOW = 1 << 22


def parse_stability(raw: dict[str, Any], interval: float, fail: Fail) -> dict[str, Any]:
    """``stability_window`` (samples), ``max_tau`` (longest exported tau), ``masks``."""
    window = raw.get("stability_window", DEFAULT_STABILITY_WINDOW)
    if (isinstance(window, bool) or not isinstance(window, int)
            or not MIN_STABILITY_WINDOW <= window <= MAX_STABILITY_WINDOW):
        raise fail(f"stability_window must be a whole number of samples from "
                   f"{MIN_STABILITY_WINDOW} to {MAX_STABILITY_WINDOW}", "stability_window")
    max_tau = require_duration(raw, "max_tau", 0.0, fail) if "max_tau" in raw else None
    if max_tau is not None and max_tau < interval:
        raise fail(f"max_tau {max_tau:g} s is shorter than the interval {interval:g} s",
                   "max_tau")
    masks = raw.get("masks", [])
    if not isinstance(masks, list) or not all(isinstance(m, str) for m in masks):
        raise fail("masks must be a list of mask names, e.g. [\"G.8272-PRTC-A\"]", "masks")
    if masks:
        from timemon.analysis.masks import UnknownMask, get_mask

        for name in masks:
            try:
                get_mask(name)
            except UnknownMask as exc:
                raise fail(str(exc), "masks") from exc
    return {"stability_window": window, "max_tau": max_tau, "masks": tuple(masks)}


def require_bool(raw: dict[str, Any], key: str, default: bool, fail: Fail) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise fail(f"'{key}' must be true or false", key)
    return value


def require_duration(raw: dict[str, Any], key: str, default: float, fail: Fail) -> float:
    try:
        return parse_duration(raw.get(key, default))
    except ValueError as exc:
        raise fail(f"{key}: {exc}", key) from exc


# -- ntp ---------------------------------------------------------------------------

NTP_DEFAULT_INTERVAL = 64.0
NTP_MIN_INTERVAL = 16.0  # RFC 4330: do not poll a server you do not operate faster
NTP_MIN_INTERVAL_LAB = 1.0


def _parse_ntp(raw: dict[str, Any], interval: float, fail: Fail) -> dict[str, Any]:
    if "address" not in raw:
        raise fail("missing 'address' (host or host:port, IPv6 as [addr]:port)", None)
    try:
        address = parse_host_port(str(raw["address"]), 123)
    except AddressError as exc:
        raise fail(f"address: {exc}", "address") from exc
    lab = require_bool(raw, "lab", False, fail)
    floor = NTP_MIN_INTERVAL_LAB if lab else NTP_MIN_INTERVAL
    if interval < floor:
        hint = "" if lab else " (set lab = true for a server you operate: floor 1 s)"
        raise fail(f"interval {interval:g} s is below the floor of {floor:g} s{hint}",
                   "interval")
    return {
        "address": address,
        "lab": lab,
        "interleaved": require_bool(raw, "interleaved", True, fail),
        "timeout": require_duration(raw, "timeout", 2.0, fail),
    }


def _build_ntp(sc: SourceConfig) -> Source:
    from timemon.probes.ntp import NtpSource

    return NtpSource(sc.name, sc.options["address"], interval=sc.interval,
                     lab=sc.options["lab"], timeout=sc.options["timeout"],
                     interleaved=sc.options["interleaved"])


# -- kernel ------------------------------------------------------------------------

KERNEL_DEFAULT_INTERVAL = 10.0


def _parse_kernel(raw: dict[str, Any], interval: float, fail: Fail) -> dict[str, Any]:
    return {}


def _build_kernel(sc: SourceConfig) -> Source:
    from timemon.probes.kernel import KernelSource

    return KernelSource(sc.name, interval=sc.interval)


# -- ptp ---------------------------------------------------------------------------

PTP_DEFAULT_UDS = "/var/run/ptp4l"  # ptp4l's uds_address default
PTP_DEFAULT_DOMAIN = 0
PTP_DEFAULT_INTERVAL = 1.0  # ptp4l's default sync rate; a local socket, cheap to read
PTP_MIN_INTERVAL = 0.1
UNIX_PATH_MAX = 107  # sun_path is 108 octets with the terminating NUL


def _parse_ptp(raw: dict[str, Any], interval: float, fail: Fail) -> dict[str, Any]:
    uds = raw.get("uds", PTP_DEFAULT_UDS)
    if not isinstance(uds, str) or not uds or len(uds.encode()) > UNIX_PATH_MAX:
        raise fail(f"uds must be the path of ptp4l's socket (its uds_address), at most "
                   f"{UNIX_PATH_MAX} bytes", "uds")
    domain = raw.get("domain", PTP_DEFAULT_DOMAIN)
    if isinstance(domain, bool) or not isinstance(domain, int) or not 0 <= domain <= 255:
        raise fail("domain must be ptp4l's domainNumber, a whole number 0-255", "domain")
    if interval < PTP_MIN_INTERVAL:
        raise fail(f"interval {interval:g} s is below the floor of {PTP_MIN_INTERVAL:g} s",
                   "interval")
    return {"uds": uds, "domain": domain}


def _build_ptp(sc: SourceConfig) -> Source:
    from timemon.probes.ptp import PtpSource

    return PtpSource(sc.name, sc.options["uds"], domain=sc.options["domain"],
                     interval=sc.interval)


# -- gnss --------------------------------------------------------------------------

GNSS_DEFAULT_INTERVAL = 1.0  # receivers report once a second; only used for reporting
# 9600 Bd: the factory default of u-blox, Quectel and most current receivers (the
# NMEA 0183 standard's 4800 is set explicitly for older ones).
GNSS_DEFAULT_BAUD = 9600
GNSS_BAUDS = frozenset({1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400,
                        460800, 921600})


def _parse_gnss(raw: dict[str, Any], interval: float, fail: Fail) -> dict[str, Any]:
    device = raw.get("device")
    if not isinstance(device, str) or not device:
        raise fail("missing 'device' (a serial port such as \"/dev/ttyACM0\", or "
                   "\"gpsd://HOST:PORT\")", "device" if "device" in raw else None)
    if device.startswith("gpsd://"):
        try:
            parse_host_port(device[len("gpsd://"):].rstrip("/") or "127.0.0.1", 2947)
        except AddressError as exc:
            raise fail(f"device: {exc}", "device") from exc
    elif not device.startswith("/"):
        raise fail("device must be an absolute path (/dev/tty...) or gpsd://HOST:PORT",
                   "device")
    baud = raw.get("baud", GNSS_DEFAULT_BAUD)
    if isinstance(baud, bool) or baud not in GNSS_BAUDS:
        raise fail(f"baud must be one of {', '.join(map(str, sorted(GNSS_BAUDS)))}", "baud")
    delay = raw.get("fixed_delay", 0)
    fixed_delay = 0.0 if delay == 0 and not isinstance(delay, bool) else \
        require_duration(raw, "fixed_delay", 0.0, fail)
    if fixed_delay >= 1.0:
        raise fail("fixed_delay is the receiver's output latency: less than 1 s",
                   "fixed_delay")
    pps = raw.get("pps", "")
    if not isinstance(pps, str) or not (pps in ("", "dcd") or pps.startswith("/dev/pps")):
        raise fail('pps must be "" (none), "dcd" (the port\'s DCD line) or "/dev/ppsN"', "pps")
    if pps and device.startswith("gpsd://"):
        raise fail("pps is read by gpsd on a gpsd:// device: leave pps out", "pps")
    return {"device": device, "baud": int(baud), "fixed_delay": fixed_delay, "pps": pps}


def _build_gnss(sc: SourceConfig) -> Source:
    from timemon.probes.gnss import GnssSource

    return GnssSource(sc.name, sc.options["device"], baud=sc.options["baud"],
                      fixed_delay=sc.options["fixed_delay"], interval=sc.interval,
                      pps=sc.options["pps"])


# -- chrony ------------------------------------------------------------------------

CHRONY_DEFAULT_SOCKET = "/run/chrony/chronyd.sock"  # chronyd's bindcmdaddress default
CHRONY_DEFAULT_PORT = 323  # chronyd's cmdport
CHRONY_DEFAULT_INTERVAL = 16.0
CHRONY_MIN_INTERVAL = 0.5


def _parse_chrony(raw: dict[str, Any], interval: float, fail: Fail) -> dict[str, Any]:
    if "socket" in raw and "address" in raw:
        raise fail("give 'socket' (the Unix command socket) or 'address' (UDP, port 323), "
                   "not both", "address")
    address = None
    if "address" in raw:
        try:
            address = parse_host_port(str(raw["address"]), CHRONY_DEFAULT_PORT)
        except AddressError as exc:
            raise fail(f"address: {exc}", "address") from exc
    sock = raw.get("socket", CHRONY_DEFAULT_SOCKET) if address is None else None
    if sock is not None and (not isinstance(sock, str) or not sock.startswith("/")
                             or len(sock.encode()) > UNIX_PATH_MAX):
        raise fail(f"socket must be the absolute path of chronyd's command socket "
                   f"(bindcmdaddress), at most {UNIX_PATH_MAX} bytes", "socket")
    if interval < CHRONY_MIN_INTERVAL:
        raise fail(f"interval {interval:g} s is below the floor of {CHRONY_MIN_INTERVAL:g} s",
                   "interval")
    return {"socket": sock, "address": address}


def _build_chrony(sc: SourceConfig) -> Source:
    from timemon.probes.chrony import ChronySource

    return ChronySource(sc.name, sc.options["socket"], sc.options["address"],
                        interval=sc.interval)


KINDS: dict[str, KindSpec] = {
    "gnss": KindSpec(frozenset({"device", "baud", "fixed_delay", "pps"}),
                     GNSS_DEFAULT_INTERVAL, _parse_gnss, _build_gnss),
    "ntp": KindSpec(frozenset({"address", "lab", "timeout", "interleaved"}),
                    NTP_DEFAULT_INTERVAL, _parse_ntp, _build_ntp),
    "kernel": KindSpec(frozenset(), KERNEL_DEFAULT_INTERVAL, _parse_kernel, _build_kernel,
                       default_name="kernel", reference=False),
    "ptp": KindSpec(frozenset({"uds", "domain"}), PTP_DEFAULT_INTERVAL, _parse_ptp, _build_ptp),
    "chrony": KindSpec(frozenset({"socket", "address"}), CHRONY_DEFAULT_INTERVAL, _parse_chrony,
                       _build_chrony, default_name="chronyd"),
}
