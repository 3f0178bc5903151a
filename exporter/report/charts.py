"""The report's charts: matplotlib figures rendered to inline SVG.

Each function takes plain data and returns the ``<svg>`` element as Markup, ready to
be placed in a page: text stays text (``svg.fonttype: none``, so charts are small and
searchable), the root has a ``viewBox`` and no fixed size (the page's CSS scales it to
the screen), and element ids are prefixed with the chart's name so that several charts
in one page never share one. Figures are built with :class:`matplotlib.figure.Figure`
directly (no pyplot state, safe in the exporter's threads); nothing is fetched.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from markupsafe import Markup
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.typing import RcKeyType

from exporter.report.associations import Associations
from exporter.report.content import DriftRun, MetricRow, TargetShares

REFERENCE_COLOR = "#7a8ca5"
CURRENT_COLOR = "#e07b39"
DRIFT_COLOR = "#c62828"
OK_COLOR = "#2e7d32"
ESTIMATED_COLOR = "#6a5acd"
UNDECIDED_COLOR = "#bdbdbd"
#: A point of a metric over time: (ts, realized, estimated, minimum).
Point = tuple[float, float | None, float | None, float | None]
_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "legend.frameon": False,
}
_SIZE = re.compile(r'\s(width|height)="[^"]*"')
#: An element id, or a reference to one, in matplotlib's SVG.
_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def to_svg(figure: Figure, name: str, label: str) -> Markup:
    """`figure` as an inline ``<svg>`` element with the accessible name `label`; its
    element ids (and the references to them) prefixed with `name`."""
    buffer = io.StringIO()
    with rc_context(_STYLE):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    svg = _REFERENCE.sub(lambda m: f"{m[1]}{name}-{m[2]}", text[text.index("<svg") :])
    head, rest = svg.split(">", 1)
    head = _SIZE.sub("", head)
    escaped = Markup.escape(label)
    return Markup(f'{head} role="img" aria-label="{escaped}"><title>{escaped}</title>{rest}')


def _figure(width: float, height: float) -> Figure:
    with rc_context(_STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def distribution(
    feature: str,
    kind: str,
    bins: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
) -> Markup:
    """Reference and current share of each bin (the PSI bins of the drift report):
    columns for numeric bins, rows for categories."""
    with rc_context(_STYLE):
        height = 2.6 if kind == "numeric" else max(1.8, 0.32 * len(bins) + 0.9)
        fig = _figure(5.2, height)
        ax = fig.subplots()
        at = np.arange(len(bins))
        width = 0.4
        if kind == "numeric":
            ax.bar(at - width / 2, reference, width, label="reference", color=REFERENCE_COLOR)
            ax.bar(at + width / 2, current, width, label="current", color=CURRENT_COLOR)
            ax.set_xticks(at, list(bins), rotation=35, ha="right", fontsize=7)
            ax.set_ylabel("share of rows")
        else:
            ax.barh(at - width / 2, reference, width, label="reference", color=REFERENCE_COLOR)
            ax.barh(at + width / 2, current, width, label="current", color=CURRENT_COLOR)
            ax.set_yticks(at, list(bins), fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel("share of rows")
        ax.legend(fontsize=8, loc="best")
        return to_svg(fig, f"dist-{feature}", f"{feature}: reference and current distribution")


def metrics(rows: Sequence[MetricRow]) -> Markup:
    """Realized, estimated and baseline value of each metric; the minimum as a tick."""
    with rc_context(_STYLE):
        fig = _figure(6.4, 2.8)
        ax = fig.subplots()
        at = np.arange(len(rows))
        width = 0.26
        series = (
            ("realized", CURRENT_COLOR, [r.realized for r in rows]),
            ("estimated", ESTIMATED_COLOR, [r.estimated for r in rows]),
            ("baseline", REFERENCE_COLOR, [r.baseline for r in rows]),
        )
        for offset, (label, color, values) in zip((-1, 0, 1), series, strict=True):
            heights = [np.nan if v is None else v for v in values]
            ax.bar(at + offset * width, heights, width, label=label, color=color)
        minimums = [np.nan if r.minimum is None else r.minimum for r in rows]
        ax.scatter(at, minimums, marker="_", s=900, color="black", label="minimum", zorder=3)
        ax.set_xticks(at, [r.metric for r in rows])
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
        return to_svg(fig, "metrics", "Model performance against baseline and minimum")


def associations_heatmap(
    matrix: Associations, title: str, name: str, outline: Sequence[tuple[str, str]] = ()
) -> Markup:
    """The association matrix as a heatmap (0 white to 1 dark); the pairs of
    `outline` framed."""
    with rc_context(_STYLE):
        n = len(matrix.features)
        fig = _figure(5.6, 5.0)
        ax = fig.subplots()
        mesh = ax.pcolormesh(np.ma.masked_invalid(matrix.values), cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(np.arange(n) + 0.5, matrix.features, rotation=90, fontsize=7)
        ax.set_yticks(np.arange(n) + 0.5, matrix.features, fontsize=7)
        ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.set_title(title)
        at = {f: i for i, f in enumerate(matrix.features)}
        for first, second in outline:
            for i, j in ((at[first], at[second]), (at[second], at[first])):
                ax.add_patch(
                    Rectangle((j, i), 1, 1, fill=False, edgecolor=DRIFT_COLOR, linewidth=1.6)
                )
        scale = fig.colorbar(mesh, ax=ax, shrink=0.7, label="association (0-1)")
        if scale.solids is not None:  # vector, like the rest: no embedded image
            scale.solids.set_rasterized(False)
        return to_svg(fig, name, title)


def target(shares: TargetShares) -> Markup:
    """Share predicted to churn and share that churned, reference against current."""
    with rc_context(_STYLE):
        fig = _figure(5.2, 2.4)
        ax = fig.subplots()
        groups = ("predicted to churn", "churned (labels)")
        reference = (shares.predicted_reference, shares.realized_reference)
        current = (shares.predicted_current, shares.realized_current)
        at = np.arange(len(groups))

        def heights(values: Sequence[float | None]) -> list[float]:
            return [np.nan if v is None else v for v in values]

        ax.bar(at - 0.2, heights(reference), 0.4, label="reference", color=REFERENCE_COLOR)
        ax.bar(at + 0.2, heights(current), 0.4, label="current", color=CURRENT_COLOR)
        ax.set_xticks(at, groups)
        ax.set_ylabel("share of customers")
        ax.legend(fontsize=8)
        return to_svg(fig, "target", "Target distribution: reference and current")


def _times(stamps: Sequence[float]) -> np.ndarray:
    """Unix seconds as local wall-clock times for a date axis."""
    return np.array([datetime.fromtimestamp(ts) for ts in stamps], dtype="datetime64[us]")


def drift_scores(runs: Sequence[DriftRun]) -> Markup:
    """The dataset drift score of each run with its threshold; drifted runs in red."""
    with rc_context(_STYLE):
        fig = _figure(7.0, 2.6)
        ax = fig.subplots()
        times = _times([r.ts for r in runs])
        scores = [np.nan if r.score is None else r.score for r in runs]
        ax.plot(times, scores, color=CURRENT_COLOR, marker="o", markersize=3, label="score")
        ax.step(
            times,
            [r.threshold for r in runs],
            where="post",
            color="black",
            linestyle="--",
            linewidth=1,
            label="threshold",
        )
        drifted = np.array([r.drifted is True for r in runs])
        if drifted.any():
            ax.scatter(
                times[drifted],
                np.asarray(scores)[drifted],
                color=DRIFT_COLOR,
                zorder=3,
                s=18,
                label="drift",
            )
        ax.set_ylim(0, max(1e-9, np.nanmax([*scores, *[r.threshold for r in runs]])) * 1.15)
        ax.set_ylabel("dataset drift score")
        ax.legend(fontsize=8, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
        fig.autofmt_xdate()
        return to_svg(fig, "drift-scores", "Dataset drift score over time")


def _spans(runs: Sequence[DriftRun]) -> list[tuple[float, float]]:
    """Each run's cell on the time axis: from its time to the next run's (the last
    run gets the median gap, or an hour when it is alone), in days for matplotlib."""
    days = [r.ts / 86400.0 for r in runs]
    gaps = np.diff(days)
    last = float(np.median(gaps)) if len(gaps) else 1.0 / 24.0
    widths = [*gaps.tolist(), last]
    return list(zip(days, widths, strict=True))


def decisions(runs: Sequence[DriftRun], features: Sequence[str]) -> Markup:
    """Per feature and run: drifted (red), not drifted (green), run undecided (grey);
    consecutive runs with the same state are drawn as one bar."""
    with rc_context(_STYLE):
        fig = _figure(7.0, max(2.0, 0.24 * len(features) + 1.0))
        ax = fig.subplots()
        spans = _spans(runs)
        colors = (OK_COLOR, DRIFT_COLOR, UNDECIDED_COLOR)
        for row, feature in enumerate(features):
            states = [2 if r.drifted is None else int(feature in r.drifted_columns) for r in runs]
            start = 0
            for i in range(1, len(runs) + 1):
                if i == len(runs) or states[i] != states[start]:
                    x0 = spans[start][0]
                    x1 = spans[i - 1][0] + spans[i - 1][1]
                    ax.broken_barh([(x0, x1 - x0)], (row - 0.4, 0.8), color=colors[states[start]])
                    start = i
        ax.set_yticks(np.arange(len(features)), list(features), fontsize=7)
        ax.set_ylim(len(features) - 0.5, -0.5)
        ax.xaxis_date()
        fig.autofmt_xdate()
        return to_svg(fig, "decisions", "Per-feature drift decisions over time")


def _column(points: Sequence[Point], k: int) -> list[float]:
    """Item `k` of each point, NaN where None (a gap in the line)."""
    column = []
    for point in points:
        value = point[k]
        column.append(np.nan if value is None else float(value))
    return column


def performance(series: Mapping[str, Sequence[Point]]) -> Markup:
    """One panel per metric: realized (solid), estimated (dashed), minimum (dotted)."""
    shown = [(metric, points) for metric, points in series.items() if points]
    with rc_context(_STYLE):
        fig = _figure(7.0, 1.3 * len(shown) + 0.6)
        axes = np.atleast_1d(fig.subplots(len(shown), 1, sharex=True))
        for ax, (metric, points) in zip(axes, shown, strict=True):
            times = _times([p[0] for p in points])
            ax.plot(times, _column(points, 1), color=CURRENT_COLOR, label="realized")
            ax.plot(
                times, _column(points, 2), color=ESTIMATED_COLOR, linestyle="--", label="estimated"
            )
            ax.plot(
                times,
                _column(points, 3),
                color="black",
                linestyle=":",
                linewidth=1,
                label="minimum",
            )
            ax.set_ylabel(metric, fontsize=8)
            ax.set_ylim(0, 1.02)
        axes[0].legend(fontsize=8, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
        fig.autofmt_xdate()
        return to_svg(fig, "performance", "Model performance over time")
