"""What the command line prints: no third-party progress bars or per-trial log lines
unless ``--verbose``; `train` on a terminal shows one bar over its trials.

The commands run as real processes (``python -m exporter``) in a temporary folder with
a config file of their own; one `setup` and one `train` serve every test.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import termios
import threading
from pathlib import Path

import optuna
import pytest

from exporter.training.tune import TrialProgress

from .support import churn_monitor

#: Text that only a progress bar (tqdm's, MLflow's) or Optuna's trial log would print.
BAR_MARKS = ("Downloading artifacts", "\r", "%|", "it/s]")
TRIAL_LINE = "finished with value"
#: Variables of the caller that would change what the commands print.
CALLER_VARS = (
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "CHURN_MONITOR_CONFIG",
    "LOG_LEVEL",
)
CONFIG = "optuna: {n_trials: 2}\n"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CALLER_VARS}


def _cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = str(workdir / "config.yaml")
    return subprocess.run(
        churn_monitor(args[0], "--config", config, *args[1:]),
        cwd=workdir,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_no_bars(output: str) -> None:
    for mark in (*BAR_MARKS, TRIAL_LINE):
        assert mark not in output, f"{mark!r} in the output:\n{output}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-output")
    (path / "config.yaml").write_text(CONFIG)
    _cli(path, "setup").check_returncode()
    return path


@pytest.fixture(scope="module")
def trained(workdir: Path) -> subprocess.CompletedProcess[str]:
    """`train` with stderr a pipe (not a terminal): version 1 of the model."""
    proc = _cli(workdir, "train")
    assert proc.returncode == 0, proc.stderr
    return proc


# ------------------------------------------------------------------------ the bar


def test_trial_progress_shows_this_calls_best_value_so_far() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.99))  # an earlier training's trial 0
    values = iter([0.5, None, 0.9, 0.7, 0.9])

    def objective(trial: optuna.Trial) -> float:
        value = next(values)
        if value is None:
            raise optuna.TrialPruned
        return value

    out = io.StringIO()
    with TrialProgress(5, file=out) as bar:
        study.optimize(objective, n_trials=5, callbacks=[bar])

    assert bar.best is not None
    assert (bar.best.number, bar.best.value) == (3, 0.9)  # not the earlier 0.99; ties: first
    final = out.getvalue().split("\r")[-1]
    assert "tuning: 100%" in final
    assert "5/5 [" in final
    assert "best CV ROC AUC 0.9000 (trial 3)" in final
    assert out.getvalue().count("\n") == 1  # one bar, redrawn in place


def test_trial_progress_before_any_complete_trial_and_disabled() -> None:
    study = optuna.create_study(direction="maximize")

    def pruned(trial: optuna.Trial) -> float:
        raise optuna.TrialPruned

    out = io.StringIO()
    with TrialProgress(2, file=out) as bar:
        study.optimize(pruned, n_trials=2, callbacks=[bar])
    assert bar.best is None
    assert "2/2 [" in out.getvalue()
    assert "best" not in out.getvalue()

    silent = io.StringIO()
    with TrialProgress(2, enabled=False, file=silent) as bar:
        study.optimize(lambda trial: 0.5, n_trials=2, callbacks=[bar])
    assert bar.best is not None
    assert silent.getvalue() == ""


# -------------------------------------------------------------------- the commands


@pytest.mark.slow
def test_train_off_a_terminal_prints_no_bar_and_no_trial_lines(
    trained: subprocess.CompletedProcess[str],
) -> None:
    _assert_no_bars(trained.stdout + trained.stderr)
    assert "model churn-model version 1" in trained.stdout
    assert "trials this run: 2 (2 complete)" in trained.stdout


@pytest.mark.slow
def test_run_hides_mlflow_download_bars_unless_verbose(
    workdir: Path, trained: subprocess.CompletedProcess[str]
) -> None:
    args = ("run", "--current", "data/demo/current.csv")
    quiet = _cli(workdir, *args)
    assert quiet.returncode == 0, quiet.stderr
    assert "Data drift - model churn-model (version" in quiet.stdout
    _assert_no_bars(quiet.stdout + quiet.stderr)

    # Control: the champion is loaded (and MLflow would draw its bar) in this very run.
    verbose = _cli(workdir, *args, "--verbose")
    assert "Downloading artifacts" in verbose.stderr


@pytest.mark.slow
def test_run_once_on_the_prediction_log_prints_every_jobs_section(
    workdir: Path, trained: subprocess.CompletedProcess[str]
) -> None:
    """The default current window is the prediction log, where the champion and
    challenger comparison runs too (it crashed the summary once: no formatter)."""
    done = _cli(workdir, "run", "--mode", "once")
    assert done.returncode == 0, done.stderr
    assert "Champion vs challenger - model churn-model: no challenger registered" in done.stdout
    assert "Optuna study churn-model: best" in done.stdout


def _run_on_terminal(workdir: Path, *args: str) -> tuple[int, str, str]:
    """Run the command with stderr on a 120-column pseudo-terminal; return (status,
    stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            churn_monitor(args[0], "--config", str(workdir / "config.yaml"), *args[1:]),
            cwd=workdir,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            timeout=300,
        )
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return proc.returncode, proc.stdout, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_train_on_a_terminal_shows_one_bar_with_the_best_value(workdir: Path) -> None:
    status, stdout, terminal = _run_on_terminal(workdir, "train")
    assert status == 0, terminal
    assert "trials this run: 2 (2 complete)" in stdout
    bars = [line for line in terminal.split("\n") if "tuning:" in line]
    assert len(bars) == 1, terminal
    final = bars[0].rstrip("\r").split("\r")[-1]  # the terminal ends lines with \r\n
    assert "2/2 [" in final
    assert "best CV ROC AUC 0." in final
    assert TRIAL_LINE not in terminal
