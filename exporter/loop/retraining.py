"""The closed loop: retrain on recent labelled data when certain alerts fire.

Off by default (``retraining.enabled``). A firing alert whose ``alert_type`` is in
``retraining.alert_types`` starts, in a background thread:

1. the labelled predictions of the last ``data_window_hours`` (prediction log joined
   with feedback) are split, stratified, into a training part and a holdout of
   ``holdout_fraction``;
2. ``training.train`` tunes and fits a challenger on the training part and registers it
   under the alias ``challenger_alias`` (the champion alias does not move, and the
   challenger's reference and baseline go to a ``<challenger_alias>/`` folder beside the
   champion's, not over them);
3. champion and challenger are scored on the holdout; the challenger is promoted (the
   champion alias moves to it and its reference replaces the champion's) only when its
   ``metric`` beats the champion's by at least ``min_improvement``;
4. the decision, with both values, goes to the history's ``retraining`` table.

Never more than one retraining at a time; none within ``cooldown_minutes`` of the
last one (measured from the history, so it holds across restarts). Skips are recorded
too, so the history says what was done about every triggering alert.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
from sklearn.model_selection import train_test_split

from exporter.config import MonitoringConfig
from exporter.data.history import AlertRecord, record_retraining, retraining
from exporter.data.sources import ACTUAL, load_labelled
from exporter.domain import schema
from exporter.model.registry import BASELINE_FILE, load_champion, set_alias
from exporter.stats.performance import realized_metrics
from exporter.training.pipeline import train

log = logging.getLogger(__name__)

#: Decisions that count for the cooldown (a skip does not restart it).
RETRAINED = ("promoted", "kept_champion")


class RetrainingTrigger:
    """Decides on alerts whether to retrain, and runs at most one retraining at a time."""

    def __init__(
        self,
        config: MonitoringConfig,
        history: sa.Engine,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.history = history
        self.clock = clock
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
        """Start a retraining for these alerts if the rules allow; return what happened."""
        cfg = self.config.retraining
        alert = self.triggering(records) if cfg.enabled else None
        if alert is None:
            return "not_triggered"
        name = f"{alert.labels['alertname']} ({alert.labels.get('alert_type')})"
        last = self._last_retraining()
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
        if not self._busy.acquire(blocking=False):
            record_retraining(
                self.history,
                ts=self.clock(),
                trigger=name,
                decision="skipped_busy",
                detail="a retraining is already running",
            )
            return "skipped_busy"
        self._thread = threading.Thread(
            target=self._run, args=(name,), name="retraining", daemon=True
        )
        self._thread.start()
        return "started"

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running retraining (if any) finishes."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _last_retraining(self) -> float | None:
        query = sa.select(sa.func.max(retraining.c.ts)).where(retraining.c.decision.in_(RETRAINED))
        with self.history.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def _run(self, trigger: str) -> None:
        try:
            self.retrain(trigger)
        except Exception as err:  # recorded, never raised into the server thread
            log.exception("retraining failed")
            record_retraining(
                self.history,
                ts=self.clock(),
                trigger=trigger,
                decision="failed",
                detail=str(err)[:2000],
            )
        finally:
            self._busy.release()

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
        frame = labelled.assign(**{schema.TARGET: ["Yes" if y else "No" for y in labels]})
        train_part, holdout = train_test_split(
            frame, test_size=cfg.holdout_fraction, stratify=labels, random_state=0
        )
        champion = load_champion(self.config)
        reference = Path(self.config.data.reference_path)
        challenger_reference = reference.parent / cfg.challenger_alias / reference.name
        challenger_config = self.config.model_copy(
            update={
                "model": self.config.model.model_copy(
                    update={"registry_alias": cfg.challenger_alias}
                ),
                "data": self.config.data.model_copy(
                    update={"reference_path": str(challenger_reference)}
                ),
            }
        )
        with tempfile.TemporaryDirectory(prefix="churn-retrain-") as tmp:
            data = Path(tmp) / "recent_labelled.csv"
            train_part[[schema.ID_COLUMN, *schema.FEATURES, schema.TARGET]].to_csv(
                data, index=False
            )
            result = train(challenger_config, data=data, trials=cfg.trials, progress=False)
        challenger = load_champion(challenger_config)
        y = holdout[ACTUAL].to_numpy(dtype=float)
        champion_value = realized_metrics(
            y, champion.score(holdout), champion.threshold
        ).values.get(cfg.metric)
        challenger_value = realized_metrics(
            y, challenger.score(holdout), challenger.threshold
        ).values.get(cfg.metric)
        better = (
            champion_value is not None
            and challenger_value is not None
            and challenger_value - champion_value >= cfg.min_improvement
        )
        if better:
            _replace(challenger_reference, reference)
            _replace(
                challenger_reference.parent / BASELINE_FILE,
                reference.parent / BASELINE_FILE,
            )
            set_alias(self.config, self.config.model.registry_alias, result.version)
        decision = "promoted" if better else "kept_champion"
        record_retraining(
            self.history,
            ts=started,
            trigger=trigger,
            decision=decision,
            champion_version=champion.ref.version,
            challenger_version=result.version,
            metric=cfg.metric,
            champion_value=champion_value,
            challenger_value=challenger_value,
            detail=f"{len(train_part)} training rows, {len(holdout)} holdout rows, "
            f"margin {cfg.min_improvement:g}",
        )
        log.info(
            "retraining %s: champion v%s %s=%s, challenger v%s %s=%s",
            decision,
            champion.ref.version,
            cfg.metric,
            champion_value,
            result.version,
            cfg.metric,
            challenger_value,
        )
        return decision


def _replace(source: Path, target: Path) -> None:
    """Copy `source` over `target` atomically (copy beside it, then rename)."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
