"""Progress of the Optuna studies in a storage, as plain data.

:func:`study_progress` reads every study of an Optuna RDB storage (the
``optuna.storage`` URL training writes to) and returns one :class:`StudyProgress`
per study: what the exporter turns into ``churn_optuna_best_value{study}``,
``churn_optuna_trials{study,state}``, ``churn_optuna_best_param{study,param}`` and
``churn_optuna_last_trial_timestamp_seconds{study}``. No Prometheus here.

The storage is only read: a SQLite file that does not exist is an error
(:class:`StudyStorageError`), not an empty database created on the fly.

Optuna stores trial times as naive local datetimes; they are converted to Unix
seconds in the local time zone of the reading process, so the exporter and the
training should run in the same time zone (both UTC in the containers).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from exporter.data.dburl import safe_url, sqlite_file

#: Every trial state, in Optuna's order: RUNNING, COMPLETE, PRUNED, FAIL, WAITING.
TRIAL_STATES: tuple[str, ...] = tuple(state.name for state in TrialState)


class StudyStorageError(RuntimeError):
    """The Optuna storage cannot be opened or read; the message names it."""


@dataclass(frozen=True)
class StudyProgress:
    """One study's progress."""

    study: str
    #: ``MAXIMIZE`` or ``MINIMIZE``; ``MULTI`` for a multi-objective study.
    direction: str
    #: Objective of the best complete trial (None without one, or multi-objective).
    best_value: float | None
    #: Trials per state name, every state of :data:`TRIAL_STATES` present (0 included).
    trials: Mapping[str, int]
    #: The best trial's numeric parameters (ints and floats, as float).
    best_params: Mapping[str, float] = field(default_factory=dict)
    #: The best trial's other parameters (e.g. the model family), as text.
    best_categorical: Mapping[str, str] = field(default_factory=dict)
    #: Completion time of the newest finished trial, Unix seconds (None if none).
    last_trial_timestamp: float | None = None
    best_trial_number: int | None = None

    def __post_init__(self) -> None:
        for name in ("trials", "best_params", "best_categorical"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def n_trials(self) -> int:
        return sum(self.trials.values())


def _check_sqlite_exists(url: str) -> None:
    database = sqlite_file(url)
    if database is not None and not database.is_file():
        raise StudyStorageError(
            f"optuna storage {url}: {database} does not exist (run `churn-monitor train` first)"
        )


def _split_params(params: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            categorical[name] = str(value)
        elif math.isfinite(float(value)):
            numeric[name] = float(value)
    return numeric, categorical


def _best(trials: list[FrozenTrial], direction: StudyDirection) -> FrozenTrial | None:
    complete = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and not math.isnan(t.value)
    ]
    if not complete:
        return None
    if direction == StudyDirection.MAXIMIZE:
        return max(complete, key=lambda t: (t.value, -t.number))
    return min(complete, key=lambda t: (t.value, t.number))


def _timestamp(moment: dt.datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _progress(
    name: str, directions: list[StudyDirection], trials: list[FrozenTrial]
) -> StudyProgress:
    counts = dict.fromkeys(TRIAL_STATES, 0)
    for trial in trials:
        counts[trial.state.name] += 1
    finished = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    last = max(finished, default=None)
    if len(directions) == 1:
        direction = directions[0]
        best = _best(trials, direction)
        direction_name = direction.name
    else:
        best = None
        direction_name = "MULTI"
    numeric, categorical = _split_params(best.params) if best is not None else ({}, {})
    return StudyProgress(
        study=name,
        direction=direction_name,
        best_value=None if best is None or best.value is None else float(best.value),
        trials=counts,
        best_params=numeric,
        best_categorical=categorical,
        last_trial_timestamp=_timestamp(last),
        best_trial_number=None if best is None else best.number,
    )


def study_progress(storage_url: str) -> tuple[StudyProgress, ...]:
    """Every study in the storage, sorted by name; :class:`StudyStorageError` when the
    storage cannot be opened or read."""
    _check_sqlite_exists(storage_url)
    where = f"optuna storage {safe_url(storage_url)}"
    try:
        storage = optuna.storages.RDBStorage(storage_url, skip_table_creation=True)
    except Exception as err:
        raise StudyStorageError(f"{where}: cannot open: {type(err).__name__}: {err}") from err
    try:
        result = []
        for study in storage.get_all_studies():
            study_id = storage.get_study_id_from_name(study.study_name)
            trials = storage.get_all_trials(study_id, deepcopy=False)
            result.append(_progress(study.study_name, list(study.directions), trials))
    except Exception as err:
        raise StudyStorageError(f"{where}: cannot read: {type(err).__name__}: {err}") from err
    finally:
        storage.remove_session()
        storage.engine.dispose()
    return tuple(sorted(result, key=lambda p: p.study))
