"""Parsing ``host``, ``host:port`` and ``[v6addr]:port`` as written in config and CLI."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import cached_property

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")


class AddressError(ValueError):
    pass


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @cached_property  # asked before every NTP poll
    def is_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str, default_port: int) -> HostPort:
    """``example.org``, ``192.0.2.1:123``, ``[2001:db8::1]:123`` or a bare ``2001:db8::1``."""
    text = text.strip()
    if not text:
        raise AddressError("empty address")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise AddressError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:close], text[close + 1:]
        if rest and not rest.startswith(":"):
            raise AddressError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise AddressError(f"{text!r}: {host!r} is not an IPv6 address") from exc
    elif text.count(":") > 1:
        host, port_text = text, ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise AddressError(f"{text!r}: write an IPv6 address as [ADDR]:PORT") from exc
    else:
        host, colon, port_text = text.partition(":")
        if colon and not port_text:
            raise AddressError(f"{text!r}: empty port after ':'")
        if not _HOSTNAME.match(host):
            raise AddressError(f"{text!r}: {host!r} is not a host name or IPv4 address")
    if port_text == "":
        port = default_port
    else:
        if not port_text.isdigit():
            raise AddressError(f"{text!r}: port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise AddressError(f"{text!r}: port {port} is outside 1-65535")
    return HostPort(host, port)
