"""The closed loop: retrain on recent labelled data when certain alerts fire.

Off by default (``retraining.enabled``). A firing alert whose ``alert_type`` is in
``retraining.alert_types`` starts, in a background thread:

1. the labelled predictions of the last ``data_window_hours`` (prediction log joined
   with feedback) are split, stratified, into a training part and a holdout of
   ``holdout_fraction``;
2. a child process, ``python -m exporter train --config <challenger config> --data
   <training part> --trials <retraining.trials>``, tunes and fits a challenger and
   registers it under the alias ``model.challenger_alias``, with its reference snapshot
   (and baseline) in that alias's folder beside the champion's
   (:func:`exporter.model.roles.challenger_config`), so the champion's alias and files
   do not move. Training runs in its
   own process: its process-wide state (MLflow URIs, environment, BLAS threads) never
   touches the exporter, which never imports the training code;
3. champion and challenger are scored on the holdout; the challenger is promoted only
   when its ``metric`` beats the champion's by at least ``min_improvement``. Promotion
   reads the challenger's reference and baseline, moves the champion alias to the
   challenger's version, and only then replaces the champion's reference and baseline
   (each atomically), and removes the challenger alias
   (:func:`exporter.loop.promotion.move_champion`). A failure to read those files or to
   move the alias leaves alias, reference and baseline as they were and is recorded as
   ``failed``;
4. the decision, with both values, goes to the history's ``retraining`` table.

A firing ``ChurnChallengerOutperforms`` instead starts the guarded promotion of the
challenger already shadow-scored on live traffic (:mod:`exporter.loop.promotion`).

Never more than one retraining at a time; none within ``cooldown_minutes`` of the
last one (measured from the history, so it holds across restarts). Skips and failures
are recorded too, so the history says what was done about every triggering alert.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sklearn.model_selection import train_test_split

from exporter.config import MonitoringConfig
from exporter.data.history import AlertRecord, last_retraining, record_retraining
from exporter.data.sources import ACTUAL, load_labelled
from exporter.domain import schema
from exporter.loop.promotion import PROMOTION_ALERT, RETRAINED, move_champion, promote
from exporter.model.registry import LoadedModel, load_champion
from exporter.model.roles import challenger_config
from exporter.stats.performance import realized_metrics

log = logging.getLogger(__name__)

#: Runs a command line to completion and returns its exit status and output.
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


class RetrainingError(RuntimeError):
    """The training child process failed; the message carries its last error line."""


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` without input, its stdout and stderr captured as text."""
    return subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )


def train_command(config_file: Path, data: Path, trials: int) -> list[str]:
    """The command line of ``churn-monitor train`` with this interpreter."""
    return [
        sys.executable,
        "-m",
        "exporter",
        "train",
        "--config",
        str(config_file),
        "--data",
        str(data),
        "--trials",
        str(trials),
    ]


class RetrainingTrigger:
    """Decides on alerts whether to retrain, and runs at most one retraining at a time.

    ``runner`` runs the training command line (:func:`run_command`: a child process).
    """

    def __init__(
        self,
        config: MonitoringConfig,
        history: sa.Engine,
        *,
        clock: Callable[[], float] = time.time,
        runner: Runner = run_command,
    ) -> None:
        self.config = config
        self.history = history
        self.clock = clock
        self.runner = runner
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None

    def triggering(self, records: Sequence[AlertRecord]) -> AlertRecord | None:
        """The first firing alert whose type starts a retraining, if any."""
        types = set(self.config.retraining.alert_types)
        for record in records:
            if record.status == "firing" and record.labels.get("alert_type") in types:
                return record
        return None

    def consider(self, records: Sequence[AlertRecord]) -> str:
        """Start a promotion or a retraining for these alerts if the rules allow; return
        what happened.

        A firing ``ChurnChallengerOutperforms`` starts the guarded promotion of
        :mod:`exporter.loop.promotion` (which applies the cooldown itself); any other
        alert of ``retraining.alert_types`` starts a retraining.
        """
        cfg = self.config.retraining
        if not cfg.enabled:
            return "not_triggered"
        if any(
            r.status == "firing" and r.labels.get("alertname") == PROMOTION_ALERT for r in records
        ):
            name = f"{PROMOTION_ALERT} (alert)"
            return self._start(name, self._promote, "promotion_started")
        alert = self.triggering(records)
        if alert is None:
            return "not_triggered"
        name = f"{alert.labels['alertname']} ({alert.labels.get('alert_type')})"
        last = last_retraining(self.history, RETRAINED)
        if last is not None and self.clock() - last < cfg.cooldown_minutes * 60.0:
            record_retraining(
                self.history,
                ts=self.clock(),
                trigger=name,
                decision="skipped_cooldown",
                detail=f"last retraining {self.clock() - last:.0f}s ago, cooldown "
                f"{cfg.cooldown_minutes:g} min",
            )
            return "skipped_cooldown"
        return self._start(name, self.retrain, "started")

    def _start(self, trigger: str, action: Callable[[str], object], started: str) -> str:
        """Run `action(trigger)` in the background unless one is running (recorded)."""
        if not self._busy.acquire(blocking=False):
            record_retraining(
                self.history,
                ts=self.clock(),
                trigger=trigger,
                decision="skipped_busy",
                detail="a retraining or promotion is already running",
            )
            return "skipped_busy"
        self._thread = threading.Thread(
            target=self._run, args=(trigger, action), name="retraining", daemon=True
        )
        self._thread.start()
        return started

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running retraining or promotion (if any) finishes."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, trigger: str, action: Callable[[str], object]) -> None:
        try:
            action(trigger)
        except Exception as err:  # recorded, never raised into the server thread
            log.exception("%s failed", trigger)
            record_retraining(
                self.history,
                ts=self.clock(),
                trigger=trigger,
                decision="failed",
                detail=str(err)[:2000],
            )
        finally:
            self._busy.release()

    def _promote(self, trigger: str) -> str:
        """The guarded promotion on the comparison's evidence; return the decision."""
        return promote(self.config, self.history, trigger=trigger, now=self.clock()).decision

    def challenger_config(self) -> MonitoringConfig:
        """This config with the challenger's alias and reference path."""
        challenger = challenger_config(self.config)
        if challenger is None:
            raise RetrainingError(
                "model.challenger_alias: retraining needs a challenger alias in the registry"
            )
        return challenger

    def retrain(self, trigger: str) -> str:
        """Train, compare and maybe promote (the module docstring); return the decision."""
        cfg = self.config.retraining
        started = self.clock()
        labelled = load_labelled(self.config.data.current, started, cfg.data_window_hours)
        labels = labelled[ACTUAL].to_numpy(dtype=int)
        if len(labelled) < cfg.min_rows or len(set(labels)) < 2:
            record_retraining(
                self.history,
                ts=started,
                trigger=trigger,
                decision="skipped_insufficient_data",
                detail=f"{len(labelled)} labelled rows (minimum {cfg.min_rows}, both classes)",
            )
            return "skipped_insufficient_data"
        frame = labelled.assign(**{schema.TARGET: [schema.label_text(y) for y in labels]})
        train_part, holdout = train_test_split(
            frame, test_size=cfg.holdout_fraction, stratify=labels, random_state=0
        )
        champion = load_champion(self.config)
        challenger_config = self.challenger_config()
        self._train(challenger_config, train_part)
        challenger = load_champion(challenger_config)
        champion_value, challenger_value = _compare(cfg.metric, holdout, champion, challenger)
        decision = "kept_champion"
        detail = (
            f"{len(train_part)} training rows, {len(holdout)} holdout rows, "
            f"margin {cfg.min_improvement:g}"
        )
        if (
            champion_value is not None
            and challenger_value is not None
            and challenger_value - champion_value >= cfg.min_improvement
        ):
            failure = move_champion(self.config, challenger_config, challenger.ref.version)
            decision = "promoted" if failure is None else "failed"
            detail = detail if failure is None else f"{failure}; {detail}"
        record_retraining(
            self.history,
            ts=started,
            trigger=trigger,
            decision=decision,
            champion_version=champion.ref.version,
            challenger_version=challenger.ref.version,
            metric=cfg.metric,
            champion_value=champion_value,
            challenger_value=challenger_value,
            detail=detail,
        )
        log.info(
            "retraining %s: champion v%s %s=%s, challenger v%s %s=%s",
            decision,
            champion.ref.version,
            cfg.metric,
            champion_value,
            challenger.ref.version,
            cfg.metric,
            challenger_value,
        )
        return decision

    def _train(self, challenger_config: MonitoringConfig, rows: pd.DataFrame) -> None:
        """Train and register the challenger on ``rows`` in a child process."""
        with tempfile.TemporaryDirectory(prefix="churn-retrain-") as tmp:
            # JSON is YAML: the child reads it as its config file.
            config_file = Path(tmp) / "challenger_config.json"
            config_file.write_text(json.dumps(challenger_config.model_dump(mode="json")))
            data = Path(tmp) / "recent_labelled.csv"
            rows[[schema.ID_COLUMN, *schema.FEATURES, schema.TARGET]].to_csv(data, index=False)
            argv = train_command(config_file, data, self.config.retraining.trials)
            log.info("retraining: %s", " ".join(argv))
            done = self.runner(argv)
        log.debug("churn-monitor train printed:\n%s%s", done.stdout, done.stderr)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise RetrainingError(
                f"`churn-monitor train` exited with status {done.returncode}: "
                f"{lines[-1] if lines else 'no error output'}"
            )


def _compare(
    metric: str, holdout: pd.DataFrame, champion: LoadedModel, challenger: LoadedModel
) -> tuple[float | None, float | None]:
    """Both models' ``metric`` on the holdout (None where it is undefined)."""
    y = holdout[ACTUAL].to_numpy(dtype=float)

    def value(model: LoadedModel) -> float | None:
        return realized_metrics(y, model.score(holdout), model.threshold).values.get(metric)

    return value(champion), value(challenger)
