"""Bad input: the API fuzzed from its own OpenAPI document (schemathesis), and property
tests of the statistics and the config loader on hostile values (hypothesis).

What tests/test_drift_properties.py already covers (agreement with scipy, missing
values dropped, identical samples, invariances, PSI symmetry) is not repeated here;
these add empty and constant samples, values up to 1e150 and subnormals, the
dataset decision on hostile frames, and the config loader on random nested mappings.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from pydantic import BaseModel

from exporter.config import ConfigError, MonitoringConfig, parse_config
from exporter.data import synthetic
from exporter.domain import schema
from exporter.stats import decision, drift

pytest_plugins = ["tests.api_fixtures"]

# ------------------------------------------------------------------ API (schemathesis)

#: Examples per operation and generation mode (positive: valid per the schema;
#: negative: violating it). 6 operations x 2 modes x 25 = at most 300 requests.
FUZZ_EXAMPLES = 25


@pytest.fixture
def fuzzed_app(tmp_path: Path, tiny_model: Any) -> Iterator[Any]:
    """The app in process over a real SQLite log and the small real model."""
    from exporter.api import create_app

    from ..api_fixtures import StandInRegistry, make_config

    registry = StandInRegistry(tiny_model)
    app = create_app(make_config(tmp_path), model_loader=registry.load, model_watch=registry.watch)
    yield app
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()  # schemathesis started the app's lifespan; stop it


@pytest.mark.slow
def test_openapi_fuzzing_gives_no_5xx_and_conforming_responses(
    fuzzed_app: Any, reliability: Any
) -> None:
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    loaded = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    operations = [result.ok() for result in loaded.get_all_operations()]
    labels = sorted(op.label for op in operations)
    assert "POST /predict/batch" in labels and "POST /predict" in labels, labels
    statuses: Counter[int] = Counter()
    per_operation: Counter[str] = Counter()
    started = time.monotonic()

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(mode))
            def fuzz(case: Any) -> None:
                response = case.call()
                statuses[response.status_code] += 1
                per_operation[case.operation.label] += 1
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )

            try:
                fuzz()
            except Unsatisfiable:
                # An operation without parameters or body (GET /health) has no input
                # that violates its schema.
                assert mode is GenerationMode.NEGATIVE and operation.method == "get"

    elapsed = time.monotonic() - started
    print(dict(per_operation), dict(statuses))
    assert not any(code >= 500 for code in statuses), statuses
    assert all(per_operation[label] for label in labels), per_operation
    total = sum(statuses.values())
    shown = ", ".join(f"{count} × {code}" for code, count in sorted(statuses.items()))
    reliability.record(
        "API fuzzed from its OpenAPI document (schemathesis, positive and negative "
        f"generation, {len(operations)} operations)",
        "bad input",
        "no 5xx; every response conforms to the documented schema "
        "(checks not_a_server_error, response_schema_conformance)",
        f"{total} requests in {elapsed:.0f} s: {shown}; 0 × 5xx, 0 schema violations",
    )


# ------------------------------------------------------------- drift statistics

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: The magnitude of the random values (values near the float maximum: a test below).
LARGE = 1e150
large = st.floats(-LARGE, LARGE, allow_nan=False, allow_infinity=False)
tiny = st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300])
constant_pool = st.sampled_from([0.0, 1.0, -7.5, 1e150])
missing = st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def hostile_samples(draw: st.DrawFn) -> np.ndarray:
    """Empty, all-missing, constant, huge, subnormal or mixed arrays."""
    kind = draw(st.sampled_from(["empty", "missing", "constant", "large", "tiny", "mixed"]))
    n = draw(st.integers(1, 60))
    if kind == "empty":
        return np.array([], dtype=float)
    if kind == "missing":
        return np.array(draw(st.lists(missing, min_size=n, max_size=n)), dtype=float)
    if kind == "constant":
        return np.full(n, draw(constant_pool), dtype=float)
    elements = {"large": large, "tiny": tiny, "mixed": st.one_of(large, tiny, missing)}[kind]
    return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=float)


def _finite_or_none(value: float | None) -> bool:
    return value is None or math.isfinite(value)


RUNS: Counter[str] = Counter()


@PROPERTIES
@given(a=hostile_samples(), b=hostile_samples(), bins=st.integers(2, 20))
def numeric_statistics_never_raise_and_stay_in_range(
    a: np.ndarray, b: np.ndarray, bins: int
) -> None:
    RUNS["numeric"] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow or invalid value would be a bug
        profile = drift.profile_numeric(a, bins)
        s = drift.numeric_stats(profile, b)
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    assert (s.n, s.n_nan) == (fb.size, b.size - fb.size)
    if fa.size == 0 or fb.size == 0:
        # Documented: every statistic is None when a side has no value.
        assert (s.ks, s.wasserstein, s.wasserstein_raw, s.psi) == (None, None, None, None)
        return
    assert s.ks is not None and 0.0 <= s.ks.statistic <= 1.0 and 0.0 <= s.ks.pvalue <= 1.0
    assert s.psi is not None and math.isfinite(s.psi) and s.psi >= 0.0
    assert s.wasserstein_raw is not None and math.isfinite(s.wasserstein_raw)
    assert s.wasserstein is not None and math.isfinite(s.wasserstein) and s.wasserstein >= 0
    std = float(np.std(fa))
    if std > 0:
        assert s.wasserstein == pytest.approx(s.wasserstein_raw / std, rel=1e-9)
    else:
        assert s.wasserstein == s.wasserstein_raw  # documented: unnormalised
    if np.unique(fa).size == 1 and np.unique(fb).size == 1:
        # Two constants: no drift when equal, complete separation otherwise.
        same = fa[0] == fb[0]
        assert s.ks.statistic == (0.0 if same else 1.0)
        assert s.wasserstein == pytest.approx(abs(fb[0] - fa[0]))
        assert (s.psi == 0.0) if same else True


def test_values_near_the_float_maximum_keep_a_finite_wasserstein() -> None:
    """The population SD is computed on scaled values, so squares cannot overflow."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = drift.numeric_stats(drift.profile_numeric([1e200, 3e200, 2e200]), [1e200, 5e200])
    assert s.wasserstein is not None and math.isfinite(s.wasserstein) and s.wasserstein > 0


@PROPERTIES
@given(
    a=st.lists(st.one_of(st.text(max_size=3), st.none(), missing), max_size=40),
    b=st.lists(st.one_of(st.text(max_size=3), st.none(), missing), max_size=40),
)
def categorical_statistics_never_raise_on_hostile_categories(a: list[Any], b: list[Any]) -> None:
    RUNS["categorical"] += 1
    profile = drift.profile_categorical(pd.Series(a, dtype=object))
    s = drift.categorical_stats(profile, pd.Series(b, dtype=object))
    if profile.n == 0 or s.n == 0:
        assert s.psi is None and s.jensen_shannon is None
        return
    assert s.psi is not None and math.isfinite(s.psi) and s.psi >= 0.0
    assert s.jensen_shannon is not None and 0.0 <= s.jensen_shannon <= 1.0
    assert int(s.current_counts.sum()) == s.n


REFERENCE = synthetic.generate_customers(400, seed=5)
PROFILE = drift.build_profile(REFERENCE, schema.NUMERIC_FEATURES, schema.CATEGORICAL_FEATURES)


@st.composite
def hostile_windows(draw: st.DrawFn) -> pd.DataFrame:
    """A window with each numeric column empty, missing, constant, huge or mixed, and
    categorical columns with unseen, missing or valid values; a column may be absent."""
    n = draw(st.integers(0, 40))
    frame: dict[str, Any] = {}
    for name in schema.NUMERIC_FEATURES:
        kind = draw(st.sampled_from(["absent", "missing", "constant", "large", "mixed", "real"]))
        if kind == "absent":
            continue
        if kind == "real":
            frame[name] = REFERENCE[name].iloc[:n].to_numpy(dtype=float)
            frame[name] = np.resize(frame[name], n)
            continue
        element = {
            "missing": missing,
            "constant": st.just(draw(constant_pool)),
            "large": large,
            "mixed": st.one_of(large, tiny, missing),
        }[kind]
        frame[name] = np.array(draw(st.lists(element, min_size=n, max_size=n)), dtype=float)
    for name in schema.CATEGORICAL_FEATURES:
        if draw(st.booleans()) and draw(st.booleans()):
            continue
        known = st.sampled_from(sorted(map(str, REFERENCE[name].unique())))
        values = st.one_of(known, st.text(max_size=3), st.none())
        frame[name] = pd.Series(draw(st.lists(values, min_size=n, max_size=n)), dtype=object)
    return pd.DataFrame(frame, index=pd.RangeIndex(n))


@PROPERTIES
@given(
    window=hostile_windows(),
    min_rows=st.integers(1, 50),
    threshold=st.floats(0.0, 1.0),
)
def dataset_decision_never_raises_and_is_consistent(
    window: pd.DataFrame, min_rows: int, threshold: float
) -> None:
    RUNS["decision"] += 1
    result = decision.assess(PROFILE, window, drift_threshold=threshold, min_window_rows=min_rows)
    assert result.n_current == len(window)
    assert {f.feature for f in result.features} == set(PROFILE.features)
    for f in result.features:
        assert f.n_current + f.n_nan == len(window), f.feature
        for value in (f.ks_statistic, f.ks_pvalue, f.psi, f.wasserstein, f.jensen_shannon):
            assert _finite_or_none(value), (f.feature, value)
        if f.drifted is None:
            assert f.reason, f.feature  # undecided always says why
    if len(window) < min_rows:
        assert result.score is None and not result.decided and result.reason
    if result.score is None:
        assert result.drifted is None and result.reason
    else:
        assert 0.0 <= result.score <= 1.0
        assert result.drifted == (result.score > threshold)
        assert result.score == pytest.approx(len(result.drifted_features) / result.n_decided)


# ------------------------------------------------------------------ config loader

_word = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters=".:"), min_size=1, max_size=12
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    _word,
    st.sampled_from(
        ["ks", "psi", "wasserstein", "sql", "file", "INFO", "tenure", "Contract", "", "1e3"]
    ),
)
_junk = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_word, inner, max_size=4)),
    max_leaves=8,
)


def _plausible(annotation: Any) -> st.SearchStrategy[Any]:
    """Values near what a field takes (nested sections as mappings), or junk."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return st.one_of(_section(annotation), _junk)
    origin = get_origin(annotation)
    if origin in (tuple, list):
        return st.one_of(st.lists(st.sampled_from(schema.FEATURES), max_size=5), _junk)
    if origin is dict:
        args = get_args(annotation)
        value = args[1] if len(args) == 2 else Any
        return st.one_of(
            st.dictionaries(st.sampled_from(schema.FEATURES), _plausible(value)), _junk
        )
    return _junk


def _section(model: type[BaseModel]) -> st.SearchStrategy[dict[Any, Any]]:
    fields = {
        name: st.deferred(lambda f=f: _plausible(f.annotation))
        for name, f in model.model_fields.items()
    }
    known = st.fixed_dictionaries({}, optional=fields)
    extra = st.dictionaries(st.one_of(_word, st.integers(0, 9)), _junk, max_size=1)
    return st.builds(lambda a, b: {**a, **b}, known, st.one_of(st.just({}), extra))


_CONFIGS = st.one_of(_section(MonitoringConfig), _junk)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(raw=_CONFIGS)
def config_loader_gives_a_config_or_a_dotted_path_error(raw: Any) -> None:
    RUNS["config"] += 1
    try:
        config = parse_config(raw)
    except ConfigError as err:
        message = str(err)
        first = re.split(r"[.:]", message, maxsplit=1)[0]
        top = {str(k) for k in raw} if isinstance(raw, dict) else set()
        assert first == "<root>" or first in top, message
        assert ": " in message, message
        return
    assert isinstance(config, MonitoringConfig)


def test_statistics_on_hostile_samples(reliability: Any) -> None:
    RUNS.clear()
    numeric_statistics_never_raise_and_stay_in_range()
    categorical_statistics_never_raise_on_hostile_categories()
    reliability.record(
        "drift statistics on hostile samples: empty, all-missing (NaN/±inf), constant, "
        "subnormal, |x| up to 1e150, mixed; hostile categories",
        "bad input",
        "never raise, no overflow warning; documented results (None on an empty side; "
        "KS and p in [0, 1]; PSI, Wasserstein, Jensen-Shannon finite ≥ 0; two constants: "
        "D 0 and W 0 when equal, D 1 and W their distance otherwise)",
        f"{RUNS['numeric']} numeric and {RUNS['categorical']} categorical hypothesis "
        "examples hold; values near the float maximum (1e200) keep a finite normalised "
        "Wasserstein (the SD is recomputed on scaled values when it overflows)",
    )


def test_dataset_decision_on_hostile_windows(reliability: Any) -> None:
    RUNS.clear()
    dataset_decision_never_raises_and_is_consistent()
    reliability.record(
        "dataset drift decision on hostile windows (0-40 rows; columns absent, missing, "
        "constant, huge; unseen and missing categories)",
        "bad input",
        "never raises; score None with a reason, or in [0, 1] with drifted = score > "
        "threshold; every undecided feature says why",
        f"{RUNS['decision']} hypothesis examples hold",
    )


def test_config_loader_on_random_mappings(reliability: Any) -> None:
    RUNS.clear()
    config_loader_gives_a_config_or_a_dotted_path_error()
    reliability.record(
        "config loader (parse_config) on random nested mappings: real section and field "
        "names with hostile values, unknown keys, junk",
        "bad input",
        "a valid config, or ConfigError whose message starts with a dotted path; never "
        "another exception",
        f"{RUNS['config']} hypothesis examples hold",
    )


# ------------------------------------------------------------ the report generator


def test_report_generator_renders_records_and_refuses_bad_files(tmp_path: Path) -> None:
    """tests/faults/report.py: a table row per case (pipes escaped, repeats collapsed),
    the prose around the markers kept; exit 2 on an empty or malformed file."""
    import json

    from . import report

    results = tmp_path / "results.jsonl"
    rows = [
        {
            "case": "a | b",
            "category": "security",
            "expectation": "x",
            "measured": "1",
            "test": "tests/faults/test_x.py::test_a",
        },
        {
            "case": "c",
            "category": "fault",
            "expectation": "y",
            "measured": "old",
            "test": "tests/faults/test_y.py::test_c",
        },
        {
            "case": "c",
            "category": "fault",
            "expectation": "y",
            "measured": "new",
            "test": "tests/faults/test_y.py::test_c",
        },
    ]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "reliability.md"
    out.write_text(f"# Intro kept\n\n{report.BEGIN}\nstale\n{report.END}\n\nOutro kept\n")
    assert report.main([str(results), str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Intro kept") and text.rstrip().endswith("Outro kept")
    assert "stale" not in text and "| old |" not in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[2].startswith("| c | fault | y | new | `test_y.py::test_c` |")  # fault first
    assert table[3].startswith("| a \\| b | security |")

    for content in ("", "{not json\n", '{"case": "only"}\n'):
        results.write_text(content)
        with pytest.raises(SystemExit) as exit_info:
            report.main([str(results), str(out)])
        assert exit_info.value.code == 2
