"""The incremental window against a full recomputation on the same rows.

Property tests drive random sequences of appends (out-of-order timestamps, missing and
unseen values), label arrivals (for rows in the window, evicted rows and rows not seen
yet) and evictions by count and age, and check after every step that each statistic
equals the existing full computation (``decision.assess``, ``drift.numeric_stats``,
``drift.categorical_stats``, ``performance.realized_metrics``) bit for bit, and that
the rows are those of the prediction-log window. Hand-computed cases and scipy and
scikit-learn checks follow.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from exporter.domain.drift_rules import DriftRule
from exporter.stats import drift
from exporter.stats.decision import assess
from exporter.stats.performance import (
    Confusion,
    classification_metrics,
    confusion,
    realized_metrics,
)
from exporter.stats.streaming import IncrementalWindow
from exporter.stats.streaming.sorted_values import SortedValues

SETTINGS = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NUMERIC = ("tenure", "charges", "total", "constant")
CATEGORICAL = ("contract", "senior")
FEATURES = (*NUMERIC, *CATEGORICAL)
THRESHOLD = 0.5
RULES = {"charges": DriftRule("wasserstein", 0.1), "contract": DriftRule("psi", 0.1)}
DRIFT = {"drift_threshold": 0.3, "min_window_rows": 3}
MIN_LABELLED = 2


def reference_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Ties (tenure), continuous values (charges), missing values (total), a constant
    column, categories of strings and of integers."""
    r = np.random.default_rng(seed)
    tenure = r.integers(0, 13, n).astype(float)
    return pd.DataFrame(
        {
            "tenure": tenure,
            "charges": r.normal(50, 20, n),
            "total": np.where(tenure == 0, np.nan, tenure * 40),
            "constant": np.full(n, 5.0),
            "contract": r.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "senior": (r.random(n) < 0.2).astype(int),
        }
    )


PROFILE = drift.build_profile(reference_frame(), NUMERIC, CATEGORICAL, psi_bins=5)


# -- the full computation, on rows the test keeps itself -------------------------------


@dataclass
class Row:
    id: str
    seq: int
    ts: float
    score: float
    features: dict[str, Any]


@dataclass
class Model:
    """The window's rows derived from scratch: every row ever appended, every label
    ever received, and the latest age cutoff (the prediction-log window's definition)."""

    max_rows: int | None
    max_age_hours: float | None
    rows: list[Row] = field(default_factory=list)
    labels: dict[str, float] = field(default_factory=dict)
    cutoff: float = -math.inf

    def expire(self, now: float) -> None:
        if self.max_age_hours is not None:
            self.cutoff = max(self.cutoff, now - self.max_age_hours * 3600.0)

    def window(self) -> list[Row]:
        """Rows with ts >= cutoff, the newest max_rows of them by (ts, arrival), in
        arrival order."""
        kept = sorted((r for r in self.rows if r.ts >= self.cutoff), key=lambda r: (r.ts, r.seq))
        if self.max_rows is not None:
            kept = kept[-self.max_rows :]
        return sorted(kept, key=lambda r: r.seq)


def frame_of(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([r.features for r in rows], columns=list(FEATURES))


def labels_and_scores(model: Model, rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([model.labels.get(r.id, np.nan) for r in rows], dtype=float)
    return y, np.array([r.score for r in rows], dtype=float)


def assert_same_numeric(ours: drift.NumericStats, full: drift.NumericStats) -> None:
    assert (ours.n, ours.n_nan) == (full.n, full.n_nan)
    assert ours.ks == full.ks
    assert ours.wasserstein == full.wasserstein
    assert ours.wasserstein_raw == full.wasserstein_raw
    assert ours.psi == full.psi
    assert np.array_equal(ours.current_counts, full.current_counts)
    assert np.array_equal(ours.current_ratios, full.current_ratios)


def assert_same_categorical(ours: drift.CategoricalStats, full: drift.CategoricalStats) -> None:
    assert (ours.n, ours.n_nan, ours.n_unseen) == (full.n, full.n_nan, full.n_unseen)
    assert ours.psi == full.psi
    assert ours.jensen_shannon == full.jensen_shannon
    assert np.array_equal(ours.current_counts, full.current_counts)
    assert np.array_equal(ours.current_ratios, full.current_ratios)


def assert_matches_full(window: IncrementalWindow, model: Model) -> None:
    """Every statistic of ``window`` equals the full computation on the model's rows."""
    rows = model.window()
    assert window.ids() == [r.id for r in rows]
    assert len(window) == len(rows)
    frame = frame_of(rows)
    for name in NUMERIC:
        full = drift.numeric_stats(PROFILE.numeric[name], frame[name])
        assert_same_numeric(window.numeric_stats(name), full)
    for name in CATEGORICAL:
        full_c = drift.categorical_stats(PROFILE.categorical[name], frame[name])
        assert_same_categorical(window.categorical_stats(name), full_c)
    assert window.drift(rules=RULES, **DRIFT) == assess(PROFILE, frame, rules=RULES, **DRIFT)
    y, s = labels_and_scores(model, rows)
    keep = np.isfinite(y) & np.isfinite(s)
    assert window.confusion == confusion(y[keep], s[keep] >= THRESHOLD)
    assert window.realized(MIN_LABELLED) == realized_metrics(y, s, THRESHOLD, MIN_LABELLED)


# -- random sequences ------------------------------------------------------------------

numeric_value = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 5.0, 12.0, 40.0, 480.0]),
    st.floats(-50, 150, allow_nan=False, allow_infinity=False),
    st.sampled_from([np.nan, np.inf, -np.inf, None, "3.5", "n/a"]),
)
categorical_value = st.sampled_from(["a", "b", "c", "new", None, np.nan, 0, 1, "1", 1.0, "0"])
score_value = st.one_of(
    st.sampled_from([0.5, 0.25, 0.75, 0.0, 1.0]), st.floats(0, 1), st.just(np.nan)
)
row_strategy = st.fixed_dictionaries(
    {
        "dt": st.integers(-12, 3),  # seconds from the clock: out of order, ties, too old
        "score": score_value,
        **{name: numeric_value for name in NUMERIC},
        **{name: categorical_value for name in CATEGORICAL},
    }
)
label_target = st.one_of(st.integers(-10, -1), st.integers(-30, 3))
operation = st.one_of(
    st.tuples(st.just("append"), st.lists(row_strategy, max_size=10)),
    # Offsets from the next row number: negative names a recent row (in the window or
    # evicted), zero and positive a row not appended yet. Repeats are allowed.
    st.tuples(
        st.just("label"),
        st.lists(st.tuples(label_target, st.sampled_from([0, 1])), min_size=1, max_size=10),
    ),
    st.tuples(st.just("expire"), st.integers(-5, 30)),  # the clock may step back
)
limits = st.sampled_from([(6, None), (None, 0.005), (10, 0.005), (None, None), (1, None)])


class Driver:
    """Applies operations to an incremental window and to the model alike."""

    def __init__(self, max_rows: int | None, max_age_hours: float | None) -> None:
        self.window = IncrementalWindow(
            PROFILE, THRESHOLD, max_rows=max_rows, max_age_hours=max_age_hours
        )
        self.model = Model(max_rows, max_age_hours)
        self.clock = 1_000_000.0
        self.next_row = 0

    def append(self, drawn: list[dict[str, Any]]) -> None:
        rows = []
        for d in drawn:
            features = {name: d[name] for name in FEATURES}
            ts = self.clock + d["dt"]
            rows.append(Row(f"r{self.next_row}", self.next_row, ts, d["score"], features))
            self.next_row += 1
        batch = frame_of(rows)
        self.window.append(
            [r.id for r in rows], [r.ts for r in rows], [r.score for r in rows], batch
        )
        self.model.rows.extend(rows)

    def label(self, drawn: list[tuple[int, int]]) -> None:
        ids = [f"r{self.next_row + offset}" for offset, _ in drawn]
        labels = [label for _, label in drawn]
        self.window.add_labels(ids, labels)
        self.model.labels.update(zip(ids, map(float, labels), strict=True))

    def expire(self, step: int) -> None:
        self.clock += step
        self.window.expire(self.clock)
        self.model.expire(self.clock)

    def apply(self, op: tuple[str, Any]) -> None:
        getattr(self, op[0])(op[1])


@SETTINGS
@given(limit=limits, ops=st.lists(operation, min_size=6, max_size=24))
def test_random_sequences_equal_full_recomputation(
    limit: tuple[int | None, float | None], ops: list[tuple[str, Any]]
) -> None:
    driver = Driver(*limit)
    for op in ops:
        driver.apply(op)
        assert_matches_full(driver.window, driver.model)


def test_long_seeded_sequence_with_drift_equals_full_recomputation() -> None:
    """Thousands of rows through a 1,500-row, 1-hour window, drifting halfway."""
    r = np.random.default_rng(7)
    driver = Driver(1500, 1.0)
    for step in range(24):
        n = int(r.integers(100, 400))
        shift = 25.0 if step >= 12 else 0.0
        rows = [
            {
                "dt": int(r.integers(-600, 1)),
                "score": float(r.random()),
                "tenure": float(r.integers(0, 13)),
                "charges": float(r.normal(50 + shift, 20)),
                "total": float(r.choice([np.nan, 40.0, 80.0, 480.0])),
                "constant": 5.0 if r.random() < 0.9 else float(r.normal(5, 1)),
                "contract": r.choice(["a", "b", "c", "new"], p=[0.4, 0.3, 0.2, 0.1]),
                "senior": int(r.random() < 0.2),
            }
            for _ in range(n)
        ]
        driver.append(rows)
        targets = r.integers(-600, 50, int(r.integers(0, 300)))
        driver.label([(int(t), int(r.integers(0, 2))) for t in targets])
        driver.expire(int(r.integers(0, 900)))
        assert_matches_full(driver.window, driver.model)
    result = driver.window.drift(**DRIFT)
    assert result.feature("charges").drifted is True
    assert 0 < len(driver.window) <= 1500


# -- the sorted structure --------------------------------------------------------------


@SETTINGS
@given(
    batches=st.lists(
        st.tuples(
            st.lists(st.sampled_from([-1.0, -0.0, 0.0, 0.5, 2.0, 2.0, 7.0]), max_size=6),
            st.lists(st.integers(0, 30), max_size=6),
        ),
        max_size=12,
    ),
    read_every=st.integers(1, 4),
)
def test_sorted_values_equal_a_fresh_sort(
    batches: list[tuple[list[float], list[int]]], read_every: int
) -> None:
    kept = SortedValues()
    content: list[float] = []
    for i, (added, picks) in enumerate(batches):
        kept.add(np.array(added, dtype=float))
        content.extend(added)
        gone = [content.pop(p % len(content)) for p in picks if content]
        kept.remove(np.array(gone, dtype=float))
        assert len(kept) == len(content)
        if i % read_every == 0:
            assert np.array_equal(kept.array(), np.sort(np.array(content, dtype=float)))
    assert np.array_equal(kept.array(), np.sort(np.array(content, dtype=float)))


# -- hand-computed cases ---------------------------------------------------------------

SMALL = drift.build_profile(
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "a", "b", "b"]}), ["x"], ["c"]
)


def small_window(**limits: Any) -> IncrementalWindow:
    return IncrementalWindow(SMALL, 0.5, **{"max_rows": None, "max_age_hours": None, **limits})


def test_hand_computed_drift_after_count_eviction() -> None:
    w = small_window(max_rows=3)
    w.append(
        ["r1", "r2", "r3", "r4"],
        [0.0, 10.0, 20.0, 30.0],
        [0.1, 0.2, 0.3, 0.4],
        {"x": [9.0, 2.0, 3.0, 5.0], "c": ["b", "a", "z", None]},
    )
    assert w.ids() == ["r2", "r3", "r4"]  # r1, the oldest, left
    assert "r1" not in w and "r2" in w
    x = w.numeric_stats("x")
    # F_ref - F_cur at 1, 2, 3, 4, 5: 1/4, 1/2-1/3, 3/4-2/3, 1-2/3, 0.
    assert x.ks is not None and x.ks.statistic == pytest.approx(1 / 3, abs=1e-15)
    # Integral: (1/4 + 1/6 + 1/12 + 1/3) * 1 = 5/6.
    assert x.wasserstein_raw == pytest.approx(5 / 6, rel=1e-15)
    assert (x.n, x.n_nan) == (3, 0)
    c = w.categorical_stats("c")
    assert c.current_counts.tolist() == [1, 0, 1]  # a, b, unseen
    assert (c.n, c.n_nan, c.n_unseen) == (2, 1, 1)
    # p = (1/2, 1/2, 0), q = (1/2, 0, 1/2), m = (1/2, 1/4, 1/4): KL(p||m) = KL(q||m) = 1/2.
    assert c.jensen_shannon == pytest.approx(math.sqrt(0.5), rel=1e-15)


def test_hand_computed_confusion_and_auc_with_relabel_and_eviction() -> None:
    w = small_window(max_rows=5)
    w.add_labels(["r1"], [1])  # before its row: kept until it arrives
    assert w.n_pending_labels == 1
    ids = ["r1", "r2", "r3", "r4", "r5"]
    w.append(ids, [1, 2, 3, 4, 5], [0.9, 0.6, 0.2, 0.4, 0.5], {"x": [1] * 5, "c": ["a"] * 5})
    assert w.n_pending_labels == 0
    w.add_labels(["r2", "r3", "r4", "r5"], [0, 0, 1, 1])
    # threshold 0.5: predictions 1, 1, 0, 0, 1 against labels 1, 0, 0, 1, 1.
    assert w.confusion == Confusion(tp=2, fp=1, fn=1, tn=1)
    v = w.realized().values
    assert v["accuracy"] == 3 / 5 and v["precision"] == 2 / 3 and v["f1"] == 4 / 6
    assert v["roc_auc"] == pytest.approx(4 / 6)  # pairs won: 1+1, 0+1, 0+1 of 6
    w.add_labels(["r2", "r2"], [1, 0])  # the later label wins: unchanged
    assert w.confusion == Confusion(tp=2, fp=1, fn=1, tn=1)
    w.add_labels(["r3"], [1])  # r3 (0.2, negative) becomes a false negative
    assert w.confusion == Confusion(tp=2, fp=1, fn=2, tn=0)
    assert "roc_auc" in w.realized().values
    w.append(["r6"], [6], [0.7], {"x": [1], "c": ["a"]})  # evicts r1 (TP), unlabelled r6
    assert w.confusion == Confusion(tp=1, fp=1, fn=2, tn=0)
    # positives 0.2, 0.4, 0.5 all below the one negative, 0.6
    assert w.realized().values["roc_auc"] == 0.0
    assert w.realized(min_rows=5).values == {}


def test_age_eviction_is_inclusive_and_never_moves_back() -> None:
    w = small_window(max_age_hours=1.0)
    feats = {"x": [1.0] * 4, "c": ["a"] * 4}
    w.append(["a", "b", "c", "d"], [0.0, 1800.0, 3600.0, 7200.0], [0.5] * 4, feats)
    w.expire(7200.0)  # cutoff 3600: ts >= 3600 stays
    assert w.ids() == ["c", "d"]
    w.expire(5000.0)  # the clock stepping back does not widen the window again
    w.append(["e"], [100.0], [0.5], {"x": [1.0], "c": ["a"]})  # older than the cutoff
    assert w.ids() == ["c", "d"]
    w.expire(10_800.0)
    assert w.ids() == ["d"]


def test_count_eviction_follows_timestamps_not_arrival() -> None:
    w = small_window(max_rows=2)
    for row_id, ts in [("a", 10.0), ("b", 20.0), ("c", 30.0), ("d", 15.0), ("e", 25.0)]:
        w.append([row_id], [ts], [0.5], {"x": [1.0], "c": ["a"]})
    # a left for c; d arrived older than both kept rows; e pushed out b.
    assert w.ids() == ["c", "e"]
    w.append(["f"], [30.0], [0.5], {"x": [1.0], "c": ["a"]})  # ties c, arrived later
    assert w.ids() == ["c", "f"]


def test_pending_labels_are_bounded_oldest_first() -> None:
    w = small_window(max_pending_labels=2)
    w.add_labels(["x", "y", "z"], [1, 0, 1])
    assert w.n_pending_labels == 2
    w.append(["x", "y", "z"], [1, 2, 3], [0.9, 0.9, 0.9], {"x": [1] * 3, "c": ["a"] * 3})
    assert w.confusion == Confusion(tp=1, fp=1, fn=0, tn=0)  # x's label was dropped


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda w: w.append(["r1"], [1.0], [0.5], {"x": [1.0], "c": ["a"]}), "'r1' is already"),
        (
            lambda w: w.append(["n", "n"], [1, 2], [0.5, 0.5], {"x": [1, 2], "c": ["a", "a"]}),
            "'n' appears twice",
        ),
        (lambda w: w.append(["n"], [math.nan], [0.5], {"x": [1.0], "c": ["a"]}), "timestamp"),
        (lambda w: w.append(["n"], [1.0], [0.5], {"x": [1.0]}), "c: no column"),
        (lambda w: w.append(["n"], [1.0], [0.5], {"x": [1.0, 2.0], "c": ["a"]}), "x: 2 values"),
        (lambda w: w.append(["n"], [1.0], [0.5, 0.1], {"x": [1.0], "c": ["a"]}), "score: 2"),
        (lambda w: w.add_labels(["r1", "n"], [1, 2]), "row 'n': label 2.0"),
    ],
)
def test_bad_input_is_refused_before_any_change(call: Any, message: str) -> None:
    w = small_window()
    w.append(["r1"], [0.0], [0.7], {"x": [2.0], "c": ["a"]})
    with pytest.raises(ValueError, match=message):
        call(w)
    assert w.ids() == ["r1"] and w.n_pending_labels == 0 and w.confusion.n == 0
    assert w.numeric_stats("x").n == 1 and w.categorical_stats("c").n == 1


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        small_window(max_rows=0)
    with pytest.raises(ValueError, match="max_age_hours"):
        small_window(max_age_hours=0.0)


def test_empty_window_has_no_statistics() -> None:
    w = small_window(max_rows=1)
    assert w.numeric_stats("x").ks is None and w.categorical_stats("c").psi is None
    assert w.realized().reason == "no labelled rows"
    result = w.drift(drift_threshold=0.5, min_window_rows=1)
    assert result.score is None and result.n_current == 0


# -- scipy and scikit-learn on the same data -------------------------------------------


def test_window_statistics_equal_scipy_and_sklearn() -> None:
    r = np.random.default_rng(11)
    driver = Driver(400, None)
    for _ in range(5):
        n = 150
        driver.append(
            [
                {
                    "dt": 0,
                    "score": float(r.random()),
                    "tenure": float(r.integers(0, 15)),
                    "charges": float(r.normal(55, 20)),
                    "total": np.nan if r.random() < 0.1 else float(r.integers(1, 13) * 40),
                    "constant": 5.0,
                    "contract": "a",
                    "senior": 0,
                }
                for _ in range(n)
            ]
        )
        driver.label([(-int(k), int(r.integers(0, 2))) for k in r.integers(1, 300, 100)])
        driver.expire(60)
    reference = reference_frame()
    frame = frame_of(driver.model.window())
    for name in ("tenure", "charges", "total"):
        a = reference[name].to_numpy(dtype=float)
        b = frame[name].to_numpy(dtype=float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        s = driver.window.numeric_stats(name)
        assert s.ks is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = stats.ks_2samp(a, b)
        assert s.ks.statistic == pytest.approx(ref.statistic, abs=1e-12)
        assert s.ks.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
        w = stats.wasserstein_distance(a, b)
        assert s.wasserstein_raw == pytest.approx(w, rel=1e-9)
    y, scores = labels_and_scores(driver.model, driver.model.window())
    keep = np.isfinite(y)
    y, scores = y[keep].astype(int), scores[keep]
    pred = (scores >= THRESHOLD).astype(int)
    realized = driver.window.realized().values
    # Confusion-count formulas equal scikit-learn's bit for bit.
    assert realized["accuracy"] == skm.accuracy_score(y, pred)
    assert realized["precision"] == skm.precision_score(y, pred)
    assert realized["recall"] == skm.recall_score(y, pred)
    assert realized["f1"] == skm.f1_score(y, pred)
    assert realized["roc_auc"] == skm.roc_auc_score(y, scores)
    assert realized == classification_metrics(y, scores, THRESHOLD)
