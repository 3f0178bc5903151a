"""JSON reports: what one run reports, written atomically, and their retention.

Reports land in ``<reports.dir>/<kind>_reports/<kind>_report_<UTC timestamp>.json``. A
report is written to a temporary file in the same folder and renamed into place, so a
reader (or a crash) never sees half a file. The HTML report of a run (`report_job`)
lands beside its JSON with the same name and ``.html``, and the same retention prunes it.
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

#: Kinds of reports: one per job that writes them (the digest keeps what it sent).
REPORT_KINDS = ("drift", "performance", "digest")
#: The suffixes of a report: the JSON a program reads, the HTML a person reads.
REPORT_SUFFIXES = (".json", ".html")
#: The start of an HTML page's temp file name, before the report's name.
HTML_TEMP = ".html-"


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
    """Delete `kind` reports (JSON and HTML) older than `retention_days`, and its
    leftover temp files.

    A temp file can only be left by a writer that died mid-write; the job that owns a kind
    never runs twice at once, so at prune time any temp file of that kind is garbage.
    """
    cutoff = (time.time() if now is None else now) - retention_days * 86400.0
    folder = report_dir(base, kind)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    for path in folder.iterdir():
        is_report = path.name.startswith(f"{kind}_report_") and path.suffix in REPORT_SUFFIXES
        is_temp = path.name.startswith(f".{kind}_report_") and path.suffix == ".tmp"
        # An HTML page is written by another job than the JSON's, maybe right now: its
        # temp file is garbage only once as old as the retention.
        is_html_temp = path.name.startswith(f"{HTML_TEMP}{kind}_report_") and path.suffix == ".tmp"
        old = (is_report or is_html_temp) and path.stat().st_mtime < cutoff
        if is_temp or old:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def newest_report(base: str | Path, kind: str) -> Path | None:
    """The newest JSON report of `kind` (names sort by their UTC timestamp), or None."""
    folder = report_dir(base, kind)
    found = sorted(folder.glob(f"{kind}_report_*.json")) if folder.is_dir() else []
    return found[-1] if found else None


def html_path(json_report: Path) -> Path:
    """Where the HTML report of the run of `json_report` goes: beside it, ``.html``."""
    return json_report.with_suffix(".html")


def write_html(path: Path, html: str) -> Path:
    """Write the HTML page `path` atomically (temp file ``.html-<name>*.tmp``)."""
    return write_atomically(
        path, lambda handle: handle.write(html.encode()), prefix=f"{HTML_TEMP}{path.stem}"
    )


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
                "reason": f.reason,
                "bins": list(f.bins),
                "reference_ratios": list(f.reference_ratios),
                "current_ratios": list(f.current_ratios),
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
