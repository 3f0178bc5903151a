"""Render the reliability suite's results as the table in docs/reliability.md.

    python -m tests.faults.report RESULTS.jsonl docs/reliability.md

RESULTS.jsonl is what the ``reliability`` fixture (tests/faults/conftest.py) appends
when ``CHURN_RELIABILITY_RESULTS`` names it: one JSON object per line with ``case``,
``category``, ``expectation``, ``measured`` and ``test``. ``make reliability`` runs the
suite into a fresh file and then this.

When the output file exists and holds the markers ``<!-- reliability:begin -->`` and
``<!-- reliability:end -->``, only the text between them is replaced, so the prose
around the table is kept; otherwise the whole file is written from a template. A case
recorded twice (the same test and case) keeps its last record. Exit status 2, with one
line saying why, for a missing, empty or malformed results file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BEGIN = "<!-- reliability:begin -->"
END = "<!-- reliability:end -->"
FIELDS = ("case", "category", "expectation", "measured", "test")
#: Table order of the categories; others follow, alphabetically.
CATEGORIES = ("fault", "load", "bad input", "security")

TEMPLATE = """# Reliability

What the system does when things go wrong, measured: each row is one case of the
fault, load, bad-input and security suites in `tests/faults/`, with what we expect and
what the last run measured. The table is generated, never edited by hand:

```
make reliability
```

runs `pytest tests/faults` with `CHURN_RELIABILITY_RESULTS` pointing at a fresh file
(every test records its case after its assertions passed, so a failing case has no
row) and renders it with `python -m tests.faults.report RESULTS.jsonl
docs/reliability.md`. Timings are those of the machine that ran it; they inform, the
tests never assert them (`benchmarks/` holds the speed comparisons).

{begin}
{end}
"""


class ReportError(Exception):
    """The results file cannot be rendered; the message says why."""


def read_results(path: Path) -> list[dict[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ReportError(f"cannot read {path}: {err.strerror}") from None
    records: dict[tuple[str, str], dict[str, str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data: Any = json.loads(line)
        except ValueError as err:
            raise ReportError(f"{path}:{number}: not JSON: {err}") from None
        if not isinstance(data, dict) or any(not isinstance(data.get(f), str) for f in FIELDS):
            raise ReportError(f"{path}:{number}: expected an object with {', '.join(FIELDS)}")
        key = (data["test"], data["case"])
        records.pop(key, None)  # a repeat moves to its latest position
        records[key] = {f: data[f] for f in FIELDS}
    if not records:
        raise ReportError(f"{path} holds no results (did the suite run with it set?)")
    return list(records.values())


def _cell(text: str) -> str:
    """One table cell: whitespace collapsed, pipes escaped, control characters shown
    as escapes (a measured error message may quote raw bytes)."""
    shown = "".join(
        f"\\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" and not ch.isspace() else ch
        for ch in text
    )
    return " ".join(shown.split()).replace("|", "\\|")


def _test_cell(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    return f"`{Path(path).name}::{name}`" if name else f"`{nodeid}`"


def _order(category: str) -> tuple[int, str]:
    return (CATEGORIES.index(category), "") if category in CATEGORIES else (99, category)


def render_table(records: Sequence[dict[str, str]]) -> str:
    ordered = sorted(enumerate(records), key=lambda item: (_order(item[1]["category"]), item[0]))
    counts: dict[str, int] = {}
    for record in records:
        counts[record["category"]] = counts.get(record["category"], 0) + 1
    summary = ", ".join(f"{counts[c]} {c}" for c in sorted(counts, key=_order))
    lines = [
        f"{len(records)} cases ({summary}); run of "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} on Python "
        f"{platform.python_version()}, {os.cpu_count()} CPU cores.",
        "",
        "| case | category | expectation | measured | test |",
        "| --- | --- | --- | --- | --- |",
    ]
    for _, r in ordered:
        lines.append(
            f"| {_cell(r['case'])} | {_cell(r['category'])} | {_cell(r['expectation'])} | "
            f"{_cell(r['measured'])} | {_test_cell(r['test'])} |"
        )
    return "\n".join(lines)


def render(records: Sequence[dict[str, str]], existing: str | None) -> str:
    """The document: `existing` with its marked section replaced, or the template."""
    table = render_table(records)
    if existing is not None and BEGIN in existing and END in existing:
        head, _, rest = existing.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return f"{head}{BEGIN}\n{table}\n{END}{tail}"
    return TEMPLATE.format(begin=BEGIN, end=END).replace(
        f"{BEGIN}\n{END}", f"{BEGIN}\n{table}\n{END}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.report",
        description="Render the reliability suite's JSON lines as docs/reliability.md.",
    )
    parser.add_argument("results", type=Path, help="the JSON lines file the suite wrote")
    parser.add_argument("output", type=Path, help="the markdown file to write")
    args = parser.parse_args(argv)
    try:
        records = read_results(args.results)
    except ReportError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    existing = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    tmp.write_text(render(records, existing), encoding="utf-8")
    tmp.replace(args.output)
    print(f"{args.output}: {len(records)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
