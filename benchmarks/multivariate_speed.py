"""Speed of the multivariate drift check beside the univariate engine, on one window.

    python benchmarks/multivariate_speed.py                    # 100,000-row windows
    python benchmarks/multivariate_speed.py --rows 1000000 --reference-rows 100000

Data: the Telco-like generator (19 features: 3 numeric, 16 categorical), a ``none``
reference and a ``mix`` window (the joint-only drift). Measured in the same process,
best of ``--repeat`` runs, wall-clock and CPU seconds:

* fit: the multivariate profile (encoder, principal components, cross-fitted reference
  errors) and, for comparison, the univariate profile of the same reference;
* check: one window through :func:`assess_multivariate` (encoding, reconstruction
  errors, the domain classifier on at most ``domain_classifier_max_rows`` rows), and
  the univariate engine (:func:`exporter.stats.decision.assess`) on the same window.

The issue's budget: the check at most 2 s and the fit at most 10 s on 2 cores, for
100,000-row windows. The ratio column is the multivariate time over the univariate one.
Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exporter.config import MonitoringConfig
from exporter.data.synthetic import generate_customers
from exporter.stats import drift
from exporter.stats.decision import assess
from exporter.stats.multivariate import assess_multivariate, fit_multivariate


def best_of(repeat: int, func: Callable[[], Any]) -> tuple[float, float, Any]:
    """(best wall-clock seconds, CPU seconds of that run, the last result)."""
    best = (float("inf"), float("inf"))
    result = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = func()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best[0], best[1], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="window rows")
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    config = MonitoringConfig()
    cfg, mv, features = (
        config.data_drift_monitoring,
        config.data_drift_monitoring.multivariate,
        config.features,
    )
    reference = generate_customers(args.reference_rows, seed=0)
    window = generate_customers(args.rows, seed=1, scenario="mix", id_offset=10**8)
    print(
        f"reference {len(reference):,} rows, window {len(window):,} rows, "
        f"{len(features.numeric) + len(features.categorical)} features, {os.cpu_count()} cores"
    )

    uni_fit = best_of(
        args.repeat,
        lambda: drift.build_profile(
            reference, features.numeric, features.categorical, psi_bins=cfg.psi_bins
        ),
    )
    mv_fit = best_of(
        args.repeat,
        lambda: fit_multivariate(
            reference,
            features.numeric,
            features.categorical,
            variance_share=mv.variance_share,
            unusual_rate=mv.unusual_rate,
        ),
    )
    uni_check = best_of(
        args.repeat,
        lambda: assess(
            uni_fit[2],
            window,
            drift_threshold=cfg.drift_threshold,
            min_window_rows=cfg.min_window_rows,
        ),
    )
    mv_check = best_of(
        args.repeat,
        lambda: assess_multivariate(
            mv_fit[2],
            window,
            min_window_rows=cfg.min_window_rows,
            false_alarm_rate=mv.false_alarm_rate,
            max_rows=mv.domain_classifier_max_rows,
        ),
    )
    print(
        f"{'step':<8} {'univariate s':>13} {'multivariate s':>15} {'CPU s':>8} {'ratio':>7} budget"
    )
    for step, uni, multi, budget in (
        ("fit", uni_fit, mv_fit, 10.0),
        ("check", uni_check, mv_check, 2.0),
    ):
        verdict = "within" if multi[0] <= budget else "OVER"
        print(
            f"{step:<8} {uni[0]:>13.3f} {multi[0]:>15.3f} {multi[1]:>8.3f} "
            f"{multi[0] / uni[0]:>7.1f} {verdict} {budget:g} s"
        )
    result = mv_check[2]
    print(
        f"mix window: per-feature score {uni_check[2].score:.3f} (drifted {uni_check[2].drifted});"
        f" reconstruction {result.reconstruction_error:.3f} > {result.reconstruction_threshold:.3f}"
        f" ; domain AUC {result.domain_auc:.3f} > {result.domain_auc_threshold:.3f};"
        f" multivariate drifted {result.drifted}"
    )


if __name__ == "__main__":
    main()
