"""Load benchmark of the prediction API over loopback.

Measures, against a running API (``--url``) or one this script starts (``--config``):

* **closed loop**: ``--clients`` connections each sending single ``POST /predict``
  requests back to back for ``--seconds``: throughput and p50/p99 latency;
* **open loop**: single predictions at a fixed ``--rate`` per second for
  ``--seconds`` (latency counted from each request's scheduled time, so a stall is not
  hidden by the client waiting for it): achieved rate and p50/p99;
* **batch**: ``--batches`` sequential ``POST /predict/batch`` of ``--batch-size``
  customers: p50/p99 latency;
* **baseline**, in this process on the same model: one ``predict_proba`` call for one
  row and for a batch, i.e. the throughput a server that scores each request on its
  own could reach at best. The API figures are reported as ratios against it;
* **shadow scoring** (``--config`` only, unless ``--no-shadow``): the open loop at
  ``--rate`` against two APIs started from the config, one with ``api.shadow_scoring``
  off and one with it on (its challenger, ``model.challenger_alias``, must exist), in
  ``--shadow-rounds`` alternating rounds of ``--seconds`` with the same requests: p99
  latency of each and their ratio (on / off).

With ``--config``, the APIs this script starts log to fresh SQLite files in a
temporary folder (the configured prediction log is left alone). The shadow comparison
runs first, on both fresh logs (a log's size weighs on every insert), then the API
with shadow scoring off is stopped and the other figures are measured on the one with
it on.

The client is a minimal keep-alive HTTP/1.1 client on asyncio streams, so that on a
small machine the load generator takes as little CPU from the server as possible.

Targets (issue 5): >= 300 single predictions/s at p99 < 50 ms; a batch of 1,000 in
< 100 ms. Run on demand, never part of the test suite::

    .venv/bin/python benchmarks/api_load.py --config configs/monitoring/monitoring_config.yaml
    .venv/bin/python benchmarks/api_load.py --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporter.data import synthetic  # noqa: E402

TARGET_RATE = 300.0
TARGET_P99 = 0.050
TARGET_BATCH = 0.100


def _bodies(n: int, seed: int) -> list[bytes]:
    frame = synthetic.generate_customers(n, seed=seed, id_offset=50_000_000 + seed * 100_000)
    out = []
    for record in frame.drop(columns=["Churn"]).to_dict("records"):
        body = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}
        if body["TotalCharges"] != body["TotalCharges"]:
            body["TotalCharges"] = None
        out.append(body)
    return [json.dumps(b).encode() for b in out]


class Connection:
    """One keep-alive HTTP/1.1 connection (Content-Length bodies only)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        payload = await self.reader.readexactly(length)
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def closed_loop(
    host: str, port: int | Sequence[int], bodies: list[bytes], clients: int, seconds: float
) -> dict[str, Any]:
    """`clients` connections sending single predictions back to back for `seconds`;
    with several ports (replicas), client k on ``port[k % len(port)]``."""
    ports = [port] if isinstance(port, int) else list(port)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        conn = Connection(host, ports[k % len(ports)])
        await conn.open()
        i = k
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                status, _ = await conn.post("/predict", bodies[i % len(bodies)])
                latencies.append(time.perf_counter() - start)
                statuses[status] = statuses.get(status, 0) + 1
                i += clients
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(latencies),
        "rate": len(latencies) / elapsed,
        "p50": _pct(latencies, 0.50),
        "p99": _pct(latencies, 0.99),
        "statuses": statuses,
    }


async def open_loop(
    host: str, port: int, bodies: list[bytes], rate: float, seconds: float, pool: int = 64
) -> dict[str, Any]:
    """Single predictions at `rate` per second for `seconds`: the figures and, under
    ``latencies``, every request's latency from its scheduled time."""
    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(pool):
        conn = Connection(host, port)
        await conn.open()
        idle.put_nowait(conn)
    start = time.perf_counter()

    async def one(i: int) -> None:
        scheduled = start + i / rate
        conn = await idle.get()
        try:
            status, _ = await conn.post("/predict", bodies[i % len(bodies)])
        finally:
            idle.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1

    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not idle.empty():
        await idle.get_nowait().close()
    return {
        "offered_rate": rate,
        "requests": total,
        "rate": total / elapsed,
        "p50": _pct(latencies, 0.50),
        "p99": _pct(latencies, 0.99),
        "statuses": statuses,
        "latencies": latencies,
    }


async def batches(
    host: str, port: int, bodies: list[bytes], size: int, count: int
) -> dict[str, Any]:
    conn = Connection(host, port)
    await conn.open()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    try:
        for k in range(count + 1):
            chunk = [bodies[(k * size + j) % len(bodies)] for j in range(size)]
            payload = b'{"customers": [' + b",".join(chunk) + b"]}"
            start = time.perf_counter()
            status, _ = await conn.post("/predict/batch", payload)
            if k:  # the first one warms up
                latencies.append(time.perf_counter() - start)
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        await conn.close()
    return {
        "size": size,
        "requests": count,
        "p50": _pct(latencies, 0.50),
        "p99": _pct(latencies, 0.99),
        "max": max(latencies),
        "statuses": statuses,
    }


def baseline(config_path: str | None, size: int) -> dict[str, float] | None:
    """Seconds per scoring call in this process, on the champion the API serves:
    ``predict_proba`` with the default OpenMP threads, with one thread, and the API's
    verified fast path, each for one row and for `size` rows."""
    if config_path is None:
        return None
    from threadpoolctl import threadpool_limits

    from exporter.api.champion import positive_column
    from exporter.api.fastpath import compile_fast_path
    from exporter.config import load_config
    from exporter.domain import schema
    from exporter.model import modeling
    from exporter.model.registry import load_champion

    loaded = load_champion(load_config(config_path))
    model = loaded.model
    frame = modeling.prepare_features(
        synthetic.generate_customers(size, seed=99).drop(columns=["Churn"])
    )
    columns = {name: frame[name].tolist() for name in schema.FEATURES}
    one = {name: values[:1] for name, values in columns.items()}
    fast = compile_fast_path(model)
    column = positive_column(model)

    def per_call(call: Any, runs: int) -> float:
        call()
        start = time.perf_counter()
        for _ in range(runs):
            call()
        return (time.perf_counter() - start) / runs

    out = {
        "predict_proba_1_row": per_call(lambda: model.predict_proba(frame.iloc[:1]), 20),
        f"predict_proba_{size}_rows": per_call(lambda: model.predict_proba(frame), 5),
    }
    with threadpool_limits(limits=1, user_api="openmp"):
        out["predict_proba_omp1_1_row"] = per_call(lambda: model.predict_proba(frame.iloc[:1]), 20)
        out[f"predict_proba_omp1_{size}_rows"] = per_call(lambda: model.predict_proba(frame), 5)
        if fast is not None:
            assert abs(fast(one, 1)[0] - model.predict_proba(frame.iloc[:1])[0, column]) < 1e-9
            out["fast_path_1_row"] = per_call(lambda: fast(one, 1), 50)
            out[f"fast_path_{size}_rows"] = per_call(lambda: fast(columns, size), 5)
    return out


def _health(url: str) -> dict[str, Any] | None:
    """The /health body when it answers 200, else None."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            if response.status == 200:
                body: dict[str, Any] = json.loads(response.read())
                return body
    except OSError:
        pass
    return None


def _wait_healthy(url: str, timeout: float, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the API exited with status {process.returncode}")
        if _health(url) is not None:
            return
        time.sleep(0.25)
    raise SystemExit(f"{url}/health did not answer 200 within {timeout}s")


def _wait_challenger(url: str, timeout: float) -> str | None:
    """The challenger version the API shadow-scores with, once loaded (None: none
    within `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = (_health(url) or {}).get("challenger_version")
        if version is not None:
            return str(version)
        time.sleep(0.5)
    return None


def _derived_config(config: str, folder: Path, shadow: bool) -> str:
    """A copy of `config` with ``api.shadow_scoring`` set to `shadow` and the prediction
    log in `folder`; its path."""
    raw = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    mode = "on" if shadow else "off"
    raw.setdefault("api", {})["shadow_scoring"] = shadow
    current = raw.setdefault("data", {}).setdefault("current", {})
    current["url"] = f"sqlite:///{folder / f'predictions-shadow-{mode}.db'}"
    path = folder / f"config-shadow-{mode}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


def shadow_comparison(
    targets: dict[str, tuple[str, int]],
    bodies: list[bytes],
    rate: float,
    seconds: float,
    rounds: int,
) -> dict[str, Any]:
    """The open loop at `rate` against the shadow-off and shadow-on APIs, alternating
    (off, on, then on, off, ...) for `rounds` rounds of `seconds` each with the same
    requests; p99 of all latencies of each and the ratio on / off."""
    latencies: dict[str, list[float]] = {mode: [] for mode in targets}
    statuses: dict[str, dict[int, int]] = {mode: {} for mode in targets}
    for host, port in targets.values():
        asyncio.run(closed_loop(host, port, bodies, 4, 1.0))  # warm-up
    for k in range(rounds):
        for mode in ("off", "on") if k % 2 == 0 else ("on", "off"):
            host, port = targets[mode]
            r = asyncio.run(open_loop(host, port, bodies, rate, seconds))
            latencies[mode].extend(r["latencies"])
            for status, count in r["statuses"].items():
                statuses[mode][status] = statuses[mode].get(status, 0) + count
    out: dict[str, Any] = {"rate": rate, "seconds": seconds * rounds}
    for mode in targets:
        out[mode] = {
            "requests": len(latencies[mode]),
            "p50": _pct(latencies[mode], 0.50),
            "p99": _pct(latencies[mode], 0.99),
            "statuses": statuses[mode],
        }
    out["p99_ratio"] = out["on"]["p99"] / out["off"]["p99"]
    return out


def _start(config: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    code = (
        "import sys\n"
        "from exporter.api import serve_api\n"
        "from exporter.config import load_config\n"
        "serve_api(load_config(sys.argv[1]), '127.0.0.1', int(sys.argv[2]))\n"
    )
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the server
    return subprocess.Popen(
        [sys.executable, "-c", code, config, str(port)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(server: subprocess.Popen[bytes]) -> None:
    os.kill(server.pid, signal.SIGTERM)
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="benchmark a running API at this base URL")
    where.add_argument("--config", help="start an API with this config on --port")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rate", type=float, default=TARGET_RATE)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--no-shadow",
        action="store_true",
        help="skip the shadow-scoring comparison (starts one API instead of two)",
    )
    parser.add_argument("--shadow-rounds", type=int, default=4)
    args = parser.parse_args(argv)
    # MLflow's "Downloading artifacts" bar (loading the champion here and in the API
    # started below, which inherits the environment) would garble the figures.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    process = None
    shadow_off = None
    url = args.url
    folder = tempfile.TemporaryDirectory(prefix="api_load-")
    if args.config:
        url = f"http://127.0.0.1:{args.port}"
        on = _derived_config(args.config, Path(folder.name), shadow=True)
        process = _start(on, args.port, Path(f"/tmp/api_load_{args.port}.log"))
        if not args.no_shadow:
            off = _derived_config(args.config, Path(folder.name), shadow=False)
            shadow_off = _start(off, args.port + 1, Path(f"/tmp/api_load_{args.port + 1}.log"))
    try:
        _wait_healthy(url.rstrip("/"), 90, process)
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        bodies = _bodies(4000, seed=1)
        print(f"API at {url}; {os.cpu_count()} CPUs")
        results: dict[str, Any] = {"closed": [], "open": None, "batch": None}
        if shadow_off is not None:
            off_port = args.port + 1
            _wait_healthy(f"http://127.0.0.1:{off_port}", 90, shadow_off)
            version = _wait_challenger(url.rstrip("/"), 90)
            if version is None:
                print(
                    "shadow scoring: no challenger loaded at model.challenger_alias within "
                    "90 s (see /tmp/api_load_*.log); comparison skipped"
                )
            else:
                targets = {"off": ("127.0.0.1", off_port), "on": (host, port)}
                r = shadow_comparison(targets, bodies, args.rate, args.seconds, args.shadow_rounds)
                r["challenger_version"] = version
                results["shadow"] = r
                print(
                    f"shadow scoring (challenger v{version}), open loop at {args.rate:.0f}/s, "
                    f"{args.shadow_rounds} alternating rounds of {args.seconds:.0f} s each:"
                )
                for mode in ("off", "on"):
                    m = r[mode]
                    print(
                        f"  shadow {mode:3s}: {m['requests']} requests, p50 {_ms(m['p50'])}, "
                        f"p99 {_ms(m['p99'])}, statuses {m['statuses']}"
                    )
                print(f"  p99 ratio on / off: {r['p99_ratio']:.2f}")
            _stop(shadow_off)
            shadow_off = None
        # Warm-up.
        asyncio.run(closed_loop(host, port, bodies, 4, 1.0))
        for clients in args.clients:
            r = asyncio.run(closed_loop(host, port, bodies, clients, args.seconds))
            results["closed"].append(r)
            print(
                f"closed loop, {clients:3d} clients: {r['rate']:7.1f} predictions/s, "
                f"p50 {_ms(r['p50'])}, p99 {_ms(r['p99'])}, statuses {r['statuses']}"
            )
        r = asyncio.run(open_loop(host, port, bodies, args.rate, args.seconds))
        results["open"] = r
        ok = r["rate"] >= 0.98 * args.rate and r["p99"] < TARGET_P99
        print(
            f"open loop at {args.rate:.0f}/s: achieved {r['rate']:.1f}/s, "
            f"p50 {_ms(r['p50'])}, p99 {_ms(r['p99'])}, statuses {r['statuses']} "
            f"[target p99 < {_ms(TARGET_P99)}: {'met' if ok else 'MISSED'}]"
        )
        big = _bodies(args.batch_size, seed=2)
        r = asyncio.run(batches(host, port, big, args.batch_size, args.batches))
        results["batch"] = r
        print(
            f"batch of {args.batch_size}: p50 {_ms(r['p50'])}, p99 {_ms(r['p99'])}, "
            f"max {_ms(r['max'])}, statuses {r['statuses']} "
            f"[target < {_ms(TARGET_BATCH)}: {'met' if r['p50'] < TARGET_BATCH else 'MISSED'}]"
        )
        base = baseline(args.config, args.batch_size)
        if base is not None:
            results["baseline"] = base
            n = args.batch_size
            print(f"in-process scoring cost per call (1 row / {n} rows):")
            for label, key in (
                ("predict_proba, default OpenMP threads", "predict_proba"),
                ("predict_proba, one OpenMP thread", "predict_proba_omp1"),
                ("API fast path, one OpenMP thread", "fast_path"),
            ):
                if f"{key}_1_row" in base:
                    print(
                        f"  {label:40s} {_ms(base[f'{key}_1_row']):>10s} / "
                        f"{_ms(base[f'{key}_{n}_rows']):>10s}"
                    )
            single = base["predict_proba_1_row"]
            best = max(c["rate"] for c in results["closed"])
            print(
                f"scoring each request alone with predict_proba caps a server at "
                f"{1 / single:.0f} predictions/s; the API's best closed-loop rate {best:.0f}/s "
                f"is {best * single:.1f}x that"
            )
        if args.json:
            results["open"].pop("latencies", None)
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        for server in (process, shadow_off):
            if server is not None:
                _stop(server)
        folder.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
