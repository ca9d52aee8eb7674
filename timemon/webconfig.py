"""TLS and basic authentication of the metrics endpoint, from a web-config YAML file.

The file has the format of the Prometheus exporter-toolkit's ``--web.config.file``
(docs/web-configuration.md of prometheus/exporter-toolkit), so operators reuse the
file their other exporters use::

    tls_server_config:
      cert_file: server.crt          # relative paths: relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: clients-ca.crt                 # optional
      min_version: TLS12                             # optional
    basic_auth_users:
      alice: $2y$10$...              # bcrypt hash

Supported: ``cert_file``/``key_file``, ``client_ca_file``, ``client_auth_type``,
``min_version``/``max_version``, ``basic_auth_users``.  Go-specific tuning keys
(``cipher_suites``, ``curve_preferences``, ``prefer_server_cipher_suites``) and
``http_server_config`` are accepted and ignored with a warning; any other key is an
error, as in the exporter-toolkit (strict YAML).

Python's ``ssl`` cannot request a client certificate without verifying it, so
``RequestClientCert``/``VerifyClientCertIfGiven`` both verify a certificate when
one is given, and ``RequireAnyClientCert``/``RequireAndVerifyClientCert`` both
require a verified one (stricter than Go for the two "Any/Request" types).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("timemon.webconfig")

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version",
             "max_version"}
_IGNORED_TLS_KEYS = {"cipher_suites", "curve_preferences", "prefer_server_cipher_suites"}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
_IGNORED_TOP_KEYS = {"http_server_config"}
# A valid bcrypt hash of a random password: unknown users cost one bcrypt check too,
# so response times do not tell which user names exist.
_DUMMY_HASH = b"$2b$10$CwTycUXWue0Thq9StjUM0uJ8.3tpSbbFgzE7kBzGZ8/pmN1k1T2pW"


class WebConfigError(ValueError):
    """The web config file is unreadable or wrong; the message names the file."""


@dataclass(frozen=True)
class TlsConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str | None = None
    max_version: str | None = None


@dataclass
class WebConfig:
    path: str
    tls: TlsConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    # (user, sha256(password)) pairs already verified: bcrypt costs ~50 ms per check,
    # too much for every scrape (the exporter-toolkit caches the same way).
    _verified: set[tuple[str, bytes]] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- TLS -----------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server context, or None without ``tls_server_config``; raises WebConfigError."""
        tls = self.tls
        if tls is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[tls.min_version or "TLS12"]
        if tls.max_version:
            ctx.maximum_version = TLS_VERSIONS[tls.max_version]
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
            if tls.client_ca_file:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"{self.path}: cannot load TLS files: {exc}") from exc
        ctx.verify_mode = CLIENT_AUTH[tls.client_auth_type]
        return ctx

    # -- basic auth ----------------------------------------------------------------

    @property
    def auth_required(self) -> bool:
        return bool(self.users)

    def check_authorization(self, header: str | None) -> bool:
        """True when no users are configured, or the Authorization header matches one."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        digest = hashlib.sha256(password.encode()).digest()
        with self._lock:
            cached = (user, digest) in self._verified
        if cached:
            return True
        import bcrypt

        stored = self.users.get(user)
        try:
            ok = bcrypt.checkpw(password.encode(), stored or _DUMMY_HASH)
        except ValueError:  # a malformed hash in the file (checked at load) or password
            ok = False
        ok = ok and stored is not None
        if ok:
            with self._lock:
                self._verified.add((user, digest))
        return ok


def _resolve(base: str, value: Any, key: str, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{path}: tls_server_config.{key}: expected a file path")
    return value if os.path.isabs(value) else os.path.join(base, value)


def parse_web_config(data: Any, path: str) -> WebConfig:
    if data is None:
        return WebConfig(path)
    if not isinstance(data, dict):
        raise WebConfigError(f"{path}: expected a mapping at the top level")
    for key in data:
        if key in _IGNORED_TOP_KEYS:
            log.warning("%s: %s is not supported by timemon and is ignored", path, key)
        elif key not in _TOP_KEYS:
            raise WebConfigError(f"{path}: unknown key {key!r}; expected one of: "
                                 f"{', '.join(sorted(_TOP_KEYS | _IGNORED_TOP_KEYS))}")
    base = os.path.dirname(os.path.abspath(path))
    tls = None
    raw_tls = data.get("tls_server_config")
    if raw_tls is not None:
        if not isinstance(raw_tls, dict):
            raise WebConfigError(f"{path}: tls_server_config must be a mapping")
        for key in raw_tls:
            if key in _IGNORED_TLS_KEYS:
                log.warning("%s: tls_server_config.%s is ignored (Go-specific)", path, key)
            elif key not in _TLS_KEYS:
                raise WebConfigError(f"{path}: tls_server_config: unknown key {key!r}")
        if "cert_file" not in raw_tls or "key_file" not in raw_tls:
            raise WebConfigError(f"{path}: tls_server_config needs cert_file and key_file")
        ca = raw_tls.get("client_ca_file")
        # As the exporter-toolkit: a client CA without an auth type means verify clients.
        auth = raw_tls.get("client_auth_type") or (
            "RequireAndVerifyClientCert" if ca else "NoClientCert")
        if auth not in CLIENT_AUTH:
            raise WebConfigError(f"{path}: client_auth_type {auth!r} is not one of: "
                                 f"{', '.join(CLIENT_AUTH)}")
        if auth != "NoClientCert" and not ca:
            raise WebConfigError(f"{path}: client_auth_type {auth} needs client_ca_file")
        for key in ("min_version", "max_version"):
            value = raw_tls.get(key)
            if value is not None and value not in TLS_VERSIONS:
                raise WebConfigError(f"{path}: {key} {value!r} is not one of: "
                                     f"{', '.join(TLS_VERSIONS)}")
        tls = TlsConfig(_resolve(base, raw_tls["cert_file"], "cert_file", path),
                        _resolve(base, raw_tls["key_file"], "key_file", path),
                        _resolve(base, ca, "client_ca_file", path) if ca else None,
                        auth, raw_tls.get("min_version"), raw_tls.get("max_version"))
    users: dict[str, bytes] = {}
    raw_users = data.get("basic_auth_users")
    if raw_users is not None:
        if not isinstance(raw_users, dict):
            raise WebConfigError(f"{path}: basic_auth_users must map user names to bcrypt "
                                 "hashes")
        for user, hashed in raw_users.items():
            if not isinstance(user, str) or ":" in user or not isinstance(hashed, str) \
                    or not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
                raise WebConfigError(f"{path}: basic_auth_users: {user!r} needs a bcrypt "
                                     "hash ($2y$...)")
            users[user] = hashed.encode()
    config = WebConfig(path, tls, users)
    config.ssl_context()  # load the files now: a bad certificate is a start-up error
    return config


def web_config_path(override: str | None, configured: str | None,
                    config_file: str | None) -> str | None:
    """The web-config file in use: ``--web-config``, else ``[agent] web_config`` (relative
    to the config file's directory)."""
    if override:
        return override
    if configured and config_file and not os.path.isabs(configured):
        return os.path.join(os.path.dirname(os.path.abspath(config_file)), configured)
    return configured or None


def load_web_config(path: str) -> WebConfig:
    """Read and check a web-config file; raises WebConfigError (one line) on any problem."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise WebConfigError(f"{path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    return parse_web_config(data, path)
