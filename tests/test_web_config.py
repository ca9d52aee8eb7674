"""TLS and basic auth of /metrics from an exporter-toolkit web-config file.

Certificates are made in the test with the ``openssl`` binary (a CA, a server
certificate for 127.0.0.1, a client CA and a client certificate); passwords are
bcrypt-hashed with the ``bcrypt`` package, as ``htpasswd -B`` would.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from conftest import find_binary, free_tcp_port
from test_agent_e2e import stop

from timemon.exporter import AgentState
from timemon.http_server import MetricsServer
from timemon.webconfig import WebConfig, WebConfigError, load_web_config

PASSWORD = "s3cret correct horse"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([find_binary("openssl"), *args], cwd=cwd, check=True,
                   capture_output=True, timeout=30)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj",
            f"/CN={name}", cwd=d)


def make_leaf(d: Path, name: str, ca: str, san: str, usage: str) -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_leaf(d, "server", "ca", "IP:127.0.0.1,DNS:localhost", "serverAuth")
    make_ca(d, "clientca")
    make_leaf(d, "client", "clientca", "DNS:scraper", "clientAuth")
    make_ca(d, "otherca")
    make_leaf(d, "intruder", "otherca", "DNS:intruder", "clientAuth")
    return d


def hashed(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def web_yaml(path: Path, tls: bool = True, users: bool = True, client_ca: bool = False,
             extra: str = "") -> Path:
    lines = []
    if tls:
        # Relative paths: relative to the web-config file, as in the exporter-toolkit.
        lines += ["tls_server_config:", "  cert_file: server.crt", "  key_file: server.key"]
        if client_ca:
            lines += ["  client_ca_file: clientca.crt",
                      "  client_auth_type: RequireAndVerifyClientCert"]
    if users:
        lines += ["basic_auth_users:", f"  prometheus: '{hashed(PASSWORD)}'"]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@pytest.fixture
def serve() -> Iterator:
    servers: list[MetricsServer] = []

    def start(web: WebConfig | None) -> int:
        server = MetricsServer(AgentState(), "127.0.0.1", 0, web=web)
        server.start()
        servers.append(server)
        return server.port

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def client_context(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


def get(url: str, ctx: ssl.SSLContext | None = None, user: str | None = "prometheus",
        password: str = PASSWORD) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=ctx) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_right_password_over_tls_scrapes(pki: Path, serve) -> None:
    port = serve(load_web_config(str(web_yaml(pki / "web.yml"))))
    code, _headers, body = get(f"https://127.0.0.1:{port}/metrics", client_context(pki))
    assert code == 200
    assert b"timemon_build_info" in body
    # Cached after the first bcrypt check: a second scrape works the same.
    assert get(f"https://127.0.0.1:{port}/status.json", client_context(pki))[0] == 200


@pytest.mark.parametrize(("user", "password"), [("prometheus", "wrong"), ("nobody", PASSWORD),
                                                (None, "")])
def test_wrong_or_missing_credentials_get_401(pki: Path, serve, user: str | None,
                                              password: str) -> None:
    port = serve(load_web_config(str(web_yaml(pki / "web.yml"))))
    code, headers, body = get(f"https://127.0.0.1:{port}/metrics", client_context(pki),
                              user=user, password=password)
    assert code == 401
    assert headers["WWW-Authenticate"].startswith("Basic ")
    assert b"timemon" not in body


def test_plain_http_to_the_tls_port_fails(pki: Path, serve) -> None:
    port = serve(load_web_config(str(web_yaml(pki / "web.yml", users=False))))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.request("GET", "/metrics")
        conn.getresponse()
    conn.close()
    # The server survives the failed handshake and serves TLS clients.
    assert get(f"https://127.0.0.1:{port}/metrics", client_context(pki), user=None)[0] == 200


def test_client_certificate_required_when_configured(pki: Path, serve) -> None:
    port = serve(load_web_config(str(web_yaml(pki / "web.yml", users=False,
                                              client_ca=True))))
    url = f"https://127.0.0.1:{port}/metrics"
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        get(url, client_context(pki), user=None)
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        get(url, client_context(pki, "intruder"), user=None)  # signed by another CA
    code, _h, body = get(url, client_context(pki, "client"), user=None)
    assert code == 200 and b"timemon_build_info" in body


def test_basic_auth_without_tls(tmp_path: Path, serve) -> None:
    port = serve(load_web_config(str(web_yaml(tmp_path / "web.yml", tls=False))))
    assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    assert get(f"http://127.0.0.1:{port}/metrics", password="nope")[0] == 401


def test_a_silent_client_does_not_block_other_scrapes(pki: Path, serve) -> None:
    port = serve(load_web_config(str(web_yaml(pki / "web.yml", users=False))))
    with socket.create_connection(("127.0.0.1", port)):  # connects, never says hello
        assert get(f"https://127.0.0.1:{port}/metrics", client_context(pki),
                   user=None)[0] == 200


@pytest.mark.parametrize(("text", "message"), [
    ("tls_server_config:\n  cert_file: server.crt\n", "needs cert_file and key_file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  bogus: 1\n",
     "unknown key 'bogus'"),
    ("basic_auth_users:\n  alice: plaintext\n", "bcrypt"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
     "  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
     "cannot load TLS files"),
    ("web: [unclosed\n", "not valid YAML"),
    ("listen: 1\n", "unknown key 'listen'"),
])
def test_bad_web_config_is_one_typed_error(pki: Path, tmp_path: Path, text: str,
                                           message: str) -> None:
    path = pki / f"bad-{abs(hash(text))}.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError, match=message):
        load_web_config(str(path))


def test_agent_serves_tls_from_the_config_and_rejects_a_bad_file(
        pki: Path, tmp_path: Path, timemon_exe: str) -> None:
    web = web_yaml(pki / "agent-web.yml")
    config = tmp_path / "timemon.toml"
    config.write_text(f'[agent]\nstore = ""\nweb_config = "{web}"\n'
                      '[[source]]\nkind = "kernel"\ninterval = 1\n')
    port = free_tcp_port()
    proc = subprocess.Popen([timemon_exe, "agent", "--config", str(config), "--listen",
                             f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    try:
        import time

        # Until the kernel source's first reading is in: the endpoint serves from the
        # agent's start on, and a scrape can come before the first poll.
        deadline = time.monotonic() + 15
        while True:
            try:
                code, _h, body = get(f"https://127.0.0.1:{port}/metrics", client_context(pki))
                assert code == 200
                if b"timemon_kernel_sync_status" in body:
                    break
            except (OSError, urllib.error.URLError):
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        assert get(f"https://127.0.0.1:{port}/metrics", client_context(pki),
                   password="x")[0] == 401
    finally:
        rc, err = stop(proc)
    assert rc == 0, err
    bad = tmp_path / "bad.yml"
    bad.write_text("basic_auth_users:\n  alice: plaintext\n")
    result = subprocess.run([timemon_exe, "agent", "--config", str(config), "--web-config",
                             str(bad)], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "bcrypt" in result.stderr


def test_sighup_reloads_the_web_config_and_keeps_it_when_broken(
        pki: Path, tmp_path: Path, timemon_exe: str) -> None:
    """A new password (and TLS settings) take effect on SIGHUP, without a restart; a broken
    file on SIGHUP is logged and the running web config stays."""
    import signal
    import time

    web = pki / "reload-web.yml"
    web_yaml(web)
    config = tmp_path / "timemon.toml"
    config.write_text(f'[agent]\nstore = ""\nweb_config = "{web}"\n'
                      '[[source]]\nkind = "kernel"\ninterval = 1\n')
    port = free_tcp_port()
    url = f"https://127.0.0.1:{port}/metrics"
    proc = subprocess.Popen([timemon_exe, "agent", "--config", str(config), "--listen",
                             f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)

    def status(user: str, password: str) -> int:
        return get(url, client_context(pki), user=user, password=password)[0]

    def until(user: str, password: str, code: int) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                if status(user, password) == code:
                    return
            except (OSError, urllib.error.URLError):
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (user, code)
            time.sleep(0.2)

    try:
        until("prometheus", PASSWORD, 200)
        # The user "prometheus" is renamed away, "alerting" is added.
        web_yaml(web, extra=f"  alerting: '{hashed('second password')}'\n")
        web.write_text(web.read_text().replace("  prometheus: ", "  old: "))
        proc.send_signal(signal.SIGHUP)
        until("alerting", "second password", 200)
        assert status("prometheus", PASSWORD) == 401
        web.write_text("basic_auth_users:\n  alice: plaintext\n")  # not bcrypt
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert status("alerting", "second password") == 200
        assert status("prometheus", PASSWORD) == 401
    finally:
        rc, err = stop(proc)
    assert rc == 0, err
    assert "keeping the running web config" in err and "bcrypt" in err


def test_render_metrics_equals_prometheus_client(responders) -> None:
    """/metrics is rendered by ``http_server.render_metrics`` (cheaper at 1,000 sources):
    it must write exactly what prometheus_client's own ``generate_latest`` writes, for
    real sources with statistics, info and counter families."""
    import asyncio

    from prometheus_client import generate_latest
    from timemon.probes.ntp import NtpSource

    from timemon.address import HostPort
    from timemon.exporter import make_registry
    from timemon.http_server import render_metrics
    from timemon.live import LiveSeries
    from timemon.simulator import ResponderClock
    from timemon.source import Sample

    r = responders.add(clock=ResponderClock(offset=0.003, noise=1e-6))
    state = AgentState()
    sources = []
    for name in ("plain", "b.c:d@e/f-g"):  # every character a source name may hold
        src = NtpSource(name, HostPort("127.0.0.1", r.port), interval=1.0, lab=True,
                        timeout=0.5)
        src.live = LiveSeries(1.0, 1024, None, ("G.8272-PRTC-A",) if "@" in name else ())
        asyncio.run(src.poll_once())
        t0 = 1_800_000_000 * 10**9
        for k in range(300):
            src.live.add(Sample(t0 + k * 10**9, 1e-6 * ((k * 7919) % 13), 1e-4))
        src.live.compute_if_due(1e12)
        src.count_error("bad_origin", "x")
        sources.append(src)
    # Other kinds between them: the kernel (no generic families) and a source whose
    # offset carries an extra label, so one family mixes column and per-source samples.
    from timemon.probes.kernel import KernelSource

    from timemon.source import Source

    class Labelled(Source):
        kind = "gnss"

        def offset_labels(self) -> dict[str, str]:
            return {"quality": "pps"}

    kernel = KernelSource(interval=1.0)
    kernel.poll_once()
    labelled = Labelled("rx", 1.0)
    labelled.offset, labelled.samples_total = -2.5e-7, 7
    sources[1:1] = [kernel, labelled]
    state.sources = tuple(sources)
    state.start_time = 1.5e9
    mine, theirs = render_metrics(state), generate_latest(make_registry(state))
    assert b'timemon_offset_seconds{kind="gnss",quality="pps",source="rx"} -2.5e-07' in mine
    assert b'timemon_offset_seconds{kind="ntp",source="plain"}' in mine
    assert b"timemon_kernel_" in mine and b'timemon_samples_total{kind="gnss"' in mine
    assert b"timemon_allan_deviation{" in mine and b"timemon_ntp_server_info{" in mine
    assert b"timemon_mask_violation{" in mine and b"timemon_mask_limit_seconds{" in mine
    assert mine == theirs
    # A second scrape reuses the rendered statistics (same result): still the same bytes.
    assert render_metrics(state) == theirs
