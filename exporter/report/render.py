"""Report content to one self-contained HTML page (Jinja2 templates, inline SVG charts).

The page holds everything it shows: its CSS, its charts as ``<svg>`` elements, no
script, no font, no image and no link to fetch, so it opens the same from a disk, a
mail client or a phone without a network. Numbers are shown as the JSON reports hold
them, rounded for reading: 4 decimals (:func:`number`), p-values in scientific
notation, shares as percentages.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from exporter import __version__
from exporter.data.history import iso
from exporter.report import charts
from exporter.report.content import STATISTICS, PeriodContent, RunContent

#: Rows of the period report's run and alert tables (the newest; charts show all).
MAX_TABLE_ROWS = 50


def number(value: float | None) -> str:
    """4 decimals; an en dash for a missing value."""
    return "–" if value is None else f"{value:.4f}"


def signed(value: float) -> str:
    """4 decimals with a sign."""
    return f"{value:+.4f}"


def pvalue(value: float | None) -> str:
    """Scientific notation with 2 decimals (p-values span many orders)."""
    return "–" if value is None else f"{value:.2e}"


def percent(value: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal."""
    return "–" if value is None else f"{value:.1%}"


def money(value: float | None) -> str:
    """Thousands separated, 2 decimals."""
    return "–" if value is None else f"{value:,.2f}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("exporter.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=number,
        num1=lambda v: f"{v:.1f}",
        signed=signed,
        pvalue=pvalue,
        pct=percent,
        money=money,
        when=iso,
    )
    return env


_ENV = _environment()


def _page(template: str, content: Any, page_charts: Mapping[str, Any], **extra: Any) -> str:
    return _ENV.get_template(template).render(
        c=content,
        charts=page_charts,
        version=__version__,
        generated_at=time.time(),
        **extra,
    )


def render_run(content: RunContent) -> str:
    """The HTML report of one monitoring run."""
    features: dict[str, Markup | None] = {}
    if content.drift is not None:
        for f in content.drift["features"]:
            bins = f.get("bins") or []
            features[f["feature"]] = (
                charts.distribution(
                    f["feature"], f["kind"], bins, f["reference_ratios"], f["current_ratios"]
                )
                if bins
                else None
            )
    outline = [(first, second) for first, second, _, _ in content.changes]
    page_charts = {
        "metrics": charts.metrics(content.metrics) if content.metrics else None,
        "features": features,
        "reference_associations": charts.associations_heatmap(
            content.reference_associations, "Reference", "assoc-reference"
        ),
        "current_associations": charts.associations_heatmap(
            content.current_associations, "Current window", "assoc-current", outline
        ),
        "target": charts.target(content.target),
    }
    return _page("run.html.j2", content, page_charts, statistics=STATISTICS)


def render_period(content: PeriodContent) -> str:
    """The HTML report of a period of the history (the digest)."""
    runs = content.drift_runs
    page_charts = {
        "scores": charts.drift_scores(runs) if runs else None,
        "decisions": charts.decisions(runs, content.features) if runs else None,
        "performance": (
            charts.performance(content.performance) if any(content.performance.values()) else None
        ),
    }
    hours = (content.until - content.since) / 3600.0
    return _page("period.html.j2", content, page_charts, hours=hours, max_rows=MAX_TABLE_ROWS)
