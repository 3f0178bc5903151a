"""Write the provisioned dashboards: ``python -m grafana.generate [--check]``.

Each module in ``grafana/dashboards_src`` builds one dashboard with the
grafana-foundation-sdk builders; this script writes them to
``grafana/dashboards/<uid>.json`` (sorted keys, two-space indent), the files Grafana
provisions. The output depends only on the sources, so regenerating an unchanged tree
rewrites identical files; ``--check`` writes nothing and exits 1 when a checked-in
file differs from what the sources produce (or is missing, or is not produced any more).

``python grafana/generate.py`` works too (from any directory).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grafana.dashboards_src import (
    data_drift,
    feature_distributions,
    model_comparison,
    model_performance,
    optuna,
    service,
)
from grafana.dashboards_src.common import render

GRAFANA_DIR = Path(__file__).resolve().parent
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"

#: Every dashboard, in the order docs/dashboards.md describes them.
BUILDERS: tuple[Callable[[], dict[str, Any]], ...] = (
    data_drift.build,
    model_performance.build,
    model_comparison.build,
    feature_distributions.build,
    optuna.build,
    service.build,
)


def generate() -> dict[str, str]:
    """File name -> file text of every dashboard."""
    files: dict[str, str] = {}
    for build in BUILDERS:
        data = build()
        name = f"{data['uid']}.json"
        if name in files:
            raise ValueError(f"two dashboards share the uid {data['uid']!r}")
        files[name] = render(data)
    return files


def stale_files(files: dict[str, str], directory: Path | None = None) -> list[str]:
    """Names of the checked-in files that differ from ``files`` (or are extra/missing)."""
    directory = DASHBOARDS_DIR if directory is None else directory
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    stale = [
        name
        for name, text in files.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    stale.extend(sorted(present - files.keys()))
    return sorted(stale)


def write(files: dict[str, str], directory: Path | None = None) -> list[Path]:
    """Write ``files`` and delete other ``*.json`` files in ``directory``."""
    directory = DASHBOARDS_DIR if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    for extra in sorted({p.name for p in directory.glob("*.json")} - files.keys()):
        (directory / extra).unlink()
    written = []
    for name, text in sorted(files.items()):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grafana.generate",
        description="Generate grafana/dashboards/*.json from grafana/dashboards_src.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the checked-in dashboards are not up to date",
    )
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        stale = stale_files(files)
        if stale:
            print(
                "out of date: " + ", ".join(stale) + " (run: python -m grafana.generate)",
                file=sys.stderr,
            )
            return 1
        print(f"{len(files)} dashboards up to date")
        return 0
    for path in write(files):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
