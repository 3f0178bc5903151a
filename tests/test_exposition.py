"""The exposition in parts (exporter/monitor/exposition.py): fragments rendered apart
join into the same text, and into one gzip member any gzip reader decodes; the
``name[]`` filter keeps what prometheus_client's own filter keeps."""

from __future__ import annotations

import gzip
import zlib

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.monitor.exposition import EMPTY, Fragment, compose, restrict


def registry_with(*names: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    for i, name in enumerate(names):
        gauge = Gauge(name, f"The {name}.", ["feature"], registry=registry)
        for j in range(50):
            gauge.labels(f"f{j:02d}").set(i * 100 + j / 7)
    return registry


def test_fragments_join_into_the_text_and_one_gzip_member() -> None:
    first, second = registry_with("churn_a", "churn_b"), registry_with("churn_c")
    parts = [Fragment.render(first.collect()), EMPTY, Fragment.render(second.collect())]
    plain, gzipped = compose(parts)
    assert plain == generate_latest(first) + generate_latest(second)
    assert gzip.decompress(gzipped) == plain
    # one member: a reader that stops after the first member gets everything
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert reader.decompress(gzipped) == plain
    assert reader.eof and reader.unused_data == b""
    assert len(gzipped) < len(plain) / 3


def test_nothing_composes_into_an_empty_valid_gzip() -> None:
    plain, gzipped = compose([EMPTY])
    assert plain == b""
    assert gzip.decompress(gzipped) == b""


def test_restrict_keeps_what_prometheus_client_keeps() -> None:
    registry = registry_with("churn_a", "churn_b")
    requests = Counter("churn_requests", "Requests.", registry=registry)
    requests.inc(3)
    plain = generate_latest(registry)
    for names in (["churn_b"], ["churn_requests_total", "churn_a"], ["churn_absent"]):
        expected = generate_latest(registry.restricted_registry(names))
        assert families(restrict(plain, names)) == families(expected), names
    assert restrict(plain, ["churn_b"]).startswith(b"# HELP churn_b The churn_b.\n# TYPE")


def families(text: bytes) -> list[tuple[str, str, list[object]]]:
    """Family name, documentation and samples, in name order (orders differ)."""
    return sorted(
        (f.name, f.documentation, f.samples) for f in text_string_to_metric_families(text.decode())
    )
