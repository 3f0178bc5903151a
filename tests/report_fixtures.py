"""What the HTML report tests share: a trained champion, real monitoring passes on the
`sudden` scenario (drift, performance, history, JSON and HTML reports), alerts in the
history as Alertmanager's webhook delivers them, and a reader of the rendered pages."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from exporter.config import MonitoringConfig, parse_config
from exporter.data import history, synthetic
from exporter.monitor.wiring import build_monitor
from exporter.training.pipeline import train

#: Customers of each monitored window (the `sudden` shift), and their seeds.
WINDOW_ROWS = 800
WINDOW_SEEDS = (5, 6)


def report_config(tmp: Path, **sections: Any) -> MonitoringConfig:
    """A config whose stores live in `tmp`; the current window is ``tmp/window.csv``."""
    raw: dict[str, Any] = {
        "model": {"tracking_uri": f"sqlite:///{tmp}/mlruns/mlflow.db"},
        "data": {
            "reference_path": str(tmp / "reference.parquet"),
            "current": {"kind": "file", "path": str(tmp / "window.csv")},
        },
        "optuna": {"enabled": False, "storage": f"sqlite:///{tmp}/optuna.db"},
        "reports": {"dir": str(tmp / "reports")},
        "history": {"url": f"sqlite:///{tmp}/history.db"},
    }
    raw.update(sections)
    return parse_config(raw)


def notification(status: str, fingerprint: str, name: str, severity: str) -> dict[str, Any]:
    """An Alertmanager webhook body (version 4) with one alert."""
    return {
        "version": "4",
        "status": status,
        "receiver": "churn-webhook",
        "alerts": [
            {
                "status": status,
                "fingerprint": fingerprint,
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "labels": {
                    "alertname": name,
                    "severity": severity,
                    "alert_type": "DATA_DRIFT",
                    "model": "churn-model",
                },
                "annotations": {"summary": f"{name} summary text"},
            }
        ],
    }


@dataclass(frozen=True)
class Passes:
    """Two monitoring passes: their config and their JSON and HTML reports."""

    config: MonitoringConfig
    drift: list[Path]
    performance: list[Path]

    def html(self, i: int) -> str:
        return self.drift[i].with_suffix(".html").read_text(encoding="utf-8")

    def json(self, kind: str, i: int) -> dict[str, Any]:
        paths = self.drift if kind == "drift" else self.performance
        return json.loads(paths[i].read_text(encoding="utf-8"))


def monitored_passes(tmp: Path) -> Passes:
    """Train a champion into `tmp`, then run two monitoring passes on `sudden` windows
    (with their Churn labels). Between them a critical alert starts firing and another
    fires and resolves, recorded through the history's webhook path."""
    config = report_config(tmp)
    synthetic.generate_customers(4000, seed=3).to_csv(tmp / "train.csv", index=False)
    train(config, data=tmp / "train.csv", trials=2, seed=1, progress=False)
    engine = history.open_history(config.history.url)
    try:
        for i, seed in enumerate(WINDOW_SEEDS):
            window = synthetic.generate_customers(
                WINDOW_ROWS, seed=seed, scenario="sudden", id_offset=10**6
            )
            window.to_csv(tmp / "window.csv", index=False)
            outcome = build_monitor(config).run_once()
            assert all(outcome.values()), outcome
            if i == 0:
                for body in (
                    notification("firing", "aaa1", "ChurnDataDriftDetected", "critical"),
                    notification("firing", "bbb2", "ChurnPredictionDrift", "warning"),
                    notification("resolved", "bbb2", "ChurnPredictionDrift", "warning"),
                ):
                    history.record_alerts(engine, history.parse_notification(body), now=time.time())
    finally:
        engine.dispose()
    reports = Path(config.reports.dir)
    return Passes(
        config=config,
        drift=sorted((reports / "drift_reports").glob("*.json")),
        performance=sorted((reports / "performance_reports").glob("*.json")),
    )


_VOID = {"meta", "br", "img", "input", "link", "hr", "col", "source", "wbr"}


class Page(HTMLParser):
    """A rendered report read as a person reads it: the text of each element with an
    id, and the rows of each table with an id (cell texts)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: list[str] = []
        self._open: list[tuple[str, str | None]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if ident:
            self.ids.append(ident)
            self.text.setdefault(ident, "")
        if tag == "table" and ident:
            self._table = ident
            self.tables[ident] = []
        if self._table and tag == "tr":
            self.tables[self._table].append([])
        if self._table and tag in ("td", "th"):
            self._cell = []
        if tag not in _VOID:
            self._open.append((tag, ident))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if ident:
            self.ids.append(ident)

    def handle_endtag(self, tag: str) -> None:
        if self._table and tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "table":
            self._table = None
        while self._open:
            name, _ = self._open.pop()
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self._open:
            if ident:
                self.text[ident] += data
        if self._cell is not None:
            self._cell.append(data)

    def words(self, ident: str) -> str:
        """The text of element `ident`, whitespace collapsed."""
        return " ".join(self.text[ident].split())

    def rows(self, ident: str) -> list[list[str]]:
        """The body rows of table `ident` (its header row left out)."""
        return self.tables[ident][1:]
