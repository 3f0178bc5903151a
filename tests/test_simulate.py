"""The traffic simulator against a live API: rows, delayed feedback, refusals."""

from __future__ import annotations

import time

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import sqlalchemy as sa  # noqa: E402

from exporter.data import predlog, synthetic  # noqa: E402
from exporter.ops.simulate import SimulationError, SimulationResult, _records, simulate  # noqa: E402

from .api_fixtures import LiveApi, count_rows, fetch_rows  # noqa: E402
from .support import free_port  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]


def _feedback_rows(api: LiveApi, since: float) -> list[dict]:
    f, p = predlog.feedback, predlog.predictions
    query = (
        sa.select(f.c.ts.label("feedback_ts"), f.c.actual, p.c.ts, p.c.customer_id)
        .join(p, p.c.id == f.c.prediction_id)
        .where(p.c.ts >= since)
    )
    return fetch_rows(api.db_url, query)


@pytest.mark.integration
def test_simulation_logs_rows_and_delayed_feedback(live_api: LiveApi) -> None:
    started = time.time()
    before = count_rows(live_api.db_url)
    result = simulate(
        live_api.url,
        rate=40,
        duration=1.5,
        scenario="none",
        label_delay=1.0,
        seed=5,
        progress=False,
    )
    assert result.ok, result.summary()
    assert result.sent == 60 and result.accepted == 60
    assert result.rejected_invalid == 0 and result.refused == 0
    assert result.feedback_sent == 60
    assert count_rows(live_api.db_url) == before + 60
    labels = _feedback_rows(live_api, started)
    assert len(labels) == 60
    # Each label arrived no sooner than label_delay after its prediction was logged.
    assert min(r["feedback_ts"] - r["ts"] for r in labels) >= 0.9
    assert result.duration_seconds >= 1.5 + 0.9
    assert "sent 60 customers" in result.summary()


@pytest.mark.integration
def test_unseen_payment_method_is_counted_as_rejected_by_validation(live_api: LiveApi) -> None:
    result = simulate(
        live_api.url,
        rate=50,
        duration=1.0,
        scenario="new_payment_method",
        label_delay=0.0,
        seed=6,
        progress=False,
    )
    assert result.sent == 50
    assert result.rejected_invalid > 0
    assert result.accepted + result.rejected_invalid == 50
    assert result.feedback_sent == result.accepted
    assert result.refused == 0 and result.ok
    assert result.statuses[422] == result.rejected_invalid


@pytest.mark.integration
def test_batch_mode(live_api: LiveApi) -> None:
    before = count_rows(live_api.db_url)
    result = simulate(
        live_api.url, rate=100, duration=1.0, label_delay=0.0, seed=7, batch=25, progress=False
    )
    assert result.ok, result.summary()
    assert result.sent == result.accepted == 100
    assert result.statuses == {200: 4}
    assert count_rows(live_api.db_url) == before + 100


def test_nothing_listening_raises() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SimulationError, match="cannot reach the API"):
        simulate(url, rate=10, duration=0.5, label_delay=0, progress=False)


@pytest.mark.integration
def test_an_api_without_a_model_refuses_and_the_run_fails(modelless_api: LiveApi) -> None:
    result = simulate(modelless_api.url, rate=20, duration=0.5, label_delay=0, progress=False)
    assert result.refused == 10 and result.accepted == 0
    assert not result.ok
    assert result.statuses == {503: 10}
    assert "no model is being served" in (result.first_error or "")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rate": 0}, "rate"),
        ({"duration": -1}, "duration"),
        ({"label_delay": -1}, "label_delay"),
        ({"scenario": "tsunami"}, "scenario"),
        ({"batch": 0}, "batch"),
    ],
)
def test_bad_arguments(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        simulate("http://127.0.0.1:9", progress=False, **kwargs)
    with pytest.raises(ValueError, match="api_url"):
        simulate("127.0.0.1:8000", progress=False)


def test_records_are_valid_request_bodies() -> None:
    from exporter.api.models import Customer

    frame = synthetic.generate_customers(50, seed=1)
    frame.loc[0, "tenure"] = 0
    frame.loc[0, "TotalCharges"] = float("nan")
    records = _records(frame)
    assert records[0][0]["TotalCharges"] is None
    for body, label in records:
        Customer(**body)
        assert label in (0, 1)
    assert [label for _, label in records] == (frame["Churn"] == "Yes").astype(int).tolist()


@pytest.mark.parametrize("scenario", ["correlation", "mix"])
def test_joint_drift_scenarios_pass_through_to_the_generator(
    scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenario names reach the generator, here one customer per call (rate 1/s);
    nothing listens, so the run ends at the first predict."""
    calls: list[dict] = []
    real = synthetic.generate_customers

    def spy(n: int, **kwargs: object):  # type: ignore[no-untyped-def]
        frame = real(n, **kwargs)  # type: ignore[arg-type]
        calls.append({"n": n, "rows": len(frame), **kwargs})
        return frame

    monkeypatch.setattr(synthetic, "generate_customers", spy)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SimulationError, match="cannot reach the API"):
        simulate(url, rate=1, duration=0.5, scenario=scenario, label_delay=0, progress=False)
    assert calls and all(c["scenario"] == scenario for c in calls)
    assert calls[0]["n"] == calls[0]["rows"] == 1


@pytest.mark.parametrize("scenario", ["correlation", "mix"])
def test_joint_drift_scenarios_are_valid_request_bodies(scenario: str) -> None:
    """Under `correlation` a blank TotalCharges can fall at any tenure (the donor's
    blank) and a first-month customer can carry a total: both are valid bodies."""
    from exporter.api.models import Customer

    frame = synthetic.generate_customers(3_000, seed=4, scenario=scenario)
    records = _records(frame)
    for body, _ in records:
        Customer(**body)
    if scenario == "correlation":
        assert any(b["TotalCharges"] is None and b["tenure"] > 0 for b, _ in records)


@pytest.mark.integration
@pytest.mark.parametrize("scenario", ["correlation", "mix"])
def test_joint_drift_scenarios_are_all_accepted(live_api: LiveApi, scenario: str) -> None:
    result = simulate(
        live_api.url,
        rate=30,
        duration=1.0,
        scenario=scenario,
        label_delay=0.0,
        seed={"correlation": 9, "mix": 10}[scenario],  # disjoint customerID ranges
        progress=False,
    )
    assert result.ok, result.summary()
    assert result.sent == result.accepted == 30
    assert result.rejected_invalid == 0
    assert result.feedback_sent == 30


def test_result_ok_and_summary() -> None:
    result = SimulationResult(sent=10, accepted=8, rejected_invalid=2, duration_seconds=2.0)
    assert result.ok
    assert "2 rejected by validation" in result.summary()
    assert not SimulationResult(sent=1, refused=1).ok


@pytest.mark.integration
def test_gradual_drift_advances_with_elapsed_time(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict] = []
    real = synthetic.generate_customers

    def spy(n: int, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append({"n": n, **kwargs})
        return real(n, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synthetic, "generate_customers", spy)
    result = simulate(
        live_api.url,
        rate=20,
        duration=2.0,
        scenario="gradual",
        label_delay=0,
        seed=8,
        progress=False,
    )
    assert result.ok and result.accepted == 40
    progress = [c["progress"] for c in calls]
    assert progress[0] < 0.05 and progress[-1] >= 0.4
    assert progress == sorted(progress)
    assert all(c["scenario"] == "gradual" for c in calls)
    offsets = [c["id_offset"] for c in calls]
    assert offsets == sorted(set(offsets))  # disjoint ID ranges, no repeats
