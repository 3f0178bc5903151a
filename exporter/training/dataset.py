"""The training data: loaded, checked and split.

The user's CSV/Parquet goes through :func:`exporter.data.loader.load_customers`
(``require_target=True``); without a file, ``generate_customers(rows, seed=seed)``
(7000 rows unless asked for more or fewer).
Every data problem (a missing column, a Churn value outside Yes/No/1/0/True/False, too
few rows of a class) raises :class:`TrainingError` naming the column, before anything
is created.

The split is stratified and seeded: 60 % train, 20 % validation, 20 % test.
:func:`shuffle_train` can then shuffle some feature columns among the train rows (an
ablation: the model learns nothing from them) while the validation and test rows, and
so the baseline and the reference snapshot, stay real customers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from exporter.data.loader import DataSchemaError, encode_target, load_customers, normalize_frame
from exporter.data.synthetic import generate_customers
from exporter.domain import schema
from exporter.model import modeling
from exporter.training.errors import TrainingError

#: Rows of the synthetic default training set.
SYNTHETIC_ROWS = 7000
#: Split shares (stratified): train / validation / test.
VALIDATION_SHARE = 0.2
TEST_SHARE = 0.2
#: Fewest rows of each class (churned and not) a training set must have.
MIN_ROWS_PER_CLASS = 20


@dataclass(frozen=True)
class Dataset:
    """The loaded training data."""

    #: Loader-normalised: customerID (if any), the features, Churn.
    frame: pd.DataFrame
    #: The model input (:func:`exporter.model.modeling.prepare_features`).
    X: pd.DataFrame
    #: The target as 0/1 codes.
    y: np.ndarray
    #: Where the data came from: the file, or ``synthetic:<rows>:seed=<seed>``.
    source: str
    #: Feature columns permuted among the train rows (:func:`shuffle_train`).
    shuffled: tuple[str, ...] = ()


@dataclass(frozen=True)
class Splits:
    """Sorted row positions of each part of the split."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def load_dataset(data: str | Path | None, seed: int, rows: int | None = None) -> Dataset:
    """The file ``data``, or ``rows`` synthetic customers (default
    :data:`SYNTHETIC_ROWS`); checked (module docstring). ``rows`` with a file is a
    TrainingError."""
    if rows is not None and data is not None:
        raise TrainingError("rows: the number of synthetic customers, not allowed with data")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        raise TrainingError(f"rows: must be a positive integer, got {rows!r}")
    try:
        if data is None:
            n = SYNTHETIC_ROWS if rows is None else rows
            raw = generate_customers(n, seed=seed)
            frame = normalize_frame(raw, require_target=True).frame
            source = f"synthetic:{n}:seed={seed}"
        else:
            frame = load_customers(data, require_target=True).frame
            source = str(data)
        y = encode_target(frame[schema.TARGET])
    except DataSchemaError as err:
        raise TrainingError(str(err)) from err
    counts = {code: int((y == code).sum()) for code in (0, 1)}
    if min(counts.values()) < MIN_ROWS_PER_CLASS:
        where = "" if data is None else f"{data}: "
        found = " and ".join(f"{counts[c]} {schema.label_text(c)!r}" for c in (1, 0))
        raise TrainingError(
            f"{where}column {schema.TARGET!r}: need at least {MIN_ROWS_PER_CLASS} rows of "
            f"each class to train, found {found}"
        )
    return Dataset(frame=frame, X=modeling.prepare_features(frame), y=y, source=source)


def split(y: np.ndarray, seed: int) -> Splits:
    """Stratified, seeded 60/20/20 split of the rows with labels ``y``."""
    index = np.arange(len(y))
    rest, test = train_test_split(index, test_size=TEST_SHARE, stratify=y, random_state=seed)
    train, validation = train_test_split(
        rest,
        test_size=VALIDATION_SHARE / (1.0 - TEST_SHARE),
        stratify=y[rest],
        random_state=seed,
    )
    return Splits(train=np.sort(train), validation=np.sort(validation), test=np.sort(test))


def shuffle_train(dataset: Dataset, splits: Splits, columns: Sequence[str], seed: int) -> Dataset:
    """`dataset` with each of `columns` permuted among the train rows of the model input
    (seeded): each keeps its values there but loses its link with churn, so a model
    fitted on them learns nothing from it. Validation and test rows, and ``frame``, are
    unchanged. TrainingError (naming ``shuffle``) for a column that is not a feature.
    """
    unknown = [c for c in columns if c not in schema.FEATURES]
    if unknown:
        raise TrainingError(
            f"shuffle: not a feature column: {', '.join(unknown)} "
            f"(expected some of {', '.join(schema.FEATURES)})"
        )
    if not columns:
        return dataset
    rng = np.random.default_rng(seed)
    X = dataset.X.copy()
    for column in dict.fromkeys(columns):
        values = X[column].to_numpy(copy=True)
        values[splits.train] = rng.permutation(values[splits.train])
        X[column] = pd.Series(values, index=X.index, dtype=X[column].dtype)
    return replace(dataset, X=X, shuffled=tuple(dict.fromkeys(columns)))
