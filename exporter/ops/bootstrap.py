"""`churn-monitor setup`: folders, databases and, on a fresh clone, synthetic data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from exporter.config import MonitoringConfig
from exporter.data.dburl import safe_url
from exporter.data.history import open_history
from exporter.data.predlog import create_tables, make_engine
from exporter.data.synthetic import generate_customers
from exporter.monitor.reports import REPORT_KINDS, report_dir

#: Sizes and seeds of the embedded default data.
REFERENCE_ROWS = 5000
DEMO_ROWS = 2000
DEMO_SCENARIO = "sudden"
DEMO_CURRENT = Path("data/demo/current.csv")


def setup(config: MonitoringConfig, *, skip_db: bool = False) -> Iterator[str]:
    """Create what `run` needs; yield one line per action. Idempotent."""
    for kind in REPORT_KINDS:
        folder = report_dir(config.reports.dir, kind)
        folder.mkdir(parents=True, exist_ok=True)
        yield f"folder {folder}"
    Path("logs").mkdir(exist_ok=True)

    if not skip_db:
        source = config.data.current
        if source.kind == "sql":
            engine = make_engine(source.url)
            create_tables(engine)
            engine.dispose()
            yield f"prediction log {safe_url(source.url)}"

        if config.history.enabled:
            open_history(config.history.url).dispose()
            yield f"monitoring history {safe_url(config.history.url)}"

    reference = Path(config.data.reference_path)
    if not reference.exists():
        reference.parent.mkdir(parents=True, exist_ok=True)
        frame = generate_customers(REFERENCE_ROWS, seed=0, scenario="none")
        if reference.suffix == ".parquet":
            frame.to_parquet(reference, index=False)
        else:
            frame.to_csv(reference, index=False)
        yield f"synthetic reference {reference} ({REFERENCE_ROWS} rows, no model scores yet)"
    if not DEMO_CURRENT.exists():
        DEMO_CURRENT.parent.mkdir(parents=True, exist_ok=True)
        demo = generate_customers(DEMO_ROWS, seed=1, scenario=DEMO_SCENARIO, id_offset=10**6)
        demo.to_csv(DEMO_CURRENT, index=False)
        yield f"demo current window {DEMO_CURRENT} ({DEMO_ROWS} rows, scenario {DEMO_SCENARIO})"
