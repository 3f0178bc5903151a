"""When a reference snapshot file changed: the key its readers cache on.

The reference at ``data.reference_path`` is replaced (atomically) when a new champion
is promoted. Everything derived from it (a drift profile, the API's anomaly profile) is
kept until the file changes, which the key tells cheaply: one ``stat``, no read.
"""

from __future__ import annotations

import os
from pathlib import Path

#: ``(path, st_mtime_ns, st_size)``; both None when the file cannot be stat'ed.
FileKey = tuple[str, int | None, int | None]


def file_key(path: str | Path) -> FileKey:
    """The key of the file at `path` now (module notes); never raises."""
    text = str(path)
    try:
        stat = os.stat(text)
    except OSError:
        return (text, None, None)
    return (text, stat.st_mtime_ns, stat.st_size)
