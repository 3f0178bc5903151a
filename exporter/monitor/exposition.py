"""The text exposition in parts: rendered where the snapshots are, joined where served.

In continuous mode the monitoring worker renders each job's families to text and
deflates them (`Fragment.render`) as soon as the job finishes, and the server joins its
own small part (build, job health, model, push counters) with the latest fragment of
every job (`compose`). Formatting and compressing the per-feature families, the bulk of
a scrape's bytes, never runs in the serving process: it would hold the interpreter
there while scrapes wait (issue 19).

The gzip encoding is one gzip member: each part is a raw deflate stream ended by a sync
flush (byte-aligned, no final block), so the parts concatenate into one stream, closed by
an empty final block; the trailer's CRC-32 and length (RFC 1952) cover the joined text.
Joining costs a copy and a CRC over the text, not a compression.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.core import Metric

#: zlib's level for the parts: 6 (zlib's default) compresses the exposition within a
#: few percent of 9 at a fraction of the time.
LEVEL = 6
#: Gzip header (RFC 1952): magic, deflate, no flags, no mtime, no extra flags, OS unknown.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
#: An empty final block with fixed Huffman codes: ends a deflate stream of sync-flushed parts.
_FINAL_BLOCK = b"\x03\x00"


class _Families:
    """What `generate_latest` renders: anything with `collect()`."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def deflate(plain: bytes, level: int = LEVEL) -> bytes:
    """`plain` as a raw deflate stream ended by a sync flush (no final block)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(plain) + compressor.flush(zlib.Z_SYNC_FLUSH)


@dataclass(frozen=True)
class Fragment:
    """One job's families as exposition text and its sync-flushed raw deflate stream."""

    plain: bytes
    deflated: bytes

    @classmethod
    def render(cls, families: Iterable[Metric]) -> Fragment:
        """Render `families` in the Prometheus text format (0.0.4) and deflate them."""
        plain = generate_latest(_Families(families))
        return cls(plain, deflate(plain))


EMPTY = Fragment(b"", b"")


def compose(parts: Sequence[Fragment]) -> tuple[bytes, bytes]:
    """The joined text of `parts` and the same text gzip-encoded, as one gzip member."""
    plain = b"".join(part.plain for part in parts)
    crc = 0
    for part in parts:
        crc = zlib.crc32(part.plain, crc)
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, len(plain) & 0xFFFFFFFF)
    body = b"".join(part.deflated for part in parts)
    return plain, _GZIP_HEADER + body + _FINAL_BLOCK + trailer


def restrict(plain: bytes, names: Iterable[str]) -> bytes:
    """The lines of a text exposition that belong to the samples named in `names` (the
    ``name[]`` filter of prometheus_client's own handler): a sample line is kept when its
    name is listed, a ``# HELP``/``# TYPE`` line when a sample of its family is kept."""
    wanted = set(names)
    kept: list[bytes] = []
    comments: list[bytes] = []
    for line in plain.splitlines(keepends=True):
        if line.startswith(b"#"):
            if not line.startswith(b"# HELP ") and comments:
                comments.append(line)
            else:
                comments = [line]  # a new family starts with its HELP line
            continue
        name = line.split(b"{", 1)[0].split(b" ", 1)[0].decode()
        if name in wanted:
            kept.extend(comments)
            comments = []
            kept.append(line)
    return b"".join(kept)
