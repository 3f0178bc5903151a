"""`churn-monitor up`: the plan (pure), the supervisor, and the real command.

The plan tests feed :func:`exporter.ops.plan.plan_stack` made-up facts about the machine.
The process tests start real children and look in /proc afterwards: every process the
stack started (and every process in their groups) must be gone, not orphaned.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import httpx  # noqa: E402
import yaml  # noqa: E402

from exporter.cli import main as cli  # noqa: E402
from exporter.config import parse_config  # noqa: E402
from exporter.ops import promconfig  # noqa: E402
from exporter.ops.facts import Facts  # noqa: E402
from exporter.ops.plan import StackPlan, plan_stack  # noqa: E402
from exporter.ops.services import (  # noqa: E402
    DEFAULT_PORTS,
    PortsInUse,
    ServiceSpec,
    StackError,
    service_ports,
)
from exporter.ops.status import read_state  # noqa: E402
from exporter.ops.supervisor import RestartPolicy, Supervisor  # noqa: E402
from exporter.ops.up import format_table, up  # noqa: E402

from .api_fixtures import TrainedStore  # noqa: E402
from .promconfig_helpers import scrape_targets  # noqa: E402
from .support import REPO, Process, free_port, wait_until  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]

PY = "/venv/bin/python"
ALL_BINARIES = {
    "prometheus": "/usr/bin/prometheus",
    "prometheus-alertmanager": "/usr/bin/prometheus-alertmanager",
    "alertmanager": None,
    "optuna-dashboard": "/venv/bin/optuna-dashboard",
}


def facts(**changes: Any) -> Facts:
    base = {
        "python": PY,
        "binaries": ALL_BINARIES,
        "secrets": frozenset(),
        "prometheus_base": promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG),
        "alertmanager_base": promconfig.load_yaml(promconfig.ALERTMANAGER_CONFIG),
    }
    return Facts(**{**base, **changes})


def plan(services=None, no_monitoring=False, raw=None, ports=None, replicas=1, **fact_changes):
    return plan_stack(
        parse_config(raw or {}),
        services=services,
        no_monitoring=no_monitoring,
        facts=facts(**fact_changes),
        config_path="/work/cfg.yaml",
        workdir=Path("/work"),
        ports=ports,
        api_replicas=replicas,
    )


def by_name(p: StackPlan) -> dict[str, ServiceSpec]:
    return {s.name: s for s in p.services}


# ------------------------------------------------------------------------ planning


def test_default_plan_starts_everything_but_the_simulator_with_one_config() -> None:
    p = plan()
    assert p.names() == [
        "trainer",
        "mlflow",
        "optuna-dashboard",
        "api",
        "exporter",
        "ui",
        "sinks",
        "alertmanager",
        "prometheus",
    ]
    specs = by_name(p)
    assert specs["trainer"].kind == "oneshot"
    assert specs["trainer"].steps == (
        (PY, "-m", "exporter", "setup", "--config", "/work/cfg.yaml"),
        (PY, "-m", "exporter", "train", "--config", "/work/cfg.yaml", "--if-no-champion"),
    )
    for name in ("api", "exporter", "ui"):
        argv = specs[name].argv
        assert argv[:3] == (PY, "-m", "exporter")
        assert argv[4:6] == ("--config", "/work/cfg.yaml"), name
    assert specs["exporter"].argv[3:] == (
        "run",
        "--config",
        "/work/cfg.yaml",
        "--mode",
        "continuous",
        "--host",
        "127.0.0.1",
        "--port",
        "9108",
    )
    urls = {name: s.url for name, s in specs.items()}
    assert urls == {
        "trainer": None,
        "mlflow": "http://127.0.0.1:5000",
        "optuna-dashboard": "http://127.0.0.1:8080/dashboard",
        "api": "http://127.0.0.1:8000/docs",
        "exporter": "http://127.0.0.1:9108/metrics",
        "ui": "http://127.0.0.1:8501",
        "sinks": "http://127.0.0.1:8025/slack",
        "alertmanager": "http://127.0.0.1:9093",
        "prometheus": "http://127.0.0.1:9090",
    }
    assert specs["mlflow"].argv[:4] == (PY, "-m", "mlflow", "server")
    assert "sqlite:////work/mlruns/mlflow.db" in specs["mlflow"].argv
    assert specs["optuna-dashboard"].argv[:2] == (
        "/venv/bin/optuna-dashboard",
        "sqlite:////work/data/optuna.db",
    )
    assert p.log_path("api") == Path("/work/logs/api.log")
    assert [name for name, _ in p.skipped] == ["grafana"]


def test_services_and_no_monitoring_select_a_subset() -> None:
    assert plan(["exporter", "api"]).names() == ["api", "exporter"]
    assert "simulator" in plan(["api", "simulator"]).names()
    assert plan(no_monitoring=True).names() == [
        "trainer",
        "mlflow",
        "optuna-dashboard",
        "api",
        "ui",
    ]
    simulator = by_name(plan(["api", "simulator"]))["simulator"]
    assert simulator.kind == "client" and simulator.after == ("api",)
    assert simulator.argv[6:8] == ("--api", "http://127.0.0.1:8000")
    with pytest.raises(StackError, match="unknown service 'grafanna'"):
        plan(["api", "grafanna"])
    with pytest.raises(StackError, match="nothing left to start"):
        plan(["exporter", "prometheus"], no_monitoring=True)


def test_missing_binaries_are_left_out_with_a_reason() -> None:
    p = plan(
        binaries={"prometheus": None, "prometheus-alertmanager": None, "optuna-dashboard": None},
    )
    assert p.names() == ["trainer", "mlflow", "api", "exporter", "ui"]
    reasons = dict(p.skipped)
    assert "apt-get install prometheus" in reasons["prometheus"]
    assert "apt-get install prometheus-alertmanager" in reasons["alertmanager"]
    assert "pip install optuna-dashboard" in reasons["optuna-dashboard"]
    assert "Alertmanager is not started" in reasons["sinks"]
    upstream = plan(
        binaries={**ALL_BINARIES, "prometheus-alertmanager": None, "alertmanager": "/x"}
    )
    assert by_name(upstream)["alertmanager"].argv[0] == "/x"
    remote = plan(raw={"model": {"tracking_uri": "http://mlflow.internal:5000"}})
    assert "mlflow" not in remote.names()
    assert "http://mlflow.internal:5000" in dict(remote.skipped)["mlflow"]


def test_api_replicas_listen_on_consecutive_ports_all_discovered_by_prometheus() -> None:
    p = plan(raw={"api": {"port": 18000}}, replicas=3)
    api = by_name(p)["api"]
    assert api.argv[api.argv.index("--workers") + 1] == "3"
    assert (api.port, api.extra_ports) == (18000, (18001, 18002))  # all checked free
    prom = p.files[Path("/work/data/stack/prometheus.yml")]
    assert scrape_targets(prom, p.files)["churn-api"] == [
        "127.0.0.1:18000",
        "127.0.0.1:18001",
        "127.0.0.1:18002",
    ]
    assert "--workers" not in by_name(plan())["api"].argv


def test_ports_come_from_the_config_and_reach_the_rendered_configs() -> None:
    raw = {"api": {"port": 18000}, "exporter": {"port": 19108}}
    p = plan(raw=raw, ports={"prometheus": 19090, "alertmanager": 19093})
    specs = by_name(p)
    assert specs["api"].port == 18000 and specs["api"].health_url.endswith(":18000/health")
    assert specs["exporter"].health_url == "http://127.0.0.1:19108/healthz"
    prom = p.files[Path("/work/data/stack/prometheus.yml")]
    assert scrape_targets(prom, p.files) == {
        "churn-exporter": ["127.0.0.1:19108"],
        "churn-api": ["127.0.0.1:18000"],
        "prometheus": ["127.0.0.1:19090"],
        "alertmanager": ["127.0.0.1:19093"],
    }
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:19093"
    ]
    assert all(Path(r).is_absolute() for r in prom["rule_files"])
    assert "--web.listen-address=127.0.0.1:19090" in specs["prometheus"].argv
    assert "--config.file=/work/data/stack/prometheus.yml" in specs["prometheus"].argv
    manager = p.files[Path("/work/data/stack/alertmanager.yml")]
    hooks = [h["url"] for r in manager["receivers"] for h in r.get("webhook_configs") or []]
    assert hooks == ["http://127.0.0.1:19108/alerts/webhook"]
    assert "--cluster.listen-address=" in specs["alertmanager"].argv
    api_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "churn-api")
    assert api_job["file_sd_configs"][0]["files"] == ["/work/data/stack/api-targets.yml"]
    assert "static_configs" not in api_job
    # Without the API or Alertmanager, Prometheus does not look for them.
    alone = plan(["exporter", "prometheus"]).files[Path("/work/data/stack/prometheus.yml")]
    assert set(scrape_targets(alone)) == {"churn-exporter", "prometheus"}
    assert "alerting" not in alone
    with pytest.raises(StackError, match="'grafana' has no port"):
        plan(ports={"grafana": 3001})


def test_service_ports_come_from_the_stack_section_then_the_command_line() -> None:
    config = parse_config({"api": {"port": 18000}, "stack": {"ports": {"ui": 18501}}})
    ports = service_ports(config, {"alertmanager": 19093, "sinks-smtp": 11025})
    assert ports == {
        **DEFAULT_PORTS,
        "api": 18000,
        "ui": 18501,
        "alertmanager": 19093,
        "sinks-smtp": 11025,
    }


def test_slack_is_on_only_with_its_secret_file() -> None:
    off = plan(["alertmanager"]).files[Path("/work/data/stack/alertmanager.yml")]
    assert not any(r.get("slack_configs") for r in off["receivers"])
    assert "slack_api_url_file" not in off["global"]
    on = plan(["alertmanager"], secrets=frozenset({"slack_webhook_url", "smtp_password"}))
    config = on.files[Path("/work/data/stack/alertmanager.yml")]
    assert any(r.get("slack_configs") for r in config["receivers"])
    assert config["global"]["slack_api_url_file"] == "/work/secrets/slack_webhook_url"
    assert config["global"]["smtp_auth_password_file"] == "/work/secrets/smtp_password"


def test_with_the_sinks_alertmanager_delivers_to_them_and_keeps_the_shipped_routing() -> None:
    p = plan(["sinks", "alertmanager"], secrets=frozenset({"slack_webhook_url", "smtp_password"}))
    sinks = by_name(p)["sinks"]
    assert sinks.argv[3:] == (
        "sinks",
        "--config",
        "/work/cfg.yaml",
        "--host",
        "127.0.0.1",
        "--port",
        "8025",
        "--smtp-port",
        "1025",
    )
    assert sinks.health_url == "http://127.0.0.1:8025/-/healthy"
    assert sinks.port == 8025 and sinks.extra_ports == (1025,)
    config = p.files[Path("/work/data/stack/alertmanager.yml")]
    glob = config["global"]
    assert glob["smtp_smarthost"] == "127.0.0.1:1025" and glob["smtp_require_tls"] is False
    assert glob["slack_api_url"] == "http://127.0.0.1:8025/slack"
    for secret in ("smtp_auth_password_file", "slack_api_url_file", "smtp_auth_username"):
        assert secret not in glob  # the sinks win over secret files: nothing to read
    shipped = promconfig.load_yaml(promconfig.ALERTMANAGER_CONFIG)
    assert config["route"] == shipped["route"]
    assert config["inhibit_rules"] == shipped["inhibit_rules"]
    assert [r["name"] for r in config["receivers"]] == [r["name"] for r in shipped["receivers"]]
    assert any(r.get("slack_configs") for r in config["receivers"])


def test_the_stack_section_sets_the_alerting_timers() -> None:
    raw = {
        "stack": {
            "scrape_interval": "1s",
            "evaluation_interval": "1s",
            "alert_for_scale": 0.01,
            "alert_resend_delay": "1s",
            "group_wait": "1s",
            "group_interval": "2s",
            "repeat_interval": "1h",
        }
    }
    p = plan(["exporter", "alertmanager", "prometheus"], raw=raw)
    prom = p.files[Path("/work/data/stack/prometheus.yml")]
    assert prom["global"]["scrape_interval"] == prom["global"]["evaluation_interval"] == "1s"
    assert prom["rule_files"] == [
        "/work/data/stack/rules/" + Path(r).name
        for r in promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG)["rule_files"]
    ]
    alerts = p.files[Path("/work/data/stack/rules/churn_alerts.yml")]
    durations = {
        (rule["alert"], rule["labels"]["severity"]): rule["for"]
        for group in alerts["groups"]
        for rule in group["rules"]
    }
    assert durations[("ChurnDataDriftDetected", "warning")] == "3s"  # 5m x 0.01
    assert durations[("ChurnDataDriftDetected", "critical")] == "6s"  # 10m x 0.01
    assert durations[("ChurnExporterDown", "critical")] == "1200ms"  # 2m x 0.01
    shipped = promconfig.load_yaml(promconfig.PROMETHEUS_RULES_DIR / "churn_alerts.yml")
    for ours, theirs in zip(alerts["groups"], shipped["groups"], strict=True):
        for rule, original in zip(ours["rules"], theirs["rules"], strict=True):
            assert {**rule, "for": original["for"]} == original  # only for: changed
    argv = by_name(p)["prometheus"].argv
    assert "--rules.alert.resend-delay=1s" in argv
    assert "--rules.alert.for-grace-period=600ms" in argv  # 1m x 0.01, below every for:
    route = p.files[Path("/work/data/stack/alertmanager.yml")]["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "1s",
        "2s",
        "1h",
    )
    # Without the section: the shipped rules and timers, Prometheus' own resend delay.
    default = plan(["exporter", "alertmanager", "prometheus"])
    argv = by_name(default)["prometheus"].argv
    assert "--rules.alert.for-grace-period=1m" in argv
    assert not any(a.startswith("--rules.alert.resend-delay") for a in argv)
    rules = default.files[Path("/work/data/stack/prometheus.yml")]["rule_files"]
    assert all(Path(r).parent == promconfig.PROMETHEUS_RULES_DIR for r in rules)
    assert default.files[Path("/work/data/stack/alertmanager.yml")]["route"]["group_wait"] == "30s"


def test_up_parser_accepts_services_no_monitoring_and_ports() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["up", "--services", "api", "exporter", "--no-monitoring", "--port", "prometheus=9190"]
    )
    assert args.services == ["api", "exporter"] and args.no_monitoring
    assert args.port == [("prometheus", 9190)]
    for bad in (["up", "--services", "nope"], ["up", "--port", "grafana=1"], ["up", "--port", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(bad)
        assert exit_info.value.code == 2


def test_format_table_lists_url_state_and_log() -> None:
    p = plan(["api", "exporter"])
    table = format_table(p, Path("/work"), {"api": "ready", "exporter": "ready"})
    lines = table.splitlines()
    assert lines[0].split() == ["service", "url", "state", "restarts", "log"]
    assert lines[1].split() == ["api", "http://127.0.0.1:8000/docs", "ready", "0", "logs/api.log"]
    restarted = format_table(p, Path("/work"), {"exporter": "ready"}, {"exporter": 2})
    assert restarted.splitlines()[2].split()[3] == "2"


def test_restart_policy_backs_off_exponentially_and_gives_up_within_its_window() -> None:
    policy = RestartPolicy(max_crashes=4, window=60.0, backoff=1.0, backoff_max=3.0)
    assert [policy.crash("api", t) for t in (0.0, 1.0, 2.0)] == [1.0, 2.0, 3.0]
    assert policy.crash("exporter", 2.0) == 1.0  # counted per service
    assert policy.crash("api", 3.0) is None  # the 4th crash within 60 s
    assert policy.crash("api", 200.0) == 1.0  # the old crashes left the window


# ------------------------------------------------------------------ process handling


def _proc_stat(pid: int) -> list[str] | None:
    """``state ppid pgrp ... starttime`` of a pid, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _live(pid: int) -> bool:
    """A process that is not a zombie, or a zombie leader whose threads still run."""
    fields = _proc_stat(pid)
    if fields is None:
        return False
    if fields[0] not in ("Z", "X"):
        return True
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    return any((_proc_stat_path(t) or ["Z"])[0] not in ("Z", "X") for t in tasks)


def _proc_stat_path(task: Path) -> list[str] | None:
    try:
        text = (task / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def descendants(root: int) -> dict[int, tuple[int, str]]:
    """Every live descendant of `root`: pid -> (process group, start time)."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(int(entry.name))
                info[int(entry.name)] = (int(fields[2]), fields[19])
    found: dict[int, tuple[int, str]] = {}
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found[child] = info[child]
            queue.append(child)
    return found


def survivors(started: dict[int, tuple[int, str]]) -> list[str]:
    """Processes of `started` (same pid and start time) or of their groups still alive."""
    groups = {group for group, _ in started.values()}
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _proc_stat(pid)
        if fields is None or not _live(pid):
            continue
        same = pid in started and started[pid][1] == fields[19]
        if same or int(fields[2]) in groups:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            alive.append(f"{pid} (group {fields[2]}): {cmdline.decode(errors='replace')}")
    return alive


STUBBORN = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print("ready", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.integration
def test_supervisor_kills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    said: list[str] = []
    supervisor = Supervisor(tmp_path / "logs", out=said.append, grace=1.0)
    spec = ServiceSpec("stubborn", "server", ((sys.executable, "-c", STUBBORN),))
    child = supervisor.spawn(spec, spec.argv)
    wait_until(lambda: "ready" in supervisor.log_path("stubborn").read_text(), 30, "the child")

    def group() -> dict[int, tuple[int, str]]:
        # other tests' processes (session fixtures) are descendants too: keep the child's group
        return {p: v for p, v in descendants(os.getpid()).items() if v[0] == child.pid}

    wait_until(lambda: len(group()) >= 2, 60, "the grandchild")
    started = group()
    assert len(started) == 2
    try:
        supervisor.stop_all()
        assert said == ["stubborn: still running after 1s: SIGKILL"]
        assert child.popen.returncode == -signal.SIGKILL
        wait_until(lambda: not survivors(started), 60, "the group to be gone")
        assert supervisor.children == []
    finally:
        for line in survivors(started):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def test_up_refuses_busy_ports_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        lines: list[str] = []
        config = parse_config({"exporter": {"port": port}})
        with pytest.raises(PortsInUse, match=f"port {port} \\(exporter\\) on 127.0.0.1"):
            up(config, ["exporter"], workdir=tmp_path, out=lines.append)
    assert not (tmp_path / "logs").exists()


def up_command(*args: str) -> list[str]:
    """`churn-monitor up ARGS`."""
    return [sys.executable, "-m", "exporter", "up", *args]


@pytest.fixture
def stopped_cleanly() -> Iterator[list[tuple[Process, dict[int, tuple[int, str]]]]]:
    """Processes registered here are stopped by pid at the end, whatever happened."""
    registered: list[tuple[Process, dict[int, tuple[int, str]]]] = []
    yield registered
    for process, started in registered:
        process.stop(30)
        for pid in survivors(started):
            os.kill(int(pid.split()[0]), signal.SIGKILL)


def _write_config(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _stop_and_check(process: Process, started: dict[int, tuple[int, str]]) -> str:
    process.signal(signal.SIGTERM)
    process.popen.wait(90)
    output = process.output()
    assert process.popen.returncode == 0, output
    assert "stopped" in output.splitlines()[-1]
    wait_until(lambda: not survivors(started), 15, "every child of `up` to be gone")
    return output


@pytest.mark.integration
@pytest.mark.slow
def test_up_starts_api_and_exporter_and_sigterm_leaves_nothing(
    mlflow_store: TrainedStore, tmp_path: Path, stopped_cleanly: list
) -> None:
    api_port, exporter_port = free_port(), free_port()
    raw = {
        **mlflow_store.config_raw,
        "data": {
            **mlflow_store.config_raw["data"],
            "current": {"url": f"sqlite:///{tmp_path / 'data' / 'predictions.db'}"},
        },
        "api": {"port": api_port, "url": f"http://127.0.0.1:{api_port}"},
        "exporter": {"port": exporter_port},
        "history": {"url": f"sqlite:///{tmp_path / 'data' / 'history.db'}"},
        "optuna": {"enabled": False},
    }
    config = _write_config(tmp_path, raw)
    setup = subprocess.run(
        [sys.executable, "-m", "exporter", "setup", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert setup.returncode == 0, setup.stderr

    process = Process(
        up_command("--config", str(config), "--services", "api", "exporter"),
        tmp_path / "up.out",
        cwd=tmp_path,
    )
    stopped_cleanly.append((process, {}))

    def table_printed() -> bool:
        assert process.alive(), process.output()
        return "Ctrl-C (or SIGTERM) stops everything." in process.output()

    wait_until(table_printed, 300, "`up` to report both services")
    rows = [line.split() for line in process.output().splitlines()]
    assert ["api", f"http://127.0.0.1:{api_port}/docs", "ready", "0", "logs/api.log"] in rows
    exporter_row = [
        "exporter",
        f"http://127.0.0.1:{exporter_port}/metrics",
        "ready",
        "0",
        "logs/exporter.log",
    ]
    assert exporter_row in rows
    assert httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=10).status_code == 200
    health = httpx.get(f"http://127.0.0.1:{exporter_port}/healthz", timeout=10)
    assert health.status_code == 200
    for name in ("api", "exporter"):
        log = (tmp_path / "logs" / f"{name}.log").read_text()
        assert f"--config {config}" in log.splitlines()[0], name

    started = descendants(process.pid)
    stopped_cleanly[-1] = (process, started)
    groups = {group for group, _ in started.values()}
    assert len(groups) == 2 and process.pid not in groups  # each child in its own group
    output = _stop_and_check(process, started)
    assert "stopping: exporter, api" in output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=2)


@pytest.mark.integration
def test_up_runs_prometheus_and_alertmanager_against_the_exporter(
    require_binary, tmp_path: Path, stopped_cleanly: list
) -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    ports = {name: free_port() for name in ("exporter", "prometheus", "alertmanager")}
    raw = {
        "performance_monitoring": {"enabled": False},
        "optuna": {"enabled": False},
        "exporter": {"port": ports["exporter"]},
    }
    config = _write_config(tmp_path, raw)
    setup = subprocess.run(
        [sys.executable, "-m", "exporter", "setup", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert setup.returncode == 0, setup.stderr
    process = Process(
        up_command(
            "--config",
            str(config),
            "--services",
            "exporter",
            "prometheus",
            "alertmanager",
            "--port",
            f"prometheus={ports['prometheus']}",
            "--port",
            f"alertmanager={ports['alertmanager']}",
        ),
        tmp_path / "up.out",
        cwd=tmp_path,
    )
    stopped_cleanly.append((process, {}))

    def table_printed() -> bool:
        assert process.alive(), process.output()
        return "Ctrl-C (or SIGTERM) stops everything." in process.output()

    wait_until(table_printed, 180, "`up` to report the three services")
    assert "grafana: not started by `up`" in process.output()
    prometheus = f"http://127.0.0.1:{ports['prometheus']}"

    def exporter_scraped() -> bool:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()
        health = {t["labels"]["job"]: t["health"] for t in targets["data"]["activeTargets"]}
        return health == {"churn-exporter": "up", "prometheus": "up", "alertmanager": "up"}

    wait_until(exporter_scraped, 90, "Prometheus to scrape the exporter and Alertmanager", 1.0)
    managers = httpx.get(f"{prometheus}/api/v1/alertmanagers", timeout=5).json()
    active = managers["data"]["activeAlertmanagers"]
    assert [m["url"] for m in active] == [f"http://127.0.0.1:{ports['alertmanager']}/api/v2/alerts"]
    status = httpx.get(f"http://127.0.0.1:{ports['alertmanager']}/api/v2/status", timeout=5)
    original = yaml.safe_load(status.json()["config"]["original"])
    hooks = [h["url"] for r in original["receivers"] for h in r.get("webhook_configs") or []]
    assert hooks == [f"http://127.0.0.1:{ports['exporter']}/alerts/webhook"]

    started = descendants(process.pid)
    stopped_cleanly[-1] = (process, started)
    assert len({group for group, _ in started.values()}) == 3
    _stop_and_check(process, started)
    assert (tmp_path / "logs" / "prometheus.log").stat().st_size > 0
    assert (tmp_path / "data" / "stack" / "prometheus.yml").is_file()


@pytest.mark.integration
def test_a_killed_exporter_is_restarted_and_status_shows_the_restart(
    tmp_path: Path, stopped_cleanly: list
) -> None:
    port = free_port()
    raw = {
        "performance_monitoring": {"enabled": False},
        "optuna": {"enabled": False},
        "exporter": {"port": port},
    }
    config = _write_config(tmp_path, raw)
    process = Process(
        up_command("--config", str(config), "--services", "exporter"),
        tmp_path / "up.out",
        cwd=tmp_path,
    )
    stopped_cleanly.append((process, {}))

    def exporter_ready(restarts: int) -> int | None:
        assert process.alive(), process.output()
        state = {s.name: s for s in read_state(tmp_path) or []}
        exporter = state.get("exporter")
        ok = exporter and exporter.state == "ready" and exporter.restarts == restarts
        return exporter.pid if ok else None

    first = wait_until(lambda: exporter_ready(0), 120, "the exporter to be ready")
    os.killpg(first, signal.SIGKILL)
    second = wait_until(lambda: exporter_ready(1), 120, "the exporter to be ready again")
    assert second != first
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    assert "exporter: exited with status -9; restarting in 1s (restart 1" in process.output()

    status = subprocess.run(
        [sys.executable, "-m", "exporter", "status", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [line.split() for line in status.stdout.splitlines()]
    assert rows[0] == ["service", "url", "state", "version", "restarts"]
    assert rows[1][:3] == ["exporter", f"http://127.0.0.1:{port}/metrics", "ready"]
    assert rows[1][-1] == "1"
    tasks = [line.split(":")[0] for line in status.stdout.splitlines()[2:]]
    assert "  exporter task drift" in tasks, status.stdout

    started = descendants(process.pid)
    stopped_cleanly[-1] = (process, started)
    _stop_and_check(process, started)
    assert read_state(tmp_path) is None
    status = subprocess.run(
        [sys.executable, "-m", "exporter", "status", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 1
    rows = [line.split() for line in status.stdout.splitlines()]
    assert ["exporter", f"http://127.0.0.1:{port}/metrics", "down", "-", "-"] in rows


@pytest.mark.integration
def test_up_stops_everything_when_a_service_crashes_every_time(
    tmp_path: Path, stopped_cleanly: list
) -> None:
    # the shipped exporter, configured with a web config file that does not exist
    raw = {
        "exporter": {"port": free_port(), "web_config_file": str(tmp_path / "missing.yml")},
        "stack": {"restart_max_crashes": 3, "restart_backoff_seconds": 0.1},
    }
    config = _write_config(tmp_path, raw)
    process = Process(
        up_command("--config", str(config), "--services", "exporter"),
        tmp_path / "up.out",
        cwd=tmp_path,
    )
    stopped_cleanly.append((process, {}))
    assert process.popen.wait(120) == 1
    output = process.output()
    assert output.count("exporter: exited with status 2; restarting in") == 2
    crashed = "exporter: crashed 3 times within 300s (last exit status 2): stopping everything"
    assert crashed in output
    assert "exporter.web_config_file: cannot read" in output  # the last lines of its log
    assert output.splitlines()[-1] == "stopped"


def test_repo_root_holds_the_configs_up_renders() -> None:
    """`up` renders from the checkout; the paths promconfig names exist here."""
    assert promconfig.PROMETHEUS_CONFIG.is_file() and promconfig.ALERTMANAGER_CONFIG.is_file()
    assert promconfig.REPO_ROOT == REPO
