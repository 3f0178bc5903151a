"""Atomic file writes: a reader, or a crash, never sees half a file.

The content goes to a temporary file in the target's folder, is flushed and fsynced,
then renamed over the target (``os.replace`` is atomic within one file system). A
writer killed before the rename leaves only the temporary file, named
``<prefix>*.tmp``, which its owner may delete as garbage.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomically(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *, prefix: str | None = None
) -> Path:
    """Write ``path`` through ``write(handle)`` on a binary temp file, then rename it.

    ``prefix`` names the temp file (default ``.<name>.``); parents are created.
    Returns the path. On any error the temp file is removed and the error raised.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp_prefix = prefix if prefix is not None else f".{target.name}."
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix, suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_bytes_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomically`)."""
    return write_atomically(path, lambda handle: handle.write(data))
