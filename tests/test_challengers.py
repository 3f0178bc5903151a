"""`churn-monitor challenger better|worse`: real training into a temporary MLflow store.

The champion is the demo's (`make run`): `churn-monitor train --shuffle Contract tenure
TotalCharges`, here with 5 Optuna trials (with 2, a seed can pick an overfitting
boosting model for the champion and erase its lead over ``worse``). `challenger worse`
and `challenger better` then register versions 2 and 3 under the ``challenger`` alias,
each with its reference snapshot and baseline in the challenger's folder, while the
champion's alias and files stay as they were. All three models score the same fresh
customers of the demo's traffic (the ``sudden`` scenario):

* on 20,000 customers, ``better`` beats the champion and the champion beats ``worse``
  by at least 0.025 ROC AUC each. Measured (ROC AUC 0.797, 0.838 and 0.749): gaps
  0.041 and 0.048; 0.038-0.042 and 0.042-0.048 over five seeds of the customers; over
  training seeds 1, 3, 5, 7, 11 and 42 the champion scores 0.790-0.802 and ``worse``
  0.742-0.759 (``better`` about 0.837), so about 0.034 and 0.038 at least;
* on the demo's ``model_comparison.min_paired_rows`` (1,000) customers, DeLong's test
  separates ``better`` from the champion with p below 0.01, as the exporter's
  comparison job needs for ChurnChallengerOutperforms. Measured: +0.043 with p 4e-10,
  and p at most 6e-7 over eight seeds of the customers.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from exporter.cli.main import main
from exporter.config import MonitoringConfig, load_config
from exporter.data import synthetic
from exporter.domain import schema
from exporter.model.registry import LoadedModel, baseline_path, load_champion, resolve
from exporter.model.roles import challenger_config
from exporter.stats.paired.delong import delong_test
from exporter.training.challengers import DEMO_CHAMPION_SHUFFLED, RECIPES, WORSE_SHUFFLED
from exporter.training.dataset import load_dataset, shuffle_train, split
from exporter.training.errors import TrainingError

from .support import REPO

pytestmark = pytest.mark.integration

TRIALS = "5"
#: Each gap (better - champion, champion - worse) in ROC AUC on the same customers.
MIN_GAP = 0.025


def _write_config(root: Path, **model: object) -> Path:
    raw = {
        "model": {"tracking_uri": f"sqlite:///{root}/mlruns/mlflow.db", **model},
        "data": {
            "reference_path": str(root / "reference" / "reference.parquet"),
            "current": {"url": f"sqlite:///{root}/predictions.db"},
        },
        "optuna": {"storage": f"sqlite:///{root}/optuna.db"},
        "reports": {"dir": str(root / "reports")},
        "history": {"url": f"sqlite:///{root}/history.db"},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _auc(model: LoadedModel, customers: pd.DataFrame) -> float:
    labels = (customers[schema.TARGET] == "Yes").to_numpy()
    return float(roc_auc_score(labels, model.score(customers)))


class Store:
    """The temporary store after champion, `challenger worse` and `challenger better`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_file = _write_config(root)
        self.config: MonitoringConfig = load_config(self.config_file)
        challenger = challenger_config(self.config)
        assert challenger is not None
        self.challenger = challenger
        self.champion_files: dict[str, str] = {}
        self.models: dict[str, LoadedModel] = {}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = Store(tmp_path_factory.mktemp("challengers"))
    config = str(s.config_file)
    assert (
        main(
            ["train", "--config", config, "--trials", TRIALS, "--shuffle", *DEMO_CHAMPION_SHUFFLED]
        )
        == 0
    )
    s.models["champion"] = load_champion(s.config)
    reference = Path(s.config.data.reference_path)
    s.champion_files = {
        "reference": _digest(reference),
        "baseline": _digest(baseline_path(reference)),
    }
    for kind in ("worse", "better"):
        assert main(["challenger", kind, "--config", config, "--trials", TRIALS]) == 0
        s.models[kind] = load_champion(s.challenger)
    return s


def test_challenger_registers_new_versions_under_the_alias_with_reference(store: Store) -> None:
    champion, worse, better = (store.models[k] for k in ("champion", "worse", "better"))
    assert (champion.ref.version, worse.ref.version, better.ref.version) == ("1", "2", "3")
    assert resolve(store.challenger).ref.version == "3"
    # The champion's alias and files did not move.
    assert resolve(store.config).ref.version == "1"
    reference = Path(store.config.data.reference_path)
    assert _digest(reference) == store.champion_files["reference"]
    assert _digest(baseline_path(reference)) == store.champion_files["baseline"]
    # The challenger's reference and baseline are in its own folder, for version 3.
    challenger_reference = Path(store.challenger.data.reference_path)
    assert challenger_reference == reference.parent / "challenger" / reference.name
    assert challenger_reference.is_file()
    assert baseline_path(challenger_reference).is_file()
    assert '"version": "3"' in baseline_path(challenger_reference).read_text()


def test_recipes_are_the_documented_ones() -> None:
    assert RECIPES["better"].rows == 20_000 and RECIPES["better"].shuffled == ()
    assert RECIPES["worse"].rows == 7000
    assert set(DEMO_CHAMPION_SHUFFLED) < set(WORSE_SHUFFLED)


def test_better_beats_the_demo_champion_which_beats_worse(store: Store) -> None:
    customers = synthetic.generate_customers(20_000, seed=2024, scenario="sudden")
    auc = {kind: _auc(model, customers) for kind, model in store.models.items()}
    assert auc["better"] - auc["champion"] >= MIN_GAP, auc
    assert auc["champion"] - auc["worse"] >= MIN_GAP, auc


def test_delong_separates_better_from_the_champion_at_the_demo_min_paired_rows(
    store: Store,
) -> None:
    demo = load_config(REPO / "configs" / "monitoring" / "demo.yaml")
    n = demo.model_comparison.min_paired_rows
    customers = synthetic.generate_customers(n, seed=42, scenario="sudden")
    labels = (customers[schema.TARGET] == "Yes").to_numpy(dtype=int)
    result = delong_test(
        labels,
        store.models["champion"].score(customers),
        store.models["better"].score(customers),
    )
    assert result.difference > 0.01
    assert result.pvalue < demo.model_comparison.pvalue


def test_if_no_challenger_keeps_the_existing_one(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(store.config_file)
    assert main(["challenger", "worse", "--if-no-challenger", "--config", config]) == 0
    assert "challenger exists: churn-model version 3; not training" in capsys.readouterr().out
    assert resolve(store.challenger).ref.version == "3"


def test_a_null_challenger_alias_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path, challenger_alias=None)
    with pytest.raises(SystemExit) as exc:
        main(["challenger", "better", "--config", str(config)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "model.challenger_alias" in err and "null" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "optuna.db").exists()


def test_shuffle_train_permutes_train_rows_only() -> None:
    dataset = load_dataset(None, seed=3, rows=600)
    splits = split(dataset.y, 3)
    shuffled = shuffle_train(dataset, splits, ("Contract", "tenure"), seed=3)
    assert shuffled.shuffled == ("Contract", "tenure")
    held_out = np.concatenate([splits.validation, splits.test])
    assert shuffled.X.iloc[held_out].equals(dataset.X.iloc[held_out])
    for column in ("Contract", "tenure"):
        before = dataset.X[column].iloc[splits.train]
        after = shuffled.X[column].iloc[splits.train]
        assert sorted(before.astype(str)) == sorted(after.astype(str))
        assert not before.equals(after)
        assert shuffled.X[column].dtype == dataset.X[column].dtype
    others = [c for c in dataset.X.columns if c not in ("Contract", "tenure")]
    assert shuffled.X[others].equals(dataset.X[others])
    with pytest.raises(TrainingError, match="shuffle: not a feature column: Churn"):
        shuffle_train(dataset, splits, ("Churn",), seed=3)
    with pytest.raises(TrainingError, match="rows: "):
        load_dataset("customers.csv", seed=3, rows=600)


def test_make_run_trains_the_demo_champion_then_the_better_challenger() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    lines = recipe.group(1).splitlines()
    train = next(i for i, line in enumerate(lines) if " train " in line)
    challenger = next(i for i, line in enumerate(lines) if " challenger better " in line)
    up = next(i for i, line in enumerate(lines) if " up " in line)
    assert train < challenger < up
    assert f"--shuffle {' '.join(DEMO_CHAMPION_SHUFFLED)}" in lines[train]
    assert "--if-no-challenger" in lines[challenger]
