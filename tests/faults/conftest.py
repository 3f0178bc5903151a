"""Fixtures of the reliability suite: every case records what it measured.

Each test calls ``reliability.record(case, category, expectation, measured)`` once its
assertions hold. When ``CHURN_RELIABILITY_RESULTS`` names a file, the records are
appended there as JSON lines; ``python -m tests.faults.report`` turns that file into
the table in docs/reliability.md (``make reliability`` does both).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

RESULTS_ENV = "CHURN_RELIABILITY_RESULTS"


@dataclass(frozen=True)
class Record:
    case: str
    category: str  # "fault", "load", "bad input", "security"
    expectation: str
    measured: str
    test: str


class Reliability:
    def __init__(self, test: str) -> None:
        self.test = test
        self.records: list[Record] = []

    def record(self, case: str, category: str, expectation: str, measured: str) -> None:
        """Note a case's measured result; call after its assertions passed."""
        self.records.append(Record(case, category, expectation, measured, self.test))


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[Reliability]:
    tracker = Reliability(request.node.nodeid)
    yield tracker
    target = os.environ.get(RESULTS_ENV)
    failed = getattr(request.node, "rep_call", None)
    if not target or failed is None or not failed.passed:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for record in tracker.records:
            handle.write(json.dumps(asdict(record)) + "\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the item, so the fixture knows whether the test passed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
