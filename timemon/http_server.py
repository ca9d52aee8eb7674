"""HTTP endpoint of the agent: ``/metrics`` for Prometheus, ``/`` for people,
``/status.json`` for scripts.  Runs in its own thread; reads snapshots only."""

from __future__ import annotations

import html
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from timemon import __version__
from timemon.exporter import AgentState, collect_families
from timemon.webconfig import WebConfig

log = logging.getLogger("timemon.http")

def _format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if magnitude >= scale:
            return f"{value / scale:+.3f} {unit}"
    return f"{value / 1e-9:+.1f} ns"


def landing_page(state: AgentState) -> str:
    now = time.time()
    rows = []
    for source in list(state.sources):
        st = source.status()
        age = st.get("last_sample_timestamp_seconds")
        rows.append(
            "<tr><td>{}</td><td>{}</td><td class='{}'>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>".format(
                html.escape(source.name), html.escape(source.kind),
                "up" if source.up else "down", "up" if source.up else "down",
                _format_seconds(source.offset) if source.is_reference else "n/a",
                _format_seconds(source.delay) if source.is_reference else "n/a",
                f"{now - age:.0f} s ago" if age else "never",
                html.escape(str(st.get("last_error") or "")),
            ))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>timemon</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:.2em .8em;text-align:left}}
.up{{color:#070}} .down{{color:#b00}}</style></head>
<body><h1>timemon {html.escape(__version__)}</h1>
<p><a href="/metrics">Metrics</a> · <a href="/status.json">status.json</a></p>
<table><tr><th>source</th><th>kind</th><th>state</th><th>offset (local − ref)</th>
<th>delay</th><th>last sample</th><th>last error</th></tr>
{''.join(rows)}
</table></body></html>
"""


def metrics_blocks(state: AgentState) -> tuple[int, Iterator[bytes]]:
    """``/metrics``: its length and its bytes in blocks (``Families.render_blocks``),
    as the server writes it.  Only the collection counts as the scrape (``scraping``):
    the blocks are joined from texts no one changes."""
    with state.scraping():
        families = collect_families(state, text=True)
    return families.render_blocks()


def render_metrics(state: AgentState) -> bytes:
    """``/metrics``: what ``prometheus_client.generate_latest`` would write for the
    agent's registry, byte for byte (tests/test_web_config.py), at a fraction of its
    cost with 1,000 sources (timemon.families)."""
    return b"".join(metrics_blocks(state)[1])


def status_document(state: AgentState) -> dict[str, Any]:
    return {"version": __version__, "sources": [s.status() for s in list(state.sources)]}


TLS_HANDSHAKE_TIMEOUT = 10.0  # seconds a client may take to finish the TLS handshake


class _Server(ThreadingHTTPServer):
    """Threading HTTP server; with ``tls`` the handshake runs in the connection's own
    thread (wrapping the listening socket would do it in the accept loop, where one
    silent client would stall every scrape)."""

    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(TLS_HANDSHAKE_TIMEOUT)
            wrapped = self.tls.wrap_socket(request, server_side=True)  # closes it on failure
            wrapped.settimeout(None)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            self.shutdown_request(wrapped)


class _HTTPServer6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    def __init__(self, state: AgentState, host: str, port: int,
                 web: WebConfig | None = None) -> None:
        self.state = state
        self.web = web
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = f"timemon/{__version__}"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                web = outer.web  # read once: a SIGHUP may replace it
                if web is not None and not web.check_authorization(
                        self.headers.get("Authorization")):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="timemon"')
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", "13")
                    self.end_headers()
                    self.wfile.write(b"unauthorized\n")
                    return
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send_blocks(200, CONTENT_TYPE_LATEST, *metrics_blocks(state))
                elif path == "/":
                    self._send(200, "text/html; charset=utf-8",
                               landing_page(state).encode())
                elif path == "/status.json":
                    self._send(200, "application/json",
                               json.dumps(status_document(state), default=str).encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self._send_blocks(code, ctype, len(body), iter((body,)))

            def _send_blocks(self, code: int, ctype: str, length: int,
                             blocks: Iterator[bytes]) -> None:
                """A body of ``length`` bytes, written block by block as made."""
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                for block in blocks:
                    self.wfile.write(block)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("%s " + fmt, self.address_string(), *args)

        server_class = _HTTPServer6 if ":" in host else _Server
        self.httpd = server_class((host, port), Handler)
        self.httpd.tls = web.ssl_context() if web is not None else None
        self.scheme = "https" if self.httpd.tls is not None else "http"
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="timemon-http",
                                        daemon=True)

    def set_web(self, web: WebConfig | None) -> None:
        """Use a new web config for the next connections; raises WebConfigError (and
        changes nothing) when its certificate or key does not load."""
        tls = web.ssl_context() if web is not None else None
        self.web = web
        self.httpd.tls = tls
        self.scheme = "https" if tls is not None else "http"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
