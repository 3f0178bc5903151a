"""JSON reports: what one run reports, written atomically, and their retention.

Reports land in ``<reports.dir>/<kind>_reports/<kind>_report_<UTC timestamp>.json``. A
report is written to a temporary file in the same folder and renamed into place, so a
reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter.data.atomic import write_atomically
from exporter.domain.model import ModelRef
from exporter.stats.performance import degradation
from exporter.stats.snapshots import DriftSnapshot, PerformanceSnapshot

REPORT_KINDS = ("drift", "performance")


def report_dir(base: str | Path, kind: str) -> Path:
    """The folder of one report kind, e.g. ``reports/drift_reports``."""
    if kind not in REPORT_KINDS:
        raise ValueError(f"unknown report kind {kind!r}; expected one of {REPORT_KINDS}")
    return Path(base) / f"{kind}_reports"


def _jsonable(value: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_report(base: str | Path, kind: str, payload: Mapping[str, Any], now: float) -> Path:
    """Write `payload` as a timestamped JSON report atomically and return its path."""
    folder = report_dir(base, kind)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S_%fZ")
    target = folder / f"{kind}_report_{stamp}.json"
    text = json.dumps(_jsonable(payload), indent=2, sort_keys=True)
    write_atomically(target, lambda handle: handle.write(text.encode()), prefix=f".{kind}_report_")
    return target


def prune_reports(
    base: str | Path, kind: str, retention_days: float, now: float | None = None
) -> list[Path]:
    """Delete `kind` reports older than `retention_days`, and its leftover temp files.

    A temp file can only be left by a writer that died mid-write; the job that owns a kind
    never runs twice at once, so at prune time any temp file of that kind is garbage.
    """
    cutoff = (time.time() if now is None else now) - retention_days * 86400.0
    folder = report_dir(base, kind)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    for path in folder.iterdir():
        is_report = path.name.startswith(f"{kind}_report_") and path.suffix == ".json"
        is_temp = path.name.startswith(f".{kind}_report_") and path.suffix == ".tmp"
        if is_temp or (is_report and path.stat().st_mtime < cutoff):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _model(ref: ModelRef) -> dict[str, str]:
    return {"name": ref.name, "version": ref.version, "run_id": ref.run_id}


def drift_report(snapshot: DriftSnapshot) -> dict[str, Any]:
    """The JSON report of one drift run (the seed's drift report fields, and per feature)."""
    result = snapshot.result
    return {
        "kind": "drift",
        "timestamp": snapshot.taken_at,
        "model": _model(snapshot.model),
        "dataset_drift": result.drifted,
        "drift_score": result.score,
        "drift_threshold": result.threshold,
        "critical_threshold": snapshot.critical_threshold,
        "decided": result.decided,
        "reason": result.reason,
        "n_current": result.n_current,
        "n_reference": result.n_reference,
        "drifted_columns": [f.feature for f in result.features if f.drifted],
        "features": [
            {
                "feature": f.feature,
                "kind": f.kind,
                "method": f.method,
                "threshold": f.threshold,
                "drifted": f.drifted,
                "ks_statistic": f.ks_statistic,
                "ks_pvalue": f.ks_pvalue,
                "psi": f.psi,
                "wasserstein": f.wasserstein,
                "jensen_shannon": f.jensen_shannon,
                "n_current": f.n_current,
                "n_nan": f.n_nan,
            }
            for f in result.features
        ],
        "multivariate": None if snapshot.multivariate is None else asdict(snapshot.multivariate),
    }


def performance_report(snap: PerformanceSnapshot) -> dict[str, Any]:
    """The JSON report of one performance run."""
    return {
        "kind": "performance",
        "timestamp": snap.taken_at,
        "model": _model(snap.model),
        "labeled_rows": snap.realized.n_rows,
        "window_rows": snap.window_rows,
        "realized": dict(snap.realized.values),
        "realized_note": snap.realized.reason,
        "estimated": dict(snap.estimated.values),
        "estimated_note": snap.estimated.reason,
        "baseline": dict(snap.baseline),
        "minimums": dict(snap.minimums),
        "degradation": degradation(snap.baseline, snap.realized.values),
        "degradation_threshold": snap.degradation_threshold,
        "prediction_drift": {
            "psi": snap.prediction_psi,
            "ks_statistic": snap.prediction_ks,
            "psi_threshold": snap.prediction_psi_threshold,
        },
        "positive_ratio": snap.positive_ratio,
        "reference_positive_ratio": snap.reference_positive_ratio,
        "revenue_at_risk": snap.revenue_at_risk,
    }
