"""Optuna study progress as data, checked against what Optuna itself reports.

Real Optuna SQLite storages in temporary folders, with trials in every state.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import optuna
import pytest

from exporter.model.studies import TRIAL_STATES, StudyProgress, StudyStorageError, study_progress

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> float:
    family = trial.suggest_categorical("model", ["logistic_regression", "boosting"])
    x = trial.suggest_float("x", -3.0, 3.0)
    depth = trial.suggest_int("depth", 1, 8)
    if trial.number % 5 == 3:
        raise optuna.TrialPruned()
    if trial.number % 7 == 5:
        raise RuntimeError("a failing trial")
    return -((x - 1.0) ** 2) + 0.01 * depth + (0.1 if family == "boosting" else 0.0)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Read-only for the tests that use it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('studies') / 'optuna.db'}"
    mixed = optuna.create_study(
        study_name="mixed",
        storage=url,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    mixed.optimize(_objective, n_trials=12, catch=(RuntimeError,))
    mixed.enqueue_trial({"x": 0.5})  # WAITING
    mixed.ask()  # RUNNING: asked, never told (pops the enqueued trial)
    mixed.enqueue_trial({"x": 0.25})  # WAITING
    optuna.create_study(study_name="empty", storage=url)
    low = optuna.create_study(study_name="low", storage=url, direction="minimize")
    low.optimize(lambda t: (t.suggest_float("y", 0, 1) - 0.3) ** 2, n_trials=4)
    return url


def _expected(study: optuna.Study) -> dict[str, object]:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    finished = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    best = study.best_trial if complete else None
    return {
        "best_value": study.best_value if complete else None,
        "trials": {s: Counter(t.state.name for t in trials)[s] for s in TRIAL_STATES},
        "best_params": {
            k: float(v)
            for k, v in (best.params if best else {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
        "best_categorical": {
            k: v for k, v in (best.params if best else {}).items() if isinstance(v, str)
        },
        "last": max(finished).timestamp() if finished else None,
    }


def test_progress_equals_what_optuna_reports(storage: str) -> None:
    progress = study_progress(storage)
    assert [p.study for p in progress] == ["empty", "low", "mixed"]
    for item in progress:
        study = optuna.load_study(study_name=item.study, storage=storage)
        expected = _expected(study)
        assert item.best_value == expected["best_value"]
        assert dict(item.trials) == expected["trials"]
        assert dict(item.best_params) == expected["best_params"]
        assert dict(item.best_categorical) == expected["best_categorical"]
        assert item.last_trial_timestamp == expected["last"]
        assert item.n_trials == len(study.trials)
        assert item.direction == study.direction.name


def test_every_state_is_counted_zero_included(storage: str) -> None:
    by_name = {p.study: p for p in study_progress(storage)}
    mixed = by_name["mixed"]
    assert list(mixed.trials) == ["RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING"]
    assert mixed.trials["RUNNING"] == 1
    assert mixed.trials["WAITING"] == 1
    assert mixed.trials["PRUNED"] >= 1
    assert mixed.trials["FAIL"] >= 1
    assert set(mixed.best_params) == {"x", "depth"}
    assert set(mixed.best_categorical) == {"model"}
    assert mixed.last_trial_timestamp is not None
    assert math.isfinite(mixed.last_trial_timestamp)

    empty = by_name["empty"]
    assert empty == StudyProgress(
        study="empty",
        direction="MINIMIZE",
        best_value=None,
        trials=dict.fromkeys(TRIAL_STATES, 0),
    )
    assert by_name["low"].best_value == min(
        t.value for t in optuna.load_study(study_name="low", storage=storage).trials
    )


def test_multi_objective_study_has_counts_but_no_best(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'multi.db'}"
    study = optuna.create_study(study_name="multi", storage=url, directions=["maximize"] * 2)
    study.optimize(lambda t: (t.suggest_float("a", 0, 1), t.suggest_float("b", 0, 1)), 3)
    (item,) = study_progress(url)
    assert item.direction == "MULTI"
    assert item.best_value is None
    assert item.trials["COMPLETE"] == 3
    assert item.best_params == {}


def test_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent' / 'optuna.db'}"
    with pytest.raises(StudyStorageError, match="does not exist"):
        study_progress(url)
    assert not (tmp_path / "absent").exists()


def test_unreadable_storage_is_an_error_naming_it(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(StudyStorageError, match=r"optuna storage sqlite:///.*garbage\.db"):
        study_progress(f"sqlite:///{garbage}")
    with pytest.raises(StudyStorageError, match="optuna storage"):
        study_progress("postgresql://user:secret@127.0.0.1:1/optuna")


def test_password_is_hidden_in_errors() -> None:
    with pytest.raises(StudyStorageError) as err:
        study_progress("postgresql://user:secret@127.0.0.1:1/optuna")
    assert "secret" not in str(err.value)
