"""The agent's TOML configuration: loading, validation, and the no-config default.

Every mistake is refused at start with the file, the line when it can be
found, the key, and what was expected, as one line (``ConfigError``).
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timemon.address import AddressError, HostPort, parse_host_port
from timemon.kinds import (
    KERNEL_DEFAULT_INTERVAL,
    KINDS,
    NTP_DEFAULT_INTERVAL,
    STABILITY_KEYS,
    parse_stability,
    require_duration,
)
from timemon.units import parse_duration

log = logging.getLogger("timemon.config")

DEFAULT_PORT = 9642
DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_PORT}"
DEFAULT_STORE = "/var/lib/timemon/samples.db"
DEFAULT_RETENTION = 30 * 86400.0
SYSTEM_NTP_CONFIGS = ("/etc/chrony/chrony.conf", "/etc/chrony.conf", "/etc/ntp.conf")

_NAME = re.compile(r"^[A-Za-z0-9_.:@/-]{1,64}$")


class ConfigError(ValueError):
    """One line that says where the config is wrong and what was expected."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    interval: float
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentConfig:
    listen: tuple[str, int] = ("0.0.0.0", DEFAULT_PORT)
    store: str | None = DEFAULT_STORE
    retention: float = DEFAULT_RETENTION
    log_level: str = "info"
    sources: tuple[SourceConfig, ...] = ()
    path: str | None = None
    web_config: str | None = None  # exporter-toolkit web-config YAML (timemon.webconfig)
    signing_key: str | None = None  # Ed25519 PEM key that signs store checkpoints


def parse_listen(text: str) -> tuple[str, int]:
    if not isinstance(text, str):
        raise ValueError("expected \"HOST:PORT\"")
    addr = parse_host_port(text, DEFAULT_PORT)
    return addr.host, addr.port


class _Locator:
    """Finds the line of a key inside the Nth ``[[source]]`` or the ``[agent]`` table."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line_of(self, table: str, index: int, key: str | None) -> int | None:
        header = re.compile(r"^\s*\[\[\s*source\s*\]\]" if table == "source" else
                            rf"^\s*\[\s*{re.escape(table)}\s*\]")
        any_header = re.compile(r"^\s*\[")
        key_re = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=") if key else None
        seen, inside, start = -1, False, None
        for number, line in enumerate(self.lines, start=1):
            if header.match(line):
                seen += 1
                inside = seen == index
                if inside:
                    start = number
                continue
            if any_header.match(line):
                inside = False
            if inside and key_re and key_re.match(line):
                return number
        return start


_COMMON_KEYS = {"name", "kind", "interval"}
_AGENT_KEYS = {"listen", "store", "retention", "log_level", "web_config", "signing_key"}


def _source_config(raw: Any, index: int, path: str, loc: _Locator) -> SourceConfig:
    def fail(message: str, key: str | None = None) -> ConfigError:
        label = f"source #{index + 1}"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            label += f" ({raw['name']!r})"
        return ConfigError(path, f"{label}: {message}", loc.line_of("source", index, key))

    if not isinstance(raw, dict):
        raise ConfigError(path, "'source' must be an array of tables: write [[source]]")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # a TOML table is unhashable
        raise fail(f"kind {kind!r} is not one of: {', '.join(sorted(KINDS))}", "kind")
    spec = KINDS[kind]
    name = raw.get("name", spec.default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("'name' must be 1-64 characters of letters, digits and _.:@/-", "name")
    allowed = _COMMON_KEYS | spec.keys | (STABILITY_KEYS if spec.reference else frozenset())
    for key in raw:
        if key not in allowed:
            raise fail(f"unknown key {key!r} for kind {kind!r}; expected one of: "
                       f"{', '.join(sorted(allowed))}", key)
    interval = require_duration(raw, "interval", spec.default_interval, fail)
    options = spec.parse(raw, interval, fail)
    if spec.reference:
        options.update(parse_stability(raw, interval, fail))
    return SourceConfig(name=name, kind=kind, interval=interval, options=options)


def parse_config(text: str, path: str = "<config>") -> AgentConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML: {exc}") from exc
    loc = _Locator(text)
    for key in data:
        if key not in ("agent", "source"):
            raise ConfigError(path, f"unknown table {key!r}; expected [agent] and [[source]]",
                              loc.line_of(key, 0, None))
    agent = data.get("agent", {})
    if not isinstance(agent, dict):
        raise ConfigError(path, "'agent' must be a table: write [agent]")
    for key in agent:
        if key not in _AGENT_KEYS:
            raise ConfigError(path, f"[agent]: unknown key {key!r}; expected one of: "
                              f"{', '.join(sorted(_AGENT_KEYS))}", loc.line_of("agent", 0, key))

    def agent_fail(key: str, message: str) -> ConfigError:
        return ConfigError(path, f"[agent] {key}: {message}", loc.line_of("agent", 0, key))

    try:
        listen = parse_listen(agent.get("listen", DEFAULT_LISTEN))
    except (ValueError, AddressError) as exc:
        raise agent_fail("listen", str(exc)) from exc
    store = agent.get("store", DEFAULT_STORE)
    if not isinstance(store, str):
        raise agent_fail("store", "expected a file path (or \"\" for no store)")
    try:
        retention = parse_duration(agent.get("retention", DEFAULT_RETENTION))
    except ValueError as exc:
        raise agent_fail("retention", str(exc)) from exc
    web_config = agent.get("web_config", "")
    if not isinstance(web_config, str):
        raise agent_fail("web_config", "expected a file path (a web-config YAML)")
    signing_key = agent.get("signing_key", "")
    if not isinstance(signing_key, str):
        raise agent_fail("signing_key", "expected the path of an Ed25519 private key (PEM)")
    if signing_key and not os.path.isabs(signing_key):
        signing_key = os.path.join(os.path.dirname(os.path.abspath(path)), signing_key)
    log_level = agent.get("log_level", "info")
    if log_level not in ("debug", "info", "warning", "error"):
        raise agent_fail("log_level", "expected one of debug, info, warning, error")
    raw_sources = data.get("source", [])
    if not isinstance(raw_sources, list):
        raise ConfigError(path, "'source' must be an array of tables: write [[source]]")
    sources = [_source_config(raw, i, path, loc) for i, raw in enumerate(raw_sources)]
    names: set[str] = set()
    for i, src in enumerate(sources):
        if src.name in names:
            raise ConfigError(path, f"source #{i + 1}: name {src.name!r} is used twice",
                              loc.line_of("source", i, "name"))
        names.add(src.name)
    return AgentConfig(listen=listen, store=store or None, retention=retention,
                       log_level=log_level, sources=tuple(sources), path=path,
                       signing_key=signing_key or None,
                       web_config=web_config or None)


def load_config(path: str) -> AgentConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from exc
    return parse_config(text, path)


def servers_from_ntp_config(text: str) -> list[HostPort]:
    """``server`` lines of a chrony.conf or ntp.conf; ``pool`` lines are skipped."""
    servers: list[HostPort] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "pool":
            log.info("skipping 'pool %s': a monitor does not fan out to a public pool "
                     "uninvited; name servers in a config file to watch them", words[1])
        if words[0] != "server":
            continue
        port = 123
        if "port" in words[2:]:
            at = words.index("port", 2)
            if at + 1 < len(words) and words[at + 1].isdigit():
                port = int(words[at + 1])
        try:
            servers.append(parse_host_port(words[1], port) if words[1].startswith("[")
                           else HostPort(words[1], port))
        except AddressError:
            log.info("skipping unparsable server line: %s", raw.strip())
    return servers


def default_config(system_configs: tuple[str, ...] = SYSTEM_NTP_CONFIGS,
                   chrony_socket: str | None = None) -> AgentConfig:
    """No ``--config``: the kernel clock plus the servers the node's NTP daemon uses,
    and the node's chronyd when its command socket exists."""
    sources = [SourceConfig("kernel", "kernel", KERNEL_DEFAULT_INTERVAL)]
    from timemon.kinds import CHRONY_DEFAULT_INTERVAL, CHRONY_DEFAULT_SOCKET

    chrony_socket = chrony_socket or CHRONY_DEFAULT_SOCKET
    if os.path.exists(chrony_socket):
        log.info("watching the local chronyd at %s", chrony_socket)
        sources.append(SourceConfig("chronyd", "chrony", CHRONY_DEFAULT_INTERVAL, {
            "socket": chrony_socket, "address": None,
            **parse_stability({}, CHRONY_DEFAULT_INTERVAL, _never_fails)}))
    seen: set[str] = set()
    for conf in system_configs:
        try:
            text = Path(conf).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for server in servers_from_ntp_config(text):
            name = server.host if server.port == 123 else str(server)
            if name in seen:
                continue
            seen.add(name)
            log.info("watching server %s from %s", server, conf)
            options = {"address": server, "lab": False, "timeout": 2.0, "interleaved": True,
                       **parse_stability({}, NTP_DEFAULT_INTERVAL, _never_fails)}
            sources.append(SourceConfig(name, "ntp", NTP_DEFAULT_INTERVAL, options))
    return AgentConfig(sources=tuple(sources), store=default_store_path())


def _never_fails(message: str, key: str | None) -> Exception:  # pragma: no cover
    return ConfigError("<default>", message)


def default_store_path() -> str:
    """systemd's StateDirectory when set, else /var/lib/timemon, else the user's state dir."""
    state_dir = os.environ.get("STATE_DIRECTORY")
    if state_dir:
        return os.path.join(state_dir.split(":")[0], "samples.db")
    return DEFAULT_STORE
