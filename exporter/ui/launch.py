"""`churn-monitor ui`: run the Streamlit form headless, usage statistics off.

:func:`run_ui` starts ``python -m streamlit run exporter/ui/app.py`` as a child process
with the server flags below and waits for it; SIGTERM and SIGINT are passed on, so
stopping ``churn-monitor ui`` by pid stops Streamlit. The already-validated config
travels to the app as JSON in ``$CHURN_MONITOR_UI_CONFIG`` (a ``--config`` file given
to the CLI therefore applies as well); without that variable the app loads the config
itself (``$CHURN_MONITOR_CONFIG`` or the default path), so ``streamlit run
exporter/ui/app.py`` works on its own too. The prediction API is ``$CHURN_API_URL`` or
``api.url``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from exporter.config import MonitoringConfig, load_config, parse_config

APP_PATH = Path(__file__).resolve().with_name("app.py")
CONFIG_JSON_ENV = "CHURN_MONITOR_UI_CONFIG"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def load_ui_config() -> MonitoringConfig:
    """The config the app runs with: ``$CHURN_MONITOR_UI_CONFIG`` (JSON, set by
    :func:`run_ui`) or :func:`exporter.config.load_config`. Raises ConfigError."""
    raw = os.environ.get(CONFIG_JSON_ENV)
    if raw:
        return parse_config(json.loads(raw))
    return load_config()


def streamlit_command(host: str, port: int) -> list[str]:
    """The Streamlit command line: headless, no usage statistics, no file watcher, and
    no error details (tracebacks) shown to the person using the page."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.fileWatcherType",
        "none",
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "viewer",
    ]


def ui_environment(config: MonitoringConfig) -> dict[str, str]:
    """The child's environment: this one plus the config as JSON."""
    return {**os.environ, CONFIG_JSON_ENV: config.model_dump_json()}


def run_ui(config: MonitoringConfig, host: str | None = None, port: int | None = None) -> int:
    """Serve the form on `host`:`port` (default 127.0.0.1:8501) until Streamlit exits
    or this process gets SIGTERM/SIGINT; return Streamlit's exit status."""
    command = streamlit_command(host or DEFAULT_HOST, DEFAULT_PORT if port is None else port)
    child = subprocess.Popen(command, env=ui_environment(config))

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    main = threading.current_thread() is threading.main_thread()
    forwarded = (signal.SIGTERM, signal.SIGINT) if main else ()  # handlers: main thread only
    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if child.poll() is None:  # an exception while waiting: do not leave it running
            child.terminate()
            child.wait(10)
    return 128 - code if code < 0 else code
