"""TLS and basic auth on the exporter from a Prometheus-style web config file."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from exporter.config import ConfigError
from exporter.ops import compose, promconfig
from exporter.web.webconfig import load_web_config

from .support import Process, churn_monitor, free_port, wait_until

PASSWORD = "s3cret-scrape-password"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with `cryptography`."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def write_web_config(tmp: Path, *, tls: bool = True) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    lines = []
    if tls:
        cert, key = self_signed(tmp)
        lines += ["tls_server_config:", f"  cert_file: {cert}", f"  key_file: {key}"]
    lines += ["basic_auth_users:", f"  prometheus: '{hashed}'"]
    path = tmp / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_authorized_checks_the_bcrypt_hash(tmp_path: Path) -> None:
    web = load_web_config(write_web_config(tmp_path, tls=False), "exporter.web_config_file")
    assert not web.tls
    assert web.authorized(basic("prometheus", PASSWORD))
    assert web.authorized(basic("prometheus", PASSWORD))  # cached path
    assert not web.authorized(basic("prometheus", "wrong"))
    assert not web.authorized(basic("nobody", PASSWORD))
    assert not web.authorized(None)
    assert not web.authorized("Basic !!!not-base64")
    assert not web.authorized("Bearer token")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users: .*bcrypt hash"),
        (
            "tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n",
            "tls_server_config",
        ),
        ("tls_server_config:\n  cert_file: /x\n", "tls_server_config.key_file"),
        ("basic_auth: {}\n", "basic_auth"),
    ],
)
def test_bad_web_config_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"exporter.web_config_file: {message}"):
        load_web_config(path, "exporter.web_config_file")


def test_exporter_serves_tls_with_basic_auth_and_keeps_the_password_out_of_logs(
    tmp_path: Path,
) -> None:
    web = write_web_config(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"exporter: {{web_config_file: {web}}}\n"
        "performance_monitoring: {enabled: false}\noptuna: {enabled: false}\n"
        f"history: {{url: 'sqlite:///{tmp_path}/h.db'}}\n"
        f"data: {{reference_path: {tmp_path}/missing.parquet}}\n"
    )
    port = free_port()
    proc = Process(
        churn_monitor("run", "--mode", "continuous", "--port", str(port), "--config", str(config)),
        tmp_path / "exporter.log",
        cwd=tmp_path,
    )
    context = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))

    def get(path: str, auth: str | None = None) -> int:
        request = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
        if auth:
            request.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    try:
        wait_until(lambda: get("/healthz") == 200, 60, "https /healthz")
        assert get("/metrics") == 401
        assert get("/metrics", basic("prometheus", "wrong")) == 401
        assert get("/metrics", basic("prometheus", PASSWORD)) == 200
        with pytest.raises(OSError):  # plain HTTP gets no answer
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        proc.stop()
    assert PASSWORD not in proc.output()


def test_unreadable_web_config_exits_2_before_starting(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"exporter: {{web_config_file: {tmp_path}/absent.yml}}\n")
    result = subprocess.run(
        churn_monitor("run", "--mode", "continuous", "--config", str(config)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "exporter.web_config_file: cannot read" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_prometheus_scrapes_the_exporter_with_the_rendered_password_file(
    require_binary, tmp_path: Path
) -> None:
    """The compose renderer's basic_auth, on a real Prometheus and a real exporter: up
    with the password file, 401 without credentials or once the file holds a wrong one
    (Prometheus reads it at every scrape)."""
    prometheus = require_binary("prometheus")
    web = write_web_config(tmp_path, tls=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"exporter: {{web_config_file: {web}}}\n"
        "performance_monitoring: {enabled: false}\noptuna: {enabled: false}\n"
        f"history: {{url: 'sqlite:///{tmp_path}/h.db'}}\n"
        f"data: {{reference_path: {tmp_path}/missing.parquet}}\n"
    )
    port, prom_port = free_port(), free_port()
    password_file = tmp_path / "exporter_auth_password"
    password_file.write_text(PASSWORD + "\n")  # as `echo` writes it: Prometheus trims it
    local = promconfig.render_prometheus_config(
        promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG),
        exporter=f"127.0.0.1:{port}",
        api=None,
        alertmanager=None,
        prometheus=f"127.0.0.1:{prom_port}",
        rules_dir=promconfig.PROMETHEUS_RULES_DIR,
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    login = compose.Credentials("prometheus", str(password_file))
    rendered = compose.compose_prometheus_config(
        local,
        rules_dir=str(promconfig.PROMETHEUS_RULES_DIR),
        auth={promconfig.JOB_EXPORTER: login},
    )
    bare = {"job_name": "no-credentials", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
    rendered["scrape_configs"].append(bare)
    prom_config = promconfig.write_config(rendered, tmp_path / "prometheus.yml")
    assert PASSWORD not in prom_config.read_text()

    exporter = Process(
        churn_monitor("run", "--mode", "continuous", "--port", str(port), "--config", str(config)),
        tmp_path / "exporter.log",
        cwd=tmp_path,
    )
    prom = Process(
        [
            prometheus,
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        tmp_path / "prometheus.log",
        cwd=tmp_path,
    )

    def targets() -> dict[str, dict[str, str]]:
        url = f"http://127.0.0.1:{prom_port}/api/v1/targets"
        with urllib.request.urlopen(url, timeout=5) as response:
            active = json.load(response)["data"]["activeTargets"]
        return {t["labels"]["job"]: t for t in active}

    def state(job: str, health: str, error: str = "") -> bool:
        target = targets().get(job) or {}
        return target.get("health") == health and error in target.get("lastError", "")

    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200, 60, "exporter")
        wait_until(lambda: state("churn-exporter", "up"), 60, "churn-exporter up")
        wait_until(lambda: state("no-credentials", "down", "401"), 60, "no-credentials 401")
        query = urllib.parse.urlencode({"query": 'up{job="churn-exporter"} == 1'})
        url = f"http://127.0.0.1:{prom_port}/api/v1/query?{query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert len(json.load(response)["data"]["result"]) == 1
        password_file.write_text("not-" + PASSWORD)
        wait_until(lambda: state("churn-exporter", "down", "401"), 60, "churn-exporter 401")
    finally:
        prom.stop()
        exporter.stop()
    for log in (prom.output(), exporter.output()):
        assert PASSWORD not in log


def http_status(url: str) -> int:
    """The status of a GET of `url` (any status; connection errors raise)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
