"""The `churn-monitor` command line (also `python -m exporter`): parser and entry point.

Bad arguments or config: one line naming the field and the problem, exit status 2,
nothing started and nothing written. Any other failure of a command (a missing file, no
registered model, a database or registry that does not answer, a port in use): one line
on stderr naming the thing and what to do, exit status 1; the traceback only with
``--verbose``. The commands live in :mod:`exporter.cli.commands`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from exporter import __version__
from exporter.cli import commands
from exporter.cli.errors import UsageError, describe
from exporter.config import ConfigError, MonitoringConfig, load_config
from exporter.domain import schema
from exporter.domain.scenarios import SCENARIOS
from exporter.ops.services import DEFAULT_PORTS, MONITORING_SERVICES, SERVICES

Command = Callable[[argparse.Namespace, MonitoringConfig], int]
_N = TypeVar("_N", int, float)
if TYPE_CHECKING:
    # argparse gives the type of `add_subparsers()` no public name.
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


# --- argument types ---------------------------------------------------------------------


def _parsed(text: str, parse: Callable[[str], _N], what: str) -> _N:
    """`text` read by `parse` (``int`` or ``float``); "expected `what`" when it cannot be."""
    try:
        return parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _positive_float(text: str) -> float:
    value = _parsed(text, float, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = _parsed(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _parsed(text, int, "an integer port")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _http_url(text: str) -> str:
    """A base URL of an HTTP server (``http://host:port`` or ``https://...``)."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT, got {text!r}")
    return text


def _service_port(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or name not in DEFAULT_PORTS:
        raise argparse.ArgumentTypeError(
            f"expected SERVICE=PORT with SERVICE one of {', '.join(DEFAULT_PORTS)}, got {text!r}"
        )
    port = _parsed(value, int, "an integer port")
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 1..65535, got {port}")
    return name, port


# --- parser -----------------------------------------------------------------------------


def _command(
    sub: Subparsers, name: str, func: Command, about: str, description: str | None = None
) -> argparse.ArgumentParser:
    """Add command `name` (run by `func`, `about` in the list of commands) with the
    common ``--config`` and ``--verbose``."""
    parser = sub.add_parser(name, help=about, description=description)
    parser.add_argument(
        "--config",
        help="path of the monitoring config YAML (default: $CHURN_MONITOR_CONFIG "
        "or configs/monitoring/monitoring_config.yaml)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log at DEBUG level")
    parser.set_defaults(func=func)
    return parser


def _add_setup(sub: Subparsers) -> None:
    about = "create folders, databases and the synthetic reference"
    p = _command(sub, "setup", commands.cmd_setup, about)
    p.add_argument("--skip-db", action="store_true", help="do not create the SQLite databases")


def _add_run(sub: Subparsers) -> None:
    about = "run the monitoring jobs once, or serve /metrics continuously"
    p = _command(sub, "run", commands.cmd_run, about)
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


def _add_train(sub: Subparsers) -> None:
    about = "tune with Optuna, track in MLflow, register the champion"
    p = _command(sub, "train", commands.cmd_train, about)
    p.add_argument(
        "--data", metavar="FILE", help="CSV/Parquet in the Telco schema (default: synthetic)"
    )
    p.add_argument("--trials", type=_positive_int, help="Optuna trials (default: optuna.n_trials)")
    p.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="stop tuning after S seconds"
    )
    p.add_argument("--seed", type=int, default=42, help="seed of the split and the sampler")
    p.add_argument(
        "--shuffle",
        nargs="+",
        default=[],
        choices=schema.FEATURES,
        metavar="COLUMN",
        help="shuffle these feature columns among the training rows before tuning and "
        "fitting, so the model learns nothing from them (an ablation, or a deliberately "
        "weaker model); validation, test and the reference snapshot stay intact",
    )
    p.add_argument(
        "--if-no-champion",
        action="store_true",
        help="do nothing when the registry already has a champion (for first starts)",
    )


def _add_challenger(sub: Subparsers) -> None:
    p = _command(
        sub,
        "challenger",
        commands.cmd_challenger,
        "train a better or a worse model and register it as the challenger",
        description="Train a model on synthetic customers and register it under "
        "model.challenger_alias with its reference snapshot and baseline; the champion "
        "does not move. better: more data (20000 customers instead of 7000); worse: "
        "Contract, tenure, TotalCharges, InternetService, MonthlyCharges and "
        "PaymentMethod shuffled among the training rows. The API shadow-scores the "
        "challenger, the exporter compares it with the champion, and `churn-monitor "
        "promote` makes it the champion when live traffic shows it is better.",
    )
    p.add_argument("kind", choices=("better", "worse"), help="which challenger")
    p.add_argument("--trials", type=_positive_int, help="Optuna trials (default: optuna.n_trials)")
    p.add_argument(
        "--seed", type=int, default=42, help="seed of the customers, the split and the sampler"
    )
    p.add_argument(
        "--if-no-challenger",
        action="store_true",
        help="do nothing when the registry already has a challenger (for first starts)",
    )


def _add_api_and_ui(sub: Subparsers) -> None:
    p = _command(sub, "api", commands.cmd_api, "serve the prediction API (FastAPI on uvicorn)")
    p.add_argument("--host", help="address to bind (default: api.host)")
    p.add_argument("--port", type=_port, help="port to bind (default: api.port, 8000)")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run N API processes on PORT..PORT+N-1, each with its own /metrics "
        "(docs/scaling.md; default: 1)",
    )

    p = _command(sub, "ui", commands.cmd_ui, "serve the Streamlit prediction form")
    p.add_argument("--host", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8501, help="port to bind (default: 8501)")


def _add_simulate(sub: Subparsers) -> None:
    about = "send synthetic, optionally drifting traffic to the API"
    p = _command(sub, "simulate", commands.cmd_simulate, about)
    p.add_argument(
        "--api", type=_http_url, metavar="URL", help="base URL of the API (default: api.url)"
    )
    p.add_argument(
        "--rate", type=_positive_float, default=10.0, help="customers per second (default: 10)"
    )
    p.add_argument(
        "--duration", type=_positive_float, default=60.0, metavar="S", help="seconds (default: 60)"
    )
    p.add_argument(
        "--scenario", default="none", choices=SCENARIOS, help="drift scenario (default: none)"
    )
    p.add_argument(
        "--label-delay",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds before the true outcome is posted as feedback (default: 5; the "
        "simulator: section of the config is for the simulator `up` starts)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch", type=_positive_int, default=1, help="customers per request")


def _add_history(sub: Subparsers) -> None:
    about = "query the monitoring history (alerts, runs, retraining)"
    p = _command(sub, "history", commands.cmd_history, about)
    p.add_argument(
        "--type",
        choices=("alerts", "drift", "performance", "retraining"),
        default="alerts",
        help="which history (default: alerts)",
    )
    p.add_argument("--since", type=_positive_float, metavar="HOURS", help="only the last HOURS")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")


def _add_report(sub: Subparsers) -> None:
    p = _command(
        sub,
        "report",
        commands.cmd_report,
        "render an HTML report: the last monitoring run, or a period of the history",
        description="Write a self-contained HTML report (docs/reports.md). --run: the "
        "last run's drift and performance reports with the data analysis of the "
        "reference and the window (default: beside its JSON report, the file the run "
        "wrote). --since HOURS: drift, per-feature decisions and performance over time, "
        "alerts received and retraining decisions from the history (default: "
        "<reports.dir>/period_report_<UTC time>.html).",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", action="store_true", help="the last monitoring run")
    which.add_argument(
        "--since", type=_positive_float, metavar="HOURS", help="the last HOURS of the history"
    )
    p.add_argument("--out", metavar="FILE", help="write the report here")


def _add_promote(sub: Subparsers) -> None:
    p = _command(
        sub,
        "promote",
        commands.cmd_promote,
        "make the challenger the champion if live traffic shows it is better",
        description="Compare champion and challenger on the labelled customers both "
        "scored (the API's shadow scores) and move the champion alias to the challenger "
        "only with enough evidence (model_comparison.min_paired_rows, pvalue, "
        "retraining.min_improvement and cooldown_minutes). Prints the evidence; exits 1 "
        "naming what is missing. The decision goes to the history.",
    )
    p.add_argument(
        "--alias", help="the alias of the model to promote (default: model.challenger_alias)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="promote without checking the evidence (recorded as forced)",
    )


def _add_sinks_and_outbox(sub: Subparsers) -> None:
    about = "run the local email (SMTP) and Slack sinks that `up` sends notifications to"
    p = _command(sub, "sinks", commands.cmd_sinks, about)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8025, help="Slack webhook port (default: 8025)")
    p.add_argument("--smtp-port", type=_port, default=1025, help="SMTP port (default: 1025)")
    p.add_argument("--dir", help="where to store messages (default: stack.outbox_dir)")

    about = "list the notifications the local sinks received"
    p = _command(sub, "outbox", commands.cmd_outbox, about)
    p.add_argument(
        "message",
        nargs="?",
        metavar="MESSAGE",
        help="show this message in full: its number in the list, or its id",
    )
    p.add_argument("--dir", help="the outbox folder (default: stack.outbox_dir)")


def _add_up(sub: Subparsers) -> None:
    p = _command(
        sub,
        "up",
        commands.cmd_up,
        "start the whole stack as local processes (Ctrl-C stops it)",
        description="Start MLflow, the Optuna dashboard, the API, the exporter, the UI, the "
        "local email and Slack sinks, Prometheus and Alertmanager as local processes, like "
        "`docker compose up`; logs in logs/<service>.log; Ctrl-C or SIGTERM stops every one.",
    )
    p.add_argument(
        "--services",
        nargs="+",
        choices=SERVICES,
        metavar="SERVICE",
        help=f"start only these (any of: {', '.join(SERVICES)}; default: all but simulator)",
    )
    p.add_argument(
        "--no-monitoring",
        action="store_true",
        help=f"leave out {', '.join(MONITORING_SERVICES)}",
    )
    p.add_argument(
        "--port",
        action="append",
        type=_service_port,
        default=[],
        metavar="SERVICE=PORT",
        help="listen on another port (repeatable), e.g. --port prometheus=9190",
    )
    p.add_argument(
        "--api-replicas",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run N API processes on consecutive ports from the API's, all scraped by "
        "Prometheus (`api --workers N`; default: 1)",
    )


def _add_notify_test_and_status(sub: Subparsers) -> None:
    p = _command(
        sub,
        "notify-test",
        commands.cmd_notify_test,
        "send a test alert through Alertmanager and report its delivery per receiver",
        description="Post ChurnNotificationTest with the given severity to Alertmanager's "
        "v2 API, follow each receiver the severity routes to in Alertmanager's "
        "notification counters, print one line per receiver (delivered, or failed with "
        "the reason from Alertmanager's log), then resolve the alert. Exit 0 only if "
        "every receiver got it (docs/runbook.md#alert-delivery).",
    )
    p.add_argument("--severity", choices=("critical", "warning", "info"), default="critical")
    p.add_argument(
        "--alertmanager",
        type=_http_url,
        metavar="URL",
        help="Alertmanager's base URL (default: the one `up` runs, on its configured port)",
    )
    p.add_argument(
        "--log",
        metavar="FILE",
        help="Alertmanager's log, where it names why a delivery failed "
        "(default: logs/alertmanager.log when it exists)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=120.0,
        metavar="S",
        help="give up waiting for the deliveries after S seconds (default: 120)",
    )

    _command(
        sub,
        "status",
        commands.cmd_status,
        "show the local stack: each service's state, version and restarts",
        description="One table of the services `up` runs here (data/stack/state.json), "
        "or of the configured URLs when no `up` runs: URL, state from the health "
        "endpoint, version or model version, restarts; and the last success of each "
        "exporter task. Exit 1 when a service is down or not ready.",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, each with its ``func``."""
    parser = argparse.ArgumentParser(
        prog="churn-monitor",
        description="Drift and model-quality monitoring for a customer-churn classifier.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--verbose",
        "-v",
        dest="global_verbose",
        action="store_true",
        help="log at DEBUG level and show the traceback of a failure (also after COMMAND)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_setup,
        _add_run,
        _add_train,
        _add_challenger,
        _add_api_and_ui,
        _add_simulate,
        _add_history,
        _add_report,
        _add_promote,
        _add_sinks_and_outbox,
        _add_up,
        _add_notify_test_and_status,
    ):
        add(sub)
    return parser


# --- entry point ------------------------------------------------------------------------


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run `churn-monitor ARGV`; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = args.verbose or args.global_verbose
    try:
        config = load_config(args.config)
    except ConfigError as err:
        parser.exit(2, f"churn-monitor: error: {err}\n")
    _configure_logging(config, args.verbose)
    func: Command = args.func
    try:
        return func(args, config)
    except (UsageError, ConfigError) as err:
        parser.exit(2, f"churn-monitor: error: {err}\n")
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if args.verbose:
            traceback.print_exc()
        line = describe(err, verbose=args.verbose)
        print(f"churn-monitor {args.command}: {line}", file=sys.stderr)
        return 1
