"""Promotion: make the challenger the champion, guarded by the evidence of live traffic.

The evidence is the comparison of the two current versions on the labelled customers
both scored (the API's shadow scores; see :mod:`exporter.monitor.comparison_job`). The
challenger is promoted only when all of these hold (:func:`missing_evidence`):

* at least ``model_comparison.min_paired_rows`` paired labelled rows;
* a higher ROC AUC with DeLong's p-value below ``model_comparison.pvalue``;
* ``retraining.metric`` better by at least ``retraining.min_improvement``;
* no retraining or promotion within ``retraining.cooldown_minutes``.

A promotion moves the champion alias to the challenger's version, copies the
challenger's reference snapshot and baseline over the champion's (see
:func:`exporter.model.roles.challenger_config`), and removes the challenger alias, so
the API and the exporter follow the new champion and compare nothing until the next
challenger. ``force`` skips the guard. Every decision (``promoted``, ``forced``,
``refused``, ``skipped_cooldown``, ``failed``) goes to the history's ``retraining``
table with the evidence.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from exporter.config import MonitoringConfig
from exporter.data.atomic import write_bytes_atomically
from exporter.data.history import last_retraining, record_retraining
from exporter.data.sources import (
    ACTUAL,
    CHALLENGER_SCORE,
    SCORE,
    SourceError,
    load_labelled,
    shadowed,
)
from exporter.domain.model import ModelRef
from exporter.model.registry import (
    AliasNotFound,
    ModelUnavailable,
    baseline_path,
    resolve,
    set_alias,
)
from exporter.model.roles import challenger_config
from exporter.stats.paired import PairedComparison, compare_paired
from exporter.stats.performance import realized_metrics

log = logging.getLogger(__name__)

#: The alert that starts a guarded promotion when retraining is enabled.
PROMOTION_ALERT = "ChurnChallengerOutperforms"
#: Decisions that count for the cooldown (a skip, refusal or failure does not).
RETRAINED = ("promoted", "forced", "kept_champion")


class PromotionError(RuntimeError):
    """There is no challenger to promote, or the registry cannot be read."""


@dataclass(frozen=True)
class Evidence:
    """The two versions and how they compare on the customers both scored."""

    champion: ModelRef
    challenger: ModelRef
    comparison: PairedComparison
    #: ``retraining.metric`` of each on the paired rows (None: undefined there).
    metric: str
    champion_value: float | None
    challenger_value: float | None

    def lines(self) -> list[str]:
        """The evidence for people, one fact per line."""
        c = self.comparison

        def num(value: float | None, spec: str = ".4f") -> str:
            return "n/a" if value is None else format(value, spec)

        return [
            f"champion   version {self.champion.version}, challenger version "
            f"{self.challenger.version}",
            f"paired labelled rows   {c.n_paired}",
            f"ROC AUC   champion {num(c.auc_champion)}, challenger {num(c.auc_challenger)}, "
            f"difference {num(c.auc_difference, '+.4f')}, DeLong p {num(c.auc_pvalue, '.3g')}",
            f"accuracy   champion {num(c.accuracy_champion)}, challenger "
            f"{num(c.accuracy_challenger)}, McNemar p {num(c.mcnemar_pvalue, '.3g')}",
            f"{self.metric}   champion {num(self.champion_value)}, challenger "
            f"{num(self.challenger_value)}",
        ]


@dataclass(frozen=True)
class Decision:
    """What a promotion attempt did, and why."""

    decision: str
    evidence: Evidence | None
    missing: tuple[str, ...] = ()
    detail: str = ""

    @property
    def promoted(self) -> bool:
        return self.decision in ("promoted", "forced")


def gather_evidence(config: MonitoringConfig, now: float, *, need_log: bool = True) -> Evidence:
    """Resolve both aliases and compare them on the prediction log's shadowed rows.

    An unreadable prediction log raises :class:`PromotionError`, unless `need_log` is
    False (a forced promotion): then the comparison has no rows.
    """
    challenger_cfg = challenger_config(config)
    if challenger_cfg is None:
        raise PromotionError("model.challenger_alias: no challenger alias is configured")
    try:
        champion = resolve(config)
    except AliasNotFound as err:
        raise PromotionError(f"no champion: {err} (run `churn-monitor train` first)") from err
    except ModelUnavailable as err:
        raise PromotionError(str(err)) from err
    try:
        challenger = resolve(challenger_cfg)
    except AliasNotFound as err:
        raise PromotionError(
            f"no challenger: {err} (register one with `churn-monitor challenger better`, "
            "or let retraining do it)"
        ) from err
    except ModelUnavailable as err:
        raise PromotionError(str(err)) from err
    hours = config.model_comparison.label_window_hours
    try:
        logged = load_labelled(config.data.current, now, hours)
    except SourceError as err:
        if need_log:
            raise PromotionError(f"cannot read the evidence: {err}") from err
        logged = pd.DataFrame({ACTUAL: [], SCORE: [], CHALLENGER_SCORE: []})
    labelled = shadowed(logged, champion.ref.version, challenger.ref.version)
    labels = labelled[ACTUAL].to_numpy(dtype=float)
    scores = labelled[SCORE].to_numpy(dtype=float)
    shadow = labelled[CHALLENGER_SCORE].to_numpy(dtype=float)
    metric = config.retraining.metric
    min_rows = config.performance_monitoring.min_labeled_rows
    return Evidence(
        champion=champion.ref,
        challenger=challenger.ref,
        comparison=compare_paired(
            labels.astype(int),
            scores,
            shadow,
            champion.threshold,
            challenger.threshold,
            min_rows=min_rows,
        ),
        metric=metric,
        champion_value=realized_metrics(labels, scores, champion.threshold).values.get(metric),
        challenger_value=realized_metrics(labels, shadow, challenger.threshold).values.get(metric),
    )


def missing_evidence(evidence: Evidence, config: MonitoringConfig) -> list[str]:
    """What the evidence lacks for a promotion (empty: enough), one reason per rule."""
    c = evidence.comparison
    cmp = config.model_comparison
    missing = []
    if c.n_paired < cmp.min_paired_rows:
        missing.append(
            f"{c.n_paired} paired labelled rows, fewer than "
            f"model_comparison.min_paired_rows ({cmp.min_paired_rows})"
        )
    if c.auc_difference is None or c.auc_pvalue is None:
        missing.append(f"no DeLong test on the paired rows ({c.reason or 'undefined'})")
    elif c.auc_difference <= 0 or c.auc_pvalue >= cmp.pvalue:
        missing.append(
            f"ROC AUC difference {c.auc_difference:+.4f} with DeLong p {c.auc_pvalue:.3g}: "
            f"not higher with p below model_comparison.pvalue ({cmp.pvalue:g})"
        )
    margin = config.retraining.min_improvement
    if evidence.champion_value is None or evidence.challenger_value is None:
        missing.append(f"{evidence.metric} is undefined on the paired rows")
    elif evidence.challenger_value - evidence.champion_value < margin:
        missing.append(
            f"{evidence.metric} improves by "
            f"{evidence.challenger_value - evidence.champion_value:+.4f}, less than "
            f"retraining.min_improvement ({margin:g})"
        )
    return missing


def move_champion(
    config: MonitoringConfig, challenger: MonitoringConfig, version: str
) -> str | None:
    """Make `version` the champion: alias first, then reference and baseline, then
    remove the challenger alias (now the champion; the next retraining sets it again).

    Returns None, or why nothing changed (the challenger's files could not be read or
    the alias could not be moved).
    """
    reference = Path(config.data.reference_path)
    new_reference = Path(challenger.data.reference_path)
    moves = (
        (new_reference, reference),
        (baseline_path(new_reference), baseline_path(reference)),
    )
    try:
        staged = [(target, source.read_bytes()) for source, target in moves]
        set_alias(config, config.model.registry_alias, version)
    except (OSError, ModelUnavailable) as err:
        log.error("promotion of version %s failed: %s", version, err)
        return f"promotion failed, champion unchanged: {err}"
    for target, content in staged:
        write_bytes_atomically(target, content)
    alias = challenger.model.registry_alias
    try:
        set_alias(config, alias, None)
    except ModelUnavailable as err:
        log.warning("version %s promoted, but the %s alias stays: %s", version, alias, err)
    return None


def promote(
    config: MonitoringConfig,
    history: Engine | None,
    *,
    trigger: str,
    force: bool = False,
    now: float | None = None,
) -> Decision:
    """The guarded promotion (the module docstring); the decision is recorded."""
    now = time.time() if now is None else now
    challenger_cfg = challenger_config(config)
    evidence = gather_evidence(config, now, need_log=not force)
    assert challenger_cfg is not None  # gather_evidence raised otherwise
    missing: list[str] = []
    cooling = False
    if not force:
        cooldown = config.retraining.cooldown_minutes * 60.0
        last = last_retraining(history, RETRAINED) if history is not None else None
        cooling = last is not None and now - last < cooldown
        if last is not None and cooling:
            missing.append(
                f"the last retraining or promotion was {now - last:.0f} s ago, within "
                f"retraining.cooldown_minutes ({config.retraining.cooldown_minutes:g})"
            )
        missing.extend(missing_evidence(evidence, config))
    if missing:
        decision = "skipped_cooldown" if cooling else "refused"
        result = Decision(decision, evidence, tuple(missing), "; ".join(missing))
    else:
        failure = move_champion(config, challenger_cfg, evidence.challenger.version)
        decision = "failed" if failure is not None else "forced" if force else "promoted"
        result = Decision(decision, evidence, (), failure or " | ".join(evidence.lines()))
    if history is not None:
        record_retraining(
            history,
            ts=now,
            trigger=trigger,
            decision=result.decision,
            champion_version=evidence.champion.version,
            challenger_version=evidence.challenger.version,
            metric=evidence.metric,
            champion_value=evidence.champion_value,
            challenger_value=evidence.challenger_value,
            detail=result.detail[:2000],
        )
    log.info(
        "promotion %s: champion v%s, challenger v%s (%s)",
        result.decision,
        evidence.champion.version,
        evidence.challenger.version,
        trigger,
    )
    return result
