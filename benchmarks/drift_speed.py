"""Speed and memory of the drift engine against scipy and against a plain sort.

    python benchmarks/drift_speed.py                      # 1,000,000 x 1,000,000 x 20
    python benchmarks/drift_speed.py --rows 100000 --features 5

For every numeric feature the engine computes the KS statistic and p-value, the PSI
(reference-quantile bins) and the Wasserstein-1 distance over the reference standard
deviation, from a reference profile built once. Measured in the same process:

* engine: building the profiles (once), then comparing one current window, on a thread
  pool of ``--workers`` (numpy releases the GIL) and on one thread;
* scipy baseline, per column: ``scipy.stats.ks_2samp``, ``scipy.stats.
  wasserstein_distance`` / ``np.std``, and a numpy PSI (``np.quantile`` edges,
  ``np.histogram`` counts);
* sort baseline: ``np.sort`` of each current column once;
* peak memory: the process's maximum RSS, and the peak of numpy/Python allocations
  (tracemalloc) during a separate, untimed comparison run.

Wall-clock and CPU time are both reported: on a shared machine the CPU-time ratios (one
thread) are the stable ones, the wall-clock ratios show what the thread pool buys.

The features mix distributions (normal, heavy-tailed, skewed, integer with many ties,
rounded prices, bimodal) and drift sizes (none, small, large). Small drifts at this size
put the KS p-value in the band where scipy sums the exact Smirnov series (``n D^2``
between 2.2 and 370), the slowest case for both. Timings are best of ``--repeat`` runs;
the results of engine and scipy are checked against each other. Not part of the tests.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exporter.stats import drift

KINDS = ("normal", "lognormal", "tenure", "price", "uniform", "cauchy", "bimodal")
#: Shift of the current window in reference standard deviations (0: no drift).
SHIFTS = (0.0, 0.0, 0.01, 0.2, 0.0, 0.03, 1.0)


def column(kind: str, n: int, rng: np.random.Generator, shift: float) -> np.ndarray:
    if kind == "normal":
        x, sd = rng.normal(size=n), 1.0
    elif kind == "lognormal":
        x, sd = rng.lognormal(0.0, 1.0, n), 2.16
    elif kind == "tenure":
        x, sd = rng.integers(0, 73, n).astype(float), 21.1
        return np.clip(np.round(x + shift * sd), 0, 72)
    elif kind == "price":
        x, sd = np.round(rng.uniform(18, 119, n) * 20) / 20, 29.2
        return np.round((x + shift * sd) * 20) / 20
    elif kind == "uniform":
        x, sd = rng.random(n), 0.29
    elif kind == "cauchy":
        x, sd = rng.standard_cauchy(n), 1.0
    else:
        x, sd = np.where(rng.random(n) < 0.4, rng.normal(20, 2, n), rng.normal(80, 10, n)), 30.0
    return x + shift * sd


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best wall-clock and best CPU time (all threads of the process) of ``repeat`` runs."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


def numpy_psi(ref: np.ndarray, cur: np.ndarray, bins: int) -> float:
    edges = np.unique(np.quantile(ref, np.arange(1, bins) / bins, method="inverted_cdf"))
    edges = edges[edges < ref.max()]
    full = np.concatenate(([-np.inf], edges, [np.inf]))
    a = np.histogram(-ref, bins=-full[::-1])[0][::-1] / ref.size
    b = np.histogram(-cur, bins=-full[::-1])[0][::-1] / cur.size
    eps = drift.PSI_EPSILON
    a, b = (a + eps) / (1 + eps * a.size), (b + eps) / (1 + eps * b.size)
    return float(np.sum((b - a) * np.log(b / a)))


def scipy_column(ref: np.ndarray, cur: np.ndarray, bins: int) -> tuple[float, float, float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ks = stats.ks_2samp(ref, cur)
    w = stats.wasserstein_distance(ref, cur) / np.std(ref)
    return float(ks.statistic), float(ks.pvalue), float(w), numpy_psi(ref, cur, bins)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side")
    parser.add_argument("--reference-rows", type=int, help="reference rows (default --rows)")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="engine thread pool size")
    parser.add_argument("--bins", type=int, default=drift.DEFAULT_PSI_BINS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-feature", action="store_true", help="print a row per feature")
    args = parser.parse_args(argv)
    n_ref = args.reference_rows or args.rows
    rng = np.random.default_rng(args.seed)

    kinds = [KINDS[i % len(KINDS)] for i in range(args.features)]
    shifts = [SHIFTS[i % len(SHIFTS)] for i in range(args.features)]
    refs = [column(kinds[i], n_ref, rng, 0.0) for i in range(args.features)]
    curs = [column(kinds[i], args.rows, rng, shifts[i]) for i in range(args.features)]
    print(
        f"drift_speed: reference {n_ref:,} x current {args.rows:,} rows x {args.features} "
        f"numeric features, {args.bins} PSI bins, {args.workers} workers, best of {args.repeat}"
    )

    c0, t0 = time.process_time(), time.perf_counter()
    profiles = [drift.profile_numeric(r, args.bins) for r in refs]
    profile_s, profile_cpu = time.perf_counter() - t0, time.process_time() - c0

    def engine(workers: int) -> list[drift.NumericStats]:
        if workers <= 1:
            return [drift.numeric_stats(p, c) for p, c in zip(profiles, curs, strict=True)]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(drift.numeric_stats, profiles, curs))

    engine_s, engine_cpu, ours = best(lambda: engine(args.workers), args.repeat)
    engine1_s, engine1_cpu, _ = best(lambda: engine(1), args.repeat)
    sort_s, sort_cpu, _ = best(lambda: [np.sort(c) for c in curs], args.repeat)

    scipy_s, scipy_cpu, theirs, scipy_each = 0.0, 0.0, [], []
    for r, c in zip(refs, curs, strict=True):  # once per column: it is slow
        c0, t0 = time.process_time(), time.perf_counter()
        theirs.append(scipy_column(r, c, args.bins))
        scipy_each.append(time.perf_counter() - t0)
        scipy_s += scipy_each[-1]
        scipy_cpu += time.process_time() - c0

    if args.per_feature:
        print(f"{'feature':<12} {'shift':>6} {'engine':>9} {'scipy':>9} {'sort':>9}  KS p")
        for i, (p, c) in enumerate(zip(profiles, curs, strict=True)):
            one, _, s = best(lambda p=p, c=c: drift.numeric_stats(p, c), args.repeat)
            srt, _, _ = best(lambda c=c: np.sort(c), args.repeat)
            pval = s.ks.pvalue if s.ks is not None else float("nan")
            print(
                f"{kinds[i]:<12} {shifts[i]:>6} {one * 1e3:7.1f}ms {scipy_each[i] * 1e3:7.1f}ms "
                f"{srt * 1e3:7.1f}ms  {pval:.2g}"
            )

    worst = [0.0, 0.0, 0.0, 0.0]
    for s, (d, p, w, psi) in zip(ours, theirs, strict=True):
        assert s.ks is not None and s.wasserstein is not None and s.psi is not None
        worst[0] = max(worst[0], abs(s.ks.statistic - d))
        worst[1] = max(worst[1], abs(s.ks.pvalue - p) / p if p > 1e-300 else 0.0)
        worst[2] = max(worst[2], abs(s.wasserstein - w) / w if w else abs(s.wasserstein))
        worst[3] = max(worst[3], abs(s.psi - psi) / psi if psi else abs(s.psi))

    gc.collect()
    tracemalloc.start()
    engine(args.workers)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    per = args.features
    print(f"{'':34} {'wall':>9} {'cpu':>9} {'wall/feature':>14}")
    rows = [
        ("profile build (once, 1 thread)", profile_s, profile_cpu),
        (f"engine, {args.workers} threads", engine_s, engine_cpu),
        ("engine, 1 thread", engine1_s, engine1_cpu),
        ("scipy + numpy PSI, 1 thread", scipy_s, scipy_cpu),
        ("np.sort of each current column", sort_s, sort_cpu),
    ]
    for label, secs, cpu in rows:
        print(f"{label:<34} {secs:8.3f}s {cpu:8.3f}s {secs / per * 1e3:11.1f} ms")
    print(
        f"speed-up vs scipy: {scipy_s / engine_s:6.1f}x wall with {args.workers} threads; "
        f"{scipy_cpu / engine1_cpu:.1f}x in CPU time on 1 thread"
    )
    print(
        f"engine / sort:     {engine_s / sort_s:6.2f}x wall with {args.workers} threads; "
        f"{engine1_cpu / sort_cpu:.2f}x in CPU time on 1 thread"
    )
    print(f"load average during the run: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(
        f"peak memory: max RSS {rss_mb:,.0f} MB; comparison run allocations peak "
        f"{traced_peak / 2**20:,.0f} MB (data {sum(c.nbytes for c in curs + refs) / 2**20:,.0f} MB,"
        f" profiles {sum(_profile_bytes(p) for p in profiles) / 2**20:,.0f} MB)"
    )
    print(
        f"agreement with scipy (worst): KS D {worst[0]:.1e} abs, p {worst[1]:.1e} rel, "
        f"W {worst[2]:.1e} rel, PSI {worst[3]:.1e} rel"
    )
    return 0


def _profile_bytes(p: drift.NumericProfile) -> int:
    seen: dict[int, int] = {}
    for a in (p.sorted_values, p._u_pad, p._cum_pad):
        base = a.base if a.base is not None else a
        seen[id(base)] = base.nbytes
    return sum(seen.values())


if __name__ == "__main__":
    raise SystemExit(main())
