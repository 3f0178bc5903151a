"""A fast scoring path for the champion pipeline, checked against the pipeline itself.

A call of the fitted pipeline costs 15-25 ms on a small machine whatever the number of
rows: most of it is the ColumnTransformer's per-call bookkeeping (column selection,
dtype checks, one ``check_array`` per step), not arithmetic. The API scores a few rows
at a time, so that overhead is nearly all of its inference cost.

`compile_fast_path` recognises the pipeline :mod:`exporter.model.modeling` builds (a
ColumnTransformer of median-imputed, standard-scaled numbers and constant-imputed,
one-hot encoded categories, then a classifier; optionally inside a
``FixedThresholdClassifier``) and precomputes the fitted parameters, so a batch is
encoded with a few numpy operations and handed straight to the classifier. It
returns ``None`` for any other model (the API then calls ``predict_proba`` as usual),
and before it is used it is compared with the pipeline on synthetic customers
(:func:`verified_fast_path`): any difference beyond float rounding and it is not used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from exporter.domain import schema

log = logging.getLogger("churn_monitor.api")

#: Columns of a batch: feature name -> one value per customer.
Columns = Mapping[str, Sequence[Any]]
FastPath = Callable[[Columns, int], np.ndarray]


class _Unsupported(Exception):
    pass


@dataclass(frozen=True)
class _NumericBlock:
    columns: tuple[str, ...]
    fill: np.ndarray  # imputation value per column (NaN: no imputer)
    mean: np.ndarray | None
    scale: np.ndarray | None

    def encode(self, data: Columns, n: int) -> np.ndarray:
        out = np.empty((n, len(self.columns)), dtype=np.float64)
        for j, name in enumerate(self.columns):
            out[:, j] = np.asarray(data[name], dtype=np.float64)
        missing = np.isnan(out)
        if missing.any():
            out[missing] = np.broadcast_to(self.fill, out.shape)[missing]
        if self.mean is not None:
            out -= self.mean
        if self.scale is not None:
            out /= self.scale
        return out


@dataclass(frozen=True)
class _CategoricalBlock:
    """One-hot columns; a missing value (None) takes the imputer's fill value's column
    and an unknown category none ("ignore"). Values are strings, as the API gives."""

    columns: tuple[str, ...]
    lookups: tuple[dict[Any, int], ...]  # category (and None) -> output column, per feature
    width: int

    def encode(self, data: Columns, n: int) -> np.ndarray:
        out = np.zeros((n, self.width), dtype=np.float64)
        rows = np.arange(n)
        for name, lookup in zip(self.columns, self.lookups, strict=True):
            get = lookup.get
            index = np.array([get(v, -1) for v in data[name]], dtype=np.int64)
            known = index >= 0
            out[rows[known], index[known]] = 1.0
        return out


def _steps(transformer: Any) -> list[Any]:
    if type(transformer).__name__ == "Pipeline":
        return [step for _, step in transformer.steps if step not in (None, "passthrough")]
    return [transformer]


def _numeric_block(columns: list[str], transformer: Any) -> _NumericBlock:
    fill = np.full(len(columns), np.nan)
    mean = scale = None
    for step in _steps(transformer):
        kind = type(step).__name__
        if kind == "SimpleImputer":
            if step.add_indicator or not (
                isinstance(step.missing_values, float) and math.isnan(step.missing_values)
            ):
                raise _Unsupported("imputer with indicator or non-NaN missing marker")
            if mean is not None or scale is not None:
                raise _Unsupported("imputer after scaler")
            fill = np.asarray(step.statistics_, dtype=np.float64)
            if fill.shape != (len(columns),) or np.isnan(fill).any():
                raise _Unsupported("imputer without a value for every column")
        elif kind == "StandardScaler":
            mean = None if step.mean_ is None else np.asarray(step.mean_, dtype=np.float64)
            scale = None if step.scale_ is None else np.asarray(step.scale_, dtype=np.float64)
        else:
            raise _Unsupported(f"numeric step {kind}")
    return _NumericBlock(tuple(columns), fill, mean, scale)


def _categorical_block(columns: list[str], transformer: Any) -> _CategoricalBlock:
    steps = _steps(transformer)
    fill: Any = None
    encoder = None
    for step in steps:
        kind = type(step).__name__
        if kind == "SimpleImputer" and encoder is None:
            if step.strategy != "constant" or step.add_indicator:
                raise _Unsupported("categorical imputer that is not a constant fill")
            fill = step.fill_value
        elif kind == "OneHotEncoder" and encoder is None:
            encoder = step
        else:
            raise _Unsupported(f"categorical step {kind}")
    if encoder is None:
        raise _Unsupported("no one-hot encoder")
    if (
        encoder.handle_unknown not in ("ignore", "infrequent_if_exist")
        or getattr(encoder, "drop_idx_", None) is not None
        or getattr(encoder, "_infrequent_enabled", False)
    ):
        raise _Unsupported("one-hot encoder with drop, infrequent categories or strict unknowns")
    lookups = []
    offset = 0
    for categories in encoder.categories_:
        lookup: dict[Any, int] = {value: offset + i for i, value in enumerate(categories.tolist())}
        lookup[None] = lookup.get(fill, -1) if fill is not None else -1
        lookups.append(lookup)
        offset += len(categories)
    return _CategoricalBlock(tuple(columns), tuple(lookups), offset)


def compile_fast_path(model: Any) -> FastPath | None:
    """A function ``(columns, n) -> P(churn)`` equivalent to `model`, or None."""
    try:
        estimator = model
        if type(estimator).__name__ in ("FixedThresholdClassifier", "TunedThresholdClassifierCV"):
            estimator = getattr(estimator, "estimator_", estimator.estimator)
        if type(estimator).__name__ != "Pipeline" or len(estimator.steps) != 2:
            raise _Unsupported("not a two-step pipeline")
        preprocess, classifier = estimator.steps[0][1], estimator.steps[1][1]
        if type(preprocess).__name__ != "ColumnTransformer":
            raise _Unsupported("first step is not a ColumnTransformer")
        if getattr(preprocess, "sparse_output_", False):
            raise _Unsupported("sparse ColumnTransformer output")
        blocks: list[_NumericBlock | _CategoricalBlock] = []
        for name, transformer, columns in preprocess.transformers_:
            if name == "remainder":
                if transformer != "drop":
                    raise _Unsupported("remainder columns are kept")
                continue
            if transformer == "drop":
                continue
            if not isinstance(columns, list | tuple) or not all(
                isinstance(c, str) for c in columns
            ):
                raise _Unsupported("columns not selected by name")
            kinds = {type(s).__name__ for s in _steps(transformer)}
            if "OneHotEncoder" in kinds:
                blocks.append(_categorical_block(list(columns), transformer))
            else:
                blocks.append(_numeric_block(list(columns), transformer))
        positive = schema.positive_column(classifier.classes_)
    except _Unsupported as why:
        log.info("no fast scoring path for this model (%s); using predict_proba", why)
        return None
    except Exception as err:  # an unexpected shape: use the pipeline
        log.info("no fast scoring path for this model (%r); using predict_proba", err)
        return None

    def score(columns: Columns, n: int) -> np.ndarray:
        matrix = np.hstack([block.encode(columns, n) for block in blocks])
        return np.asarray(classifier.predict_proba(matrix))[:, positive]

    return score


def verified_fast_path(
    model: Any, positive_column: int, sample: Mapping[str, Sequence[Any]], frame: Any
) -> FastPath | None:
    """`compile_fast_path(model)` if it agrees with ``model.predict_proba`` on `sample`."""
    fast = compile_fast_path(model)
    if fast is None:
        return None
    n = len(frame)
    try:
        expected = np.asarray(model.predict_proba(frame))[:, positive_column]
        got = fast(sample, n)
    except Exception as err:  # any failure disables the fast path
        log.warning("fast scoring path failed its check (%r); using predict_proba", err)
        return None
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-9, atol=1e-12):
        worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else math.inf
        log.warning(
            "fast scoring path differs from predict_proba by up to %.3g; using predict_proba",
            worst,
        )
        return None
    return fast
