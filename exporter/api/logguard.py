"""Notice the SQLite prediction log being removed or replaced while the API runs.

A SQLite connection keeps its file open: when the file, or the folder holding it, is
removed or moved away, writes through the open connection still succeed, into a file
nobody will ever read again (SQLite does not report it in WAL mode). The API would
answer 200 for predictions that are lost. `LogFileGuard.check` runs before every write
and every health check and compares the file at the configured path with the one the
pool has open (device and inode):

* no file at the path: the pool is closed and `LogUnavailable` raised (503), until the
  file is back. The API does not create a new, empty log then (it does at start);
* another file at the path (restored from a backup): the pool is closed, so the next
  connection opens the new file, and the tables are created in it when missing.

Other databases than SQLite files are not checked. A file removed between the check
and the commit (microseconds) is not noticed until the next write.
"""

from __future__ import annotations

import logging
import os
import threading

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.data import predlog
from exporter.data.dburl import sqlite_file
from exporter.data.predlog import LogUnavailable

log = logging.getLogger("churn_monitor.api")


def _log_file(engine: Engine) -> str | None:
    """The path of a SQLite file database, else None (other databases, :memory:, and
    ``file:`` URIs, whose path SQLite resolves itself)."""
    if not predlog.is_sqlite(engine):
        return None
    database = sqlite_file(engine.url.render_as_string(hide_password=False))
    if database is None or str(database).startswith("file:"):
        return None
    return str(database)


class LogFileGuard:
    """Checks that the prediction log's file is still the one the pool has open."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.path = _log_file(engine)
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise `LogUnavailable` when the file is gone; reopen it when replaced."""
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except OSError as err:
            with self._lock:
                had = self._identity is not None
                self._identity = None
            if had:
                log.error(
                    "the prediction log %s disappeared (%s); answering 503 until it is back",
                    self.path,
                    err.strerror,
                )
                self.engine.dispose()
            raise LogUnavailable(
                f"prediction log unavailable: {self.path} is missing ({err.strerror})"
            ) from None
        identity = (st.st_dev, st.st_ino)
        with self._lock:
            known = self._identity
            if known == identity:
                return
            self._identity = identity
        if known is not None:
            log.warning("the prediction log %s was replaced; reopening it", self.path)
        # First check, the file back after it was missing, or a new file: connections
        # opened before may point at another file, and a restored file may lack tables.
        self.engine.dispose()
        try:
            predlog.create_tables(self.engine)
        except sa.exc.SQLAlchemyError as err:
            with self._lock:
                self._identity = None
            orig = getattr(err, "orig", None)
            reason = str(orig) if orig is not None else str(err).splitlines()[0]
            raise LogUnavailable(f"prediction log unavailable: {reason}") from err
