"""The training data: loaded, checked and split.

The user's CSV/Parquet goes through :func:`exporter.data.loader.load_customers`
(``require_target=True``); without a file, ``generate_customers(7000, seed=seed)``.
Every data problem (a missing column, a Churn value outside Yes/No/1/0/True/False, too
few rows of a class) raises :class:`TrainingError` naming the column, before anything
is created.

The split is stratified and seeded: 60 % train, 20 % validation, 20 % test.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Splits:
    """Sorted row positions of each part of the split."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def load_dataset(data: str | Path | None, seed: int) -> Dataset:
    """The file ``data``, or synthetic customers; checked (module docstring)."""
    try:
        if data is None:
            raw = generate_customers(SYNTHETIC_ROWS, seed=seed)
            frame = normalize_frame(raw, require_target=True).frame
            source = f"synthetic:{SYNTHETIC_ROWS}:seed={seed}"
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
