"""How unlike the training data each scored customer is: its anomaly score.

The champion's reference snapshot (``data.reference_path``, written by training) is
fitted into a multivariate profile (:func:`exporter.stats.multivariate.fit_multivariate`
with ``features.numeric``/``categorical`` and ``data_drift_monitoring.multivariate``'s
``variance_share`` and ``unusual_rate``). A customer's **anomaly score** is its PCA
reconstruction error against that profile (reference standard deviations; 0 for a
customer lying in the reference's principal subspace), and the customer is
**unusual** when the score exceeds the profile's cut-off (``unusual_cutoff``), which
about ``unusual_rate`` (1 %) of customers drawn like the reference do.

Where the work happens, so that no request pays for it:

* `AnomalyProfiles.refresh` reads and fits the reference, off the request path: the
  champion holder calls it when it loads a model and on every model poll (a new
  champion's reference is replaced after its alias moves). It refits only when the
  file's key (:func:`exporter.data.reference_key.file_key`: path, mtime, size) changed;
  a missing or unreadable reference, or ``multivariate.enabled: false``, gives no model
  (the API answers ``null`` for the fields) and one log line until the file changes.
* `AnomalyModel.scores` runs once per micro-batch in the scorer's worker: the batch's
  feature columns are encoded directly (numpy and one dict lookup per category value,
  no DataFrame) and the errors computed with two small matrix products. The direct
  encoding is checked against the profile's own encoder on synthetic customers when
  the model is built; if they ever differ, the encoder is used through a DataFrame.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from exporter.config import MonitoringConfig
from exporter.data.reference_key import FileKey, file_key
from exporter.data.sources import load_reference
from exporter.stats.drift.inputs import category_key, to_float_array
from exporter.stats.multivariate import MultivariateProfile, fit_multivariate

log = logging.getLogger("churn_monitor.api")

#: Up to this many rows a batch's categories are looked up value by value (fewer numpy
#: calls); above it, per distinct number or with dict lookups in C.
_FEW_ROWS = 48
#: Columns of a batch: feature name -> one value per customer (as the fast path takes).
Columns = Mapping[str, Sequence[Any]]


def _reason(err: BaseException) -> str:
    text = str(err).strip() or err.__class__.__name__
    return text.splitlines()[0][:500]


def _offset(lookup: dict[str, int], value: Any) -> int:
    """The one-hot column of a value that is not a string (by its canonical category
    key, as the profile's encoder compares), -1 for a missing or unseen one."""
    key = category_key(value)
    return -1 if key is None else lookup.get(key, -1)


def _few_positions(lookup: dict[str, int], values: Any) -> list[int]:
    """Each value's one-hot column (-1: none), value by value."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    get = lookup.get
    return [get(v, -1) if type(v) is str else _offset(lookup, v) for v in values]


def _positions(lookup: dict[str, int], values: Any, n: int) -> np.ndarray:
    """Each value's one-hot column (-1: none), with Python work per distinct number or
    per string (a dict lookup in C)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        distinct, inverse = np.unique(values, return_inverse=True)
        columns = np.array([_offset(lookup, v) for v in distinct.tolist()], dtype=np.int64)
        return columns[inverse.reshape(-1)]
    if isinstance(values, np.ndarray):
        values = values.tolist()
    index = np.fromiter(map(lookup.get, values, itertools.repeat(-1)), dtype=np.int64, count=n)
    for i in np.flatnonzero(index < 0).tolist():  # missing, unseen, or not a string
        if type(values[i]) is not str:
            index[i] = _offset(lookup, values[i])
    return index


@dataclass(frozen=True, eq=False)
class AnomalyModel:
    """The profile of one reference file and its direct encoding of batch columns.

    ``numeric`` names the numeric features (``means``, ``scales`` from the profile's
    encoder); ``categorical`` gives each categorical feature's category key -> output
    column. ``direct`` is False when the direct encoding disagreed with the profile's
    encoder at build time (the encoder is used then).
    """

    key: FileKey
    profile: MultivariateProfile
    numeric: tuple[str, ...]
    means: np.ndarray
    scales: np.ndarray
    categorical: tuple[tuple[str, dict[str, int]], ...]
    width: int
    direct: bool = True

    @property
    def cutoff(self) -> float:
        """The score above which a customer is unusual."""
        return self.profile.unusual_cutoff

    @classmethod
    def build(
        cls, key: FileKey, profile: MultivariateProfile, sample: tuple[Columns, pd.DataFrame]
    ) -> AnomalyModel:
        """The model of `profile`, its direct encoding checked on `sample` (columns and
        the same customers as a frame)."""
        encoder = profile.encoder
        categorical = []
        offset = len(encoder.numeric)
        for feature, categories in zip(encoder.categorical, encoder.categories, strict=True):
            categorical.append((feature, {c: offset + i for i, c in enumerate(categories)}))
            offset += len(categories)
        model = cls(
            key=key,
            profile=profile,
            numeric=encoder.numeric,
            means=encoder.means,
            scales=encoder.scales,
            categorical=tuple(categorical),
            width=encoder.n_columns,
        )
        columns, frame = sample
        few = {name: values[:_FEW_ROWS] for name, values in columns.items()}
        try:
            expected = encoder.encode(frame)
            agrees = all(
                got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-12)
                for got, want in (
                    (model.encode(columns, len(frame)), expected),
                    (model.encode(few, min(_FEW_ROWS, len(frame))), expected[:_FEW_ROWS]),
                )
            )
        except Exception as err:
            log.warning("direct anomaly encoding failed its check (%s)", _reason(err))
            agrees = False
        if not agrees:
            log.warning("direct anomaly encoding differs from the profile's; using the profile's")
            return dataclasses.replace(model, direct=False)
        return model

    def encode(self, columns: Columns, n: int) -> np.ndarray:
        """The ``n x d`` matrix :meth:`RowEncoder.encode` gives for the same customers:
        standardised numbers (missing: 0), one-hot categories (missing, unseen: none)."""
        out = np.zeros((n, self.width), dtype=np.float64)
        k = len(self.numeric)
        if k:
            x = np.full((n, k), np.nan)
            for j, feature in enumerate(self.numeric):
                if feature in columns:
                    x[:, j] = to_float_array(columns[feature])
            x = (x - self.means) / self.scales
            out[:, :k] = np.where(np.isfinite(x), x, 0.0)
        present = [
            (columns[feature], lookup) for feature, lookup in self.categorical if feature in columns
        ]
        if present:
            if n <= _FEW_ROWS:
                few = [_few_positions(lookup, values) for values, lookup in present]
                index = np.array(few, dtype=np.int64)  # features x n
            else:
                index = np.stack([_positions(lookup, values, n) for values, lookup in present])
            seen = index >= 0
            rows = np.broadcast_to(np.arange(n), index.shape)[seen]
            out[rows, index[seen]] = 1.0
        return out

    def scores(self, columns: Columns, n: int) -> tuple[list[float], list[bool]]:
        """Each customer's anomaly score and whether it exceeds the cut-off."""
        if self.direct:
            matrix = self.encode(columns, n)
        else:
            frame = pd.DataFrame({name: list(values) for name, values in columns.items()})
            matrix = self.profile.encoder.encode(frame)
        score = self.profile.reconstruction.errors(matrix)
        return score.tolist(), (score > self.cutoff).tolist()


class AnomalyProfiles:
    """The anomaly model of the reference file as it is now, refitted when it changes.

    Not thread-safe: its one caller (the champion holder) serialises the calls.
    """

    def __init__(self, config: MonitoringConfig) -> None:
        self.path = config.data.reference_path
        self.settings = config.data_drift_monitoring.multivariate
        self.numeric = tuple(config.features.numeric)
        self.categorical = tuple(config.features.categorical)
        self._key: FileKey | None = None
        self._model: AnomalyModel | None = None
        self._said_disabled = False

    def refresh(self, sample: tuple[Columns, pd.DataFrame]) -> AnomalyModel | None:
        """The model of the reference file now (None: no scores); never raises."""
        if not self.settings.enabled:
            if not self._said_disabled:
                log.info(
                    "data_drift_monitoring.multivariate.enabled is false: predictions carry "
                    "no anomaly score (anomaly_score and unusual are null)"
                )
                self._said_disabled = True
            return None
        key = file_key(self.path)
        if key == self._key:
            return self._model
        self._key = key
        self._model = None
        start = time.perf_counter()
        try:
            frame = load_reference(self.path)
            profile = fit_multivariate(
                frame,
                self.numeric,
                self.categorical,
                variance_share=self.settings.variance_share,
                unusual_rate=self.settings.unusual_rate,
            )
            model = AnomalyModel.build(key, profile, sample)
        except Exception as err:  # a bad reference must never stop the model loading
            log.warning(
                "predictions carry no anomaly score (anomaly_score and unusual are null) "
                "until the reference changes: %s",
                _reason(err),
            )
            return None
        self._model = model
        log.info(
            "anomaly profile fitted on %s in %.2f s: %d reference rows, %d components, "
            "unusual above %.4f",
            self.path,
            time.perf_counter() - start,
            profile.n_rows,
            len(profile.reconstruction.components),
            profile.unusual_cutoff,
        )
        return model
