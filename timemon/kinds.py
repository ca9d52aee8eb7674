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
        from timemon.analysis.masks import MASKS
    for name in masks:
        if name not in MASKS:
            raise fail(f"unknown mask {name!r}; expected one of: {', '.join(MASKS)}", "masks")
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


KINDS: dict[str, KindSpec] = {
    "ntp": KindSpec(frozenset({"address", "lab", "timeout", "interleaved"}),
                    NTP_DEFAULT_INTERVAL, _parse_ntp, _build_ntp),
    "kernel": KindSpec(frozenset(), KERNEL_DEFAULT_INTERVAL, _parse_kernel, _build_kernel,
                       default_name="kernel", reference=False),
}
