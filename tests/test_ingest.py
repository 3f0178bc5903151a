"""The push endpoint, POST /ingest: the real exporter server over a real SQLite log."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import ConfigError, MonitoringConfig, parse_config
from exporter.data import predlog
from exporter.domain import customers, schema
from exporter.monitor.httpserver import ExporterServer
from exporter.monitor.ingest import make_ingestor
from exporter.monitor.server import make_app
from exporter.monitor.store import SnapshotStore
from exporter.web.webconfig import WebConfig, load_web_config, require_auth

USER = "pusher"
PASSWORD = "push-secret-password"
MAX_BODY = 20_000
MODEL = "churn-model"


def record(i: int, **changes: Any) -> dict[str, Any]:
    """A valid pushed record: the export's first customer with its prediction."""
    features = {k: v for k, v in customers.FIRST.items() if k != schema.ID_COLUMN}
    row = {
        **features,
        "model": MODEL,
        "version": "7",
        "customer_id": f"C-{i}",
        "tenure": i,
        "score": 0.25 + i / 100,
        "predicted": 0,
    }
    row.update(changes)
    return row


@dataclass
class Exporter:
    url: str
    engine: sa.Engine

    def post(
        self, body: bytes | str, headers: dict[str, str] | None = None, path: str = "/ingest"
    ) -> tuple[int, dict[str, Any]]:
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(
            self.url + path, data=data, method="POST", headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            text = err.read()
            try:
                return err.code, json.loads(text or b"{}")
            except ValueError:
                return err.code, {"text": text.decode()}

    def push(self, rows: list[dict[str, Any]], **kwargs: Any) -> tuple[int, dict[str, Any]]:
        return self.post(json.dumps(rows), **kwargs)

    def logged(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(predlog.predictions).order_by(predlog.predictions.c.ts))
            return [dict(r._mapping) for r in rows]

    def labels(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(predlog.feedback.c.prediction_id, predlog.feedback.c.actual)
            )
            return {pid: actual for pid, actual in rows}

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def config_for(tmp: Path, *, enabled: bool = True, **exporter: Any) -> MonitoringConfig:
    return parse_config(
        {
            "model": {"name": MODEL},
            "data": {"current": {"url": f"sqlite:///{tmp / 'log.db'}"}},
            "exporter": {"ingest": {"enabled": enabled, "max_body_bytes": MAX_BODY}, **exporter},
        }
    )


def start(tmp: Path, web: WebConfig | None = None, *, enabled: bool = True) -> Iterator[Exporter]:
    """The exporter's app, as `serve` builds it, on a free port of 127.0.0.1."""
    web = web or WebConfig()
    config = config_for(tmp, enabled=enabled)
    ingest = make_ingestor(config, web)
    app = require_auth(make_app(CollectorRegistry(), SnapshotStore(), ingest=ingest), web)
    server = ExporterServer(app, "127.0.0.1", 0)
    server.start()
    engine = predlog.make_engine(config.data.current.url)
    predlog.create_tables(engine)
    try:
        yield Exporter(f"http://127.0.0.1:{server.port}", engine)
    finally:
        server.stop()
        engine.dispose()
        if ingest is not None:
            ingest.engine.dispose()


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    yield from start(tmp_path)


def test_json_array_appends_exactly_the_rows(exporter: Exporter) -> None:
    rows = [
        record(1, id="push-1", ts=1_700_000_000.0),
        record(2, ts=1_700_000_001.5, TotalCharges=None, anomaly_score=0.3, unusual=False),
        record(3, ts=1_700_000_002.0, TotalCharges=" ", predicted=1, score=0.9),
    ]
    status, answer = exporter.push(rows)
    assert status == 200, answer
    assert answer["ingested"] == 3 and answer["labels"] == 0
    assert answer["ids"][0] == "push-1" and len(set(answer["ids"])) == 3

    logged = exporter.logged()
    assert [r["id"] for r in logged] == answer["ids"]
    for sent, got in zip(rows, logged, strict=True):
        for key in (
            *schema.FEATURES,
            "model",
            "version",
            "customer_id",
            "score",
            "predicted",
            "ts",
        ):
            expected = sent[key] if key != "TotalCharges" or sent[key] != " " else None
            assert got[key] == expected, key
    assert logged[1]["anomaly_score"] == 0.3 and logged[1]["unusual"] is False
    assert logged[0]["challenger_score"] is None and logged[0]["anomaly_score"] is None


def test_json_lines_with_labels_and_defaults(exporter: Exporter) -> None:
    rows = [record(1, actual="Yes"), record(2), record(3, actual=0)]
    body = "\n".join(json.dumps(r) for r in rows) + "\n\n"
    status, answer = exporter.post(body, {"Content-Type": "application/x-ndjson"})
    assert status == 200, answer
    assert answer["ingested"] == 3 and answer["labels"] == 2
    logged = exporter.logged()
    assert sorted(r["customer_id"] for r in logged) == ["C-1", "C-2", "C-3"]
    assert all(len(r["id"]) == 36 and r["ts"] > 1_700_000_000 for r in logged)  # uuid4, now
    ids = answer["ids"]
    assert exporter.labels() == {ids[0]: 1, ids[2]: 0}


def test_json_lines_end_only_at_newlines_and_a_byte_order_mark_is_ignored(
    exporter: Exporter,
) -> None:
    # U+2028 may stand unescaped in a JSON string; str.splitlines would split there.
    rows = [record(1, customer_id="C\u20281"), record(2, customer_id="C\u00852")]
    body = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    status, answer = exporter.post(body)
    assert status == 200, answer
    status, answer = exporter.post(b"\xef\xbb\xbf" + json.dumps([record(3)]).encode())
    assert status == 200, answer
    logged = sorted(r["customer_id"] for r in exporter.logged())
    assert logged == ["C-3", "C\u00852", "C\u20281"]


def test_a_time_ahead_of_the_clock_is_refused(exporter: Exporter) -> None:
    now = time.time()
    in_ms = record(1, ts=now * 1000)
    status, answer = exporter.push([record(0, ts=now + 60), in_ms])
    assert status == 422, answer
    assert answer["error"].startswith("rows[1].ts: ")
    assert "ahead of the exporter's clock" in answer["error"]
    assert exporter.logged() == []
    assert exporter.push([record(0, ts=now + 60)])[0] == 200  # within the margin


def test_mixed_batch_is_refused_whole_naming_each_field(exporter: Exporter) -> None:
    rows = [
        record(0),
        record(1),
        record(2, tenure=-1),
        record(3, Contract="Weekly"),
        record(4, MonthlyCharges="70"),
        record(5, tenur=3),
    ]
    del rows[1]["score"]
    status, answer = exporter.push(rows)
    assert status == 422, answer
    assert answer["error"].startswith("rows[1].score: Field required")
    wheres = [p["where"] for p in answer["problems"]]
    assert wheres == [
        "rows[1].score",
        "rows[2].tenure",
        "rows[3].Contract",
        "rows[4].MonthlyCharges",
        "rows[5].tenur",
    ]
    assert "(got -1)" in answer["problems"][1]["message"]
    assert exporter.logged() == []


def test_other_model_duplicate_ids_and_non_objects_are_named(exporter: Exporter) -> None:
    status, answer = exporter.push([record(0), record(1, model="someone-else")])
    assert status == 422 and answer["error"].startswith("rows[1].model: this exporter monitors")
    status, answer = exporter.push([record(0, id="a"), record(1, id="a")])
    assert status == 422 and answer["error"] == "rows[1].id: the same id as rows[0]"
    status, answer = exporter.push([record(0), [1, 2]])  # type: ignore[list-item]
    assert status == 422 and answer["error"] == "rows[1]: expected a JSON object, got list"
    assert exporter.logged() == []

    assert exporter.push([record(0, id="taken")])[0] == 200
    status, answer = exporter.push([record(1, id="fresh"), record(2, id="taken")])
    assert status == 409, answer
    assert answer["error"].startswith("rows[1].id: a prediction with the id 'taken'")
    assert [r["id"] for r in exporter.logged()] == ["taken"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("[{", "invalid JSON"),
        (json.dumps(record(1)) + "\n{not json}\n", "line 2: invalid JSON"),
        ("[]", "the body holds no records"),
        ("", "the body holds no records"),
        ('[{"score": NaN}]', "invalid JSON: NaN is not a JSON number"),
        (b"\xff\xfe", "the body is not UTF-8 text"),
        ("[" * 15_000, "invalid JSON: nested too deeply"),
        (json.dumps(record(1)) + "\n" + "[" * 15_000, "line 2: invalid JSON: nested too deeply"),
    ],
)
def test_bad_json_is_400(exporter: Exporter, body: str | bytes, error: str) -> None:
    status, answer = exporter.post(body)
    assert status == 400, answer
    assert answer["error"].startswith(error)
    assert exporter.logged() == []


def test_too_large_is_413_and_refusals_are_counted(exporter: Exporter) -> None:
    big = json.dumps([record(i % 70) for i in range(60)])
    assert len(big) > MAX_BODY
    status, answer = exporter.post(big)
    assert status == 413 and "exporter.ingest.max_body_bytes" in answer["error"]
    assert exporter.logged() == []
    assert exporter.post(b"[]")[0] == 400
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(exporter.url + "/ingest", timeout=10)  # a GET
    assert refused.value.code == 405
    refused.value.close()


def test_metrics_count_rows_and_refusals(exporter: Exporter) -> None:
    before = exporter.metrics()
    assert before[("churn_exporter_ingested_rows_total", ())] == 0
    assert before[("churn_exporter_ingest_refused_total", (("status", "422"),))] == 0
    assert exporter.push([record(1), record(2)])[0] == 200
    assert exporter.push([record(3, tenure=1000)])[0] == 422
    assert exporter.post(json.dumps([record(1)] * 40))[0] == 413
    after = exporter.metrics()
    assert after[("churn_exporter_ingested_rows_total", ())] == 2
    assert after[("churn_exporter_ingest_refused_total", (("status", "422"),))] == 1
    assert after[("churn_exporter_ingest_refused_total", (("status", "413"),))] == 1
    assert after[("churn_exporter_ingest_refused_total", (("status", "400"),))] == 0


def test_basic_auth_guards_ingest(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    file = tmp_path / "web.yml"
    file.write_text(json.dumps({"basic_auth_users": {USER: hashed}}), encoding="utf-8")
    web = load_web_config(file, "exporter.web_config_file")

    def auth(user: str, password: str) -> dict[str, str]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    server = start(tmp_path, web)
    exporter = next(server)
    try:
        status, answer = exporter.push([record(1)])
        assert status == 401, answer
        assert exporter.push([record(1)], headers=auth(USER, "wrong"))[0] == 401
        assert exporter.logged() == []
        status, answer = exporter.push([record(1)], headers=auth(USER, PASSWORD))
        assert status == 200 and answer["ingested"] == 1
        assert len(exporter.logged()) == 1
    finally:
        server.close()


def test_disabled_by_default_is_404(tmp_path: Path) -> None:
    assert MonitoringConfig().exporter.ingest.enabled is False
    assert make_ingestor(MonitoringConfig()) is None
    server = start(tmp_path, enabled=False)
    exporter = next(server)
    try:
        status, _ = exporter.push([record(1)])
        assert status == 404
        assert not any(name.startswith("churn_exporter_ingest") for name, _ in exporter.metrics())
    finally:
        server.close()


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^exporter\.ingest\.max_body_bytes: "):
        parse_config({"exporter": {"ingest": {"max_body_bytes": 10}}})
    with pytest.raises(ConfigError, match=r"^exporter\.ingest\.enabeld: "):
        parse_config({"exporter": {"ingest": {"enabeld": True}}})
    files = parse_config(
        {
            "data": {"current": {"kind": "file", "path": str(tmp_path / "x.csv")}},
            "exporter": {"ingest": {"enabled": True}},
        }
    )
    with pytest.raises(ConfigError, match=r"^exporter\.ingest\.enabled: .*data\.current\.kind"):
        make_ingestor(files)
