"""The `churn-monitor` commands: one ``cmd_*`` function each, calling into the room that
does the work (imported when the command runs, so ``--help`` stays fast).

Each takes the parsed arguments and the loaded config and returns the exit status; a
bad argument found only now raises :class:`~exporter.cli.errors.UsageError` (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from exporter.cli.errors import CommandError, UsageError
from exporter.config import CurrentSourceConfig, MonitoringConfig

log = logging.getLogger("churn_monitor")

#: Widest cell of the history table.
HISTORY_CELL_WIDTH = 60


def _with_current(config: MonitoringConfig, path: str | None) -> MonitoringConfig:
    if not path:
        return config
    current = CurrentSourceConfig(
        kind="file", path=path, window_hours=None, window_rows=config.data.current.window_rows
    )
    return config.model_copy(update={"data": config.data.model_copy(update={"current": current})})


def _check_port_free(host: str, port: int, flag: str = "--port") -> None:
    """Raise CommandError when something already listens on `host`:`port`."""
    from exporter.ops.supervisor import port_in_use

    if port and port_in_use(host, port):
        raise CommandError(
            f"port {port} on {host} is already in use: stop what listens there, "
            f"or pick another with {flag}"
        )


def _check_current(path: str | None) -> None:
    """Raise CommandError when ``--current`` names no file."""
    import glob

    if path and not glob.glob(path):
        raise CommandError(
            f"--current {path}: no such file (give a CSV or Parquet file, or a glob of them)"
        )


def cmd_setup(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.ops.bootstrap import setup

    for line in setup(config, skip_db=args.skip_db):
        print(line)
    return 0


def cmd_run(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.monitor.summary import format_summary
    from exporter.monitor.wiring import build_monitor, serve
    from exporter.monitor.worker import WorkerSpec
    from exporter.web.webconfig import load_web_config

    _check_current(args.current)
    config = _with_current(config, args.current)
    if args.mode == "once":
        monitor = build_monitor(config, interval_minutes=args.interval)
        if not monitor.jobs:
            print("no monitoring job is enabled in the config")
            return 0
        outcome = monitor.run_once()
        print(format_summary(monitor.store))
        if not all(outcome.values()):
            return 1
        drift = monitor.store.snapshots().get("drift")
        if args.fail_on_drift and drift is not None and drift.result.drifted:
            return 1
        return 0

    host = args.host or config.exporter.host
    port = config.exporter.port if args.port is None else args.port
    _check_port_free(host, port)
    web = load_web_config(config.exporter.web_config_file, "exporter.web_config_file")
    monitor = build_monitor(config, interval_minutes=args.interval)
    # The jobs compute in a worker process built the same way (exporter.monitor.worker).
    worker = WorkerSpec(
        build_monitor, (config,), {"interval_minutes": args.interval, "continuous": True}
    )
    serve(monitor, host, port, web=web, worker=worker)
    return 0


def cmd_train(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.model.registry import ModelUnavailable, check_server_answers, resolve
    from exporter.training.pipeline import TrainingError, summary_lines, train

    check_server_answers(config.model.tracking_uri)  # not minutes of retries after tuning
    if args.if_no_champion:
        try:
            info = resolve(config)
        except ModelUnavailable:
            pass
        else:
            print(f"champion exists: {info.ref.name} version {info.ref.version}; not training")
            return 0
    try:
        result = train(
            config,
            data=args.data,
            trials=args.trials,
            timeout=args.timeout,
            seed=args.seed,
            # --verbose logs a line per trial instead: the bar would garble DEBUG output.
            progress=sys.stderr.isatty() and not args.verbose,
            shuffle=args.shuffle,
        )
    except TrainingError as err:
        raise UsageError(str(err)) from None
    for line in summary_lines(result):
        print(line)
    return 0


def cmd_challenger(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.model.registry import ModelUnavailable, check_server_answers, resolve
    from exporter.training.challengers import RECIPES, challenger_target, register_challenger
    from exporter.training.pipeline import TrainingError, summary_lines

    check_server_answers(config.model.tracking_uri)
    try:
        target = challenger_target(config)
        if args.if_no_challenger:
            try:
                info = resolve(target)
            except ModelUnavailable:
                pass
            else:
                print(
                    f"challenger exists: {info.ref.name} version {info.ref.version}; not training"
                )
                return 0
        result = register_challenger(
            config,
            args.kind,
            trials=args.trials,
            seed=args.seed,
            progress=sys.stderr.isatty() and not args.verbose,
        )
    except TrainingError as err:
        raise UsageError(str(err)) from None
    print(f"challenger {args.kind}: {RECIPES[args.kind].about}")
    for line in summary_lines(result):
        print(line)
    return 0


def cmd_api(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.api.app import serve_api
    from exporter.api.replicas import replica_ports, serve_replicas

    host = args.host or config.api.host
    port = config.api.port if args.port is None else args.port
    for number in replica_ports(port, args.workers):
        _check_port_free(host, number)
    if args.workers == 1:
        serve_api(config, host=host, port=port)
        return 0
    return serve_replicas(config, host, port, args.workers)


def cmd_ui(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.ui.launch import run_ui

    _check_port_free(args.host or "127.0.0.1", args.port)
    return run_ui(config, host=args.host, port=args.port)


def cmd_simulate(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.ops.simulate import SimulationError, simulate

    try:
        result = simulate(
            args.api or config.api.url,
            rate=args.rate,
            duration=args.duration,
            scenario=args.scenario,
            label_delay=args.label_delay,
            seed=args.seed,
            batch=args.batch,
            progress=sys.stderr.isatty(),
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    except SimulationError as err:
        print(err.result.summary())
        print(f"churn-monitor simulate: the API refused traffic: {err}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0 if result.ok else 1


def cmd_promote(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.data.history import open_history
    from exporter.loop.promotion import PromotionError, promote

    alias = args.alias or config.model.challenger_alias
    if alias is None:
        raise UsageError("--alias: no challenger alias (model.challenger_alias is null)")
    if alias == config.model.registry_alias:
        raise UsageError(f"--alias: {alias} is the champion alias")
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"challenger_alias": alias})}
    )
    history = open_history(config.history.url) if config.history.enabled else None
    trigger = "churn-monitor promote --force" if args.force else "churn-monitor promote"
    try:
        decision = promote(config, history, trigger=trigger, force=args.force)
    except PromotionError as err:
        print(f"churn-monitor promote: {err}", file=sys.stderr)
        return 1
    finally:
        if history is not None:
            history.dispose()
    assert decision.evidence is not None
    for line in decision.evidence.lines():
        print(line)
    if decision.promoted:
        forced = " (forced: the evidence was not checked)" if args.force else ""
        print(
            f"promoted: {config.model.registry_alias} is now version "
            f"{decision.evidence.challenger.version}{forced}"
        )
        return 0
    if decision.decision == "failed":
        print(f"churn-monitor promote: {decision.detail}", file=sys.stderr)
        return 1
    print("not promoted; missing evidence:", file=sys.stderr)
    for reason in decision.missing:
        print(f"  - {reason}", file=sys.stderr)
    return 1


def cmd_history(args: argparse.Namespace, config: MonitoringConfig) -> int:
    import csv
    import json

    from exporter.data.history import open_history, query, rows_for_display

    since = None
    if args.since is not None:
        since = time.time() - args.since * 3600.0
    engine = open_history(config.history.url)
    try:
        rows = query(engine, args.type, since=since)
    finally:
        engine.dispose()
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
        return 0
    shown = rows_for_display(rows)
    if args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(shown[0]) if shown else ["id"])
        writer.writeheader()
        writer.writerows(shown)
        return 0
    if not shown:
        print(f"no {args.type} rows")
        return 0
    for line in _history_table(shown):
        print(line)
    return 0


def cmd_report(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from pathlib import Path

    from exporter.data.history import open_history
    from exporter.data.sources import SourceError
    from exporter.monitor import reports
    from exporter.monitor.reference_job import ReferenceCache
    from exporter.monitor.report_job import anchor_kind, run_report_html
    from exporter.report.period import period_report

    if args.since is not None:
        now = time.time()
        html = period_report(config, args.since, now)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        out = Path(args.out or Path(config.reports.dir) / f"period_report_{stamp}.html")
    else:
        kind = anchor_kind(config)
        if kind is None:
            raise UsageError("--run: drift and performance monitoring are both disabled")
        anchor = reports.newest_report(config.reports.dir, kind)
        if anchor is None:
            folder = reports.report_dir(config.reports.dir, kind)
            print(
                f"churn-monitor report: no {kind} report in {folder} "
                "(`churn-monitor run` writes one)",
                file=sys.stderr,
            )
            return 1
        history = open_history(config.history.url) if config.history.enabled else None
        try:
            reference = ReferenceCache(config.data.reference_path)
            html = run_report_html(config, anchor, reference, history)
        except SourceError as err:
            print(f"churn-monitor report: {err}", file=sys.stderr)
            return 1
        finally:
            if history is not None:
                history.dispose()
        out = Path(args.out) if args.out else reports.html_path(anchor)
    reports.write_html(out, html)
    print(f"{out} ({len(html.encode()) / 1024:.0f} KiB)")
    return 0


def _history_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """History rows as aligned text lines (header first), cells cut at 60 characters;
    labels, annotations and ids are left out."""
    width = HISTORY_CELL_WIDTH
    columns = [c for c in rows[0] if c not in ("labels", "annotations", "id")]

    def text(row: Mapping[str, Any], column: str) -> str:
        return str(row[column] if row[column] is not None else "")

    widths = {c: max(len(c), *(len(text(r, c)) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(min(widths[c], width)) for c in columns)]
    for row in rows:
        cells = [text(row, c)[:width] for c in columns]
        lines.append(
            "  ".join(v.ljust(min(widths[c], width)) for v, c in zip(cells, columns, strict=True))
        )
    return lines


def cmd_sinks(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.ops.outbox import Outbox, Sinks

    _check_port_free(args.host, args.port, "--port")
    _check_port_free(args.host, args.smtp_port, "--smtp-port")
    outbox = Outbox(args.dir or config.stack.outbox_dir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        sinks = Sinks(outbox, args.host, args.smtp_port, args.port).start()
    except OSError as err:
        raise CommandError(
            f"cannot listen on {args.host} ports {args.port} and {args.smtp_port}: "
            f"{err.strerror or err} (pick others with --port and --smtp-port)"
        ) from err
    log.info(
        "sinks: SMTP on %s:%d, Slack webhook on http://%s:%d/slack, storing in %s",
        args.host,
        args.smtp_port,
        args.host,
        args.port,
        outbox.root,
    )
    stop.wait()
    sinks.stop()
    return 0


def cmd_outbox(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.ops.outbox import Outbox, format_list, message_text

    if args.dir is not None and not os.path.isdir(args.dir):
        raise UsageError(f"--dir {args.dir}: no such folder")
    outbox = Outbox(args.dir or config.stack.outbox_dir)
    if args.message is None:
        print(format_list(outbox.messages()))
        return 0
    try:
        message = outbox.find(args.message)
    except LookupError as err:
        raise UsageError(f"MESSAGE: {err}") from None
    print(f"{message.channel} {message.id} ({message.path})")
    print(message_text(message), end="")
    return 0


def cmd_up(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.ops.services import StackError
    from exporter.ops.up import up

    try:
        return up(
            config,
            args.services,
            args.no_monitoring,
            config_path=args.config,
            ports=dict(args.port),
            api_replicas=args.api_replicas,
        )
    except StackError as err:
        raise UsageError(str(err)) from None


def cmd_notify_test(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from pathlib import Path

    from exporter.ops.notify import notify_test
    from exporter.ops.services import LOCAL_HOST, service_ports

    url = args.alertmanager or f"http://{LOCAL_HOST}:{service_ports(config)['alertmanager']}"
    log_path = Path(args.log) if args.log else Path("logs/alertmanager.log")
    if args.log and not log_path.is_file():
        raise CommandError(f"--log {args.log}: no such file")
    outcomes = notify_test(
        url,
        args.severity,
        timeout=args.timeout,
        log_path=log_path if log_path.is_file() else None,
    )
    return 0 if all(o.delivered for o in outcomes) else 1


def cmd_status(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from pathlib import Path

    from exporter.ops.facts import gather_facts
    from exporter.ops.plan import plan_stack
    from exporter.ops.status import planned_state, read_state, stack_status

    workdir = Path.cwd()
    running = read_state(workdir)
    planned = []
    if running is None:
        plan = plan_stack(
            config,
            services=None,
            no_monitoring=False,
            facts=gather_facts(workdir / "secrets"),
            config_path=None,
            workdir=workdir,
        )
        planned = planned_state(plan)
    lines, healthy = stack_status(running, planned, time.time())
    for line in lines:
        print(line)
    return 0 if healthy else 1
