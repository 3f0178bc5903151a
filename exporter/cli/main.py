"""The `churn-monitor` command line (also `python -m exporter`).

Bad arguments or config: one line naming the field and the problem, exit status 2,
nothing started and nothing written.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from exporter import __version__
from exporter.config import ConfigError, CurrentSourceConfig, MonitoringConfig, load_config
from exporter.data.synthetic import SCENARIOS
from exporter.ops.stack import add_up_parser

log = logging.getLogger("churn_monitor")


class UsageError(Exception):
    """A bad argument found after parsing; reported like argparse's errors (exit 2)."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer port, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _configure_logging(config: MonitoringConfig, verbose: bool) -> None:
    """Log to stderr; without ``verbose``, also keep third-party chatter out of the output.

    The MLflow switches are environment variables, so they reach every command and the
    children `up` starts (they inherit the environment); a value set by the user wins.
    """
    level = "DEBUG" if verbose else config.logging.level
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if not verbose:
        # One line per HTTP request (the simulator's, MLflow's) drowns everything else.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        # MLflow's tqdm bars ("Downloading artifacts") whenever a model is loaded, and
        # its "View run ... at" lines on stdout for every run against a tracking server.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def _with_current(config: MonitoringConfig, path: str | None) -> MonitoringConfig:
    if not path:
        return config
    current = CurrentSourceConfig(
        kind="file", path=path, window_hours=None, window_rows=config.data.current.window_rows
    )
    return config.model_copy(update={"data": config.data.model_copy(update={"current": current})})


# --- commands ---------------------------------------------------------------------------


def cmd_setup(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.ops.bootstrap import setup

    for line in setup(config, skip_db=args.skip_db):
        print(line)
    return 0


def cmd_run(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.monitor.summary import format_summary
    from exporter.monitor.wiring import build_monitor, serve
    from exporter.web.webconfig import load_web_config

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
    web = load_web_config(config.exporter.web_config_file, "exporter.web_config_file")
    monitor = build_monitor(config, interval_minutes=args.interval)
    serve(monitor, host, port, web=web)
    busy = [t.name for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")]
    if busy:
        # A job still computing would hold the interpreter at exit; reports are written
        # atomically, so abandoning it loses nothing.
        log.info("abandoning %d running job thread(s)", len(busy))
        logging.shutdown()
        os._exit(0)
    return 0


def cmd_train(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.model.registry import ModelUnavailable, resolve
    from exporter.training.pipeline import TrainingError, summary_lines, train

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
        )
    except TrainingError as err:
        raise UsageError(str(err)) from None
    for line in summary_lines(result):
        print(line)
    return 0


def cmd_api(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.api.app import serve_api

    serve_api(config, host=args.host, port=args.port)
    return 0


def cmd_ui(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.ui.launch import run_ui

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
    columns = [c for c in shown[0] if c not in ("labels", "annotations", "id")]
    widths = {
        c: max(len(c), *(len(str(r[c] if r[c] is not None else "")) for r in shown))
        for c in columns
    }
    print("  ".join(c.ljust(min(widths[c], 60)) for c in columns))
    for row in shown:
        cells = [str(row[c] if row[c] is not None else "")[:60] for c in columns]
        print("  ".join(v.ljust(min(widths[c], 60)) for v, c in zip(cells, columns, strict=True)))
    return 0


def cmd_sinks(args: argparse.Namespace, config: MonitoringConfig) -> int:
    from exporter.ops.outbox import Outbox, Sinks

    outbox = Outbox(args.dir or config.stack.outbox_dir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        sinks = Sinks(outbox, args.host, args.smtp_port, args.port).start()
    except OSError as err:
        print(f"churn-monitor sinks: cannot listen: {err.strerror or err}", file=sys.stderr)
        return 1
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


# --- parser -----------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="path of the monitoring config YAML (default: $CHURN_MONITOR_CONFIG "
        "or configs/monitoring/monitoring_config.yaml)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log at DEBUG level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="churn-monitor",
        description="Drift and model-quality monitoring for a customer-churn classifier.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("setup", help="create folders, databases and the synthetic reference")
    _common(p)
    p.add_argument("--skip-db", action="store_true", help="do not create the SQLite databases")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("run", help="run the monitoring jobs once, or serve /metrics continuously")
    _common(p)
    p.add_argument("--mode", choices=("once", "continuous"), default="once")
    p.add_argument(
        "--interval",
        type=_positive_float,
        metavar="MINUTES",
        help="schedule of every job in continuous mode (overrides check_interval_minutes)",
    )
    p.add_argument("--host", help="address to bind (default: exporter.host)")
    p.add_argument("--port", type=_port, help="port to bind (default: exporter.port, 9108)")
    p.add_argument(
        "--current",
        metavar="PATH",
        help="read the current window from this CSV/Parquet file or glob instead of the config",
    )
    p.add_argument(
        "--fail-on-drift",
        action="store_true",
        help="exit 1 when the dataset drift score exceeds its threshold (for batch pipelines)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="tune with Optuna, track in MLflow, register the champion")
    _common(p)
    p.add_argument(
        "--data", metavar="FILE", help="CSV/Parquet in the Telco schema (default: synthetic)"
    )
    p.add_argument("--trials", type=_positive_int, help="Optuna trials (default: optuna.n_trials)")
    p.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="stop tuning after S seconds"
    )
    p.add_argument("--seed", type=int, default=42, help="seed of the split and the sampler")
    p.add_argument(
        "--if-no-champion",
        action="store_true",
        help="do nothing when the registry already has a champion (for first starts)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("api", help="serve the prediction API (FastAPI on uvicorn)")
    _common(p)
    p.add_argument("--host", help="address to bind (default: api.host)")
    p.add_argument("--port", type=_port, help="port to bind (default: api.port, 8000)")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("ui", help="serve the Streamlit prediction form")
    _common(p)
    p.add_argument("--host", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8501, help="port to bind (default: 8501)")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("simulate", help="send synthetic, optionally drifting traffic to the API")
    _common(p)
    p.add_argument("--api", metavar="URL", help="base URL of the API (default: api.url)")
    p.add_argument("--rate", type=_positive_float, default=10.0, help="customers per second")
    p.add_argument("--duration", type=_positive_float, default=60.0, metavar="S", help="seconds")
    p.add_argument("--scenario", default="none", choices=SCENARIOS, help="drift scenario")
    p.add_argument(
        "--label-delay",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds before the true outcome is posted as feedback",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch", type=_positive_int, default=1, help="customers per request")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("history", help="query the monitoring history (alerts, runs, retraining)")
    _common(p)
    p.add_argument(
        "--type",
        choices=("alerts", "drift", "performance", "retraining"),
        default="alerts",
        help="which history (default: alerts)",
    )
    p.add_argument("--since", type=_positive_float, metavar="HOURS", help="only the last HOURS")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "sinks",
        help="run the local email (SMTP) and Slack sinks that `up` sends notifications to",
    )
    _common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8025, help="Slack webhook port (default: 8025)")
    p.add_argument("--smtp-port", type=_port, default=1025, help="SMTP port (default: 1025)")
    p.add_argument("--dir", help="where to store messages (default: stack.outbox_dir)")
    p.set_defaults(func=cmd_sinks)

    p = sub.add_parser("outbox", help="list the notifications the local sinks received")
    _common(p)
    p.add_argument(
        "message",
        nargs="?",
        metavar="MESSAGE",
        help="show this message in full: its number in the list, or its id",
    )
    p.add_argument("--dir", help="the outbox folder (default: stack.outbox_dir)")
    p.set_defaults(func=cmd_outbox)

    _common(add_up_parser(sub))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        parser.exit(2, f"churn-monitor: error: {err}\n")
    _configure_logging(config, args.verbose)
    func: Callable[[argparse.Namespace, MonitoringConfig], int] = args.func
    try:
        return func(args, config)
    except (UsageError, ConfigError) as err:
        parser.exit(2, f"churn-monitor: error: {err}\n")
    except KeyboardInterrupt:
        return 130
