"""Report files: atomic writes, JSON without NaN, retention per kind."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from exporter.monitor.reports import prune_reports, report_dir, write_report


def test_write_is_atomic_and_json_safe(tmp_path: Path) -> None:
    now = time.time()
    path = write_report(tmp_path, "drift", {"score": float("nan"), "xs": [1.0, float("inf")]}, now)
    assert path.parent == tmp_path / "drift_reports"
    assert path.name.startswith("drift_report_") and path.suffix == ".json"
    assert json.loads(path.read_text()) == {"score": None, "xs": [1.0, None]}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_names_are_unique_per_timestamp(tmp_path: Path) -> None:
    a = write_report(tmp_path, "performance", {}, 1_700_000_000.0)
    b = write_report(tmp_path, "performance", {}, 1_700_000_000.5)
    assert a != b
    assert a.name == "performance_report_20231114T221320_000000Z.json"


def test_retention_removes_old_reports_and_temp_files_of_its_kind_only(tmp_path: Path) -> None:
    now = time.time()
    old = write_report(tmp_path, "drift", {"n": 1}, now - 40 * 86400)
    os.utime(old, (now - 40 * 86400, now - 40 * 86400))
    fresh = write_report(tmp_path, "drift", {"n": 2}, now)
    other_old = write_report(tmp_path, "performance", {"n": 3}, now - 40 * 86400)
    os.utime(other_old, (now - 40 * 86400, now - 40 * 86400))
    partial = report_dir(tmp_path, "drift") / ".drift_report_x.tmp"
    partial.write_text("{half")
    unrelated = report_dir(tmp_path, "drift") / "notes.txt"
    unrelated.write_text("keep me")

    removed = prune_reports(tmp_path, "drift", retention_days=30, now=now)

    assert sorted(removed) == sorted([old, partial])
    assert fresh.exists() and other_old.exists() and unrelated.exists()


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown report kind"):
        write_report(tmp_path, "weather", {}, 0.0)
