"""Creating the stores' tables, and serialising writers, on SQLite and PostgreSQL alike.

The prediction log and the history are selected by URL alone (``sqlite:///...`` or
``postgresql+psycopg://user@host/db``); this module holds the few places where the two
differ.

* **Schema creation** (:func:`create_schema`). On PostgreSQL every process that opens a
  store runs ``metadata.create_all`` and its migrations in one transaction holding a
  transaction-level advisory lock (``pg_advisory_xact_lock``): several API replicas or
  exporters starting at once create the tables exactly once, and the others, waiting on
  the lock, then find them (DDL is transactional in PostgreSQL, and each statement of a
  READ COMMITTED transaction sees what committed before it). SQLite keeps its path:
  ``create_all`` on the engine, and migrations that tolerate a concurrent twin.
* **Ordered appends** (:func:`append_lock`). A reader that follows a table by an
  increasing key (:mod:`exporter.data.logtail`) needs keys that become visible in key
  order. SQLite serialises writers, so its rowids do. PostgreSQL draws identity values
  at insert time and commits in any order, so the writers of such a table take an
  advisory lock for their transaction first: keys are then drawn and committed in one
  order, as on SQLite. The lock is released at commit, after the rows are visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


def is_postgresql(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name` (the same in every process)."""
    digest = hashlib.blake2b(f"churn-monitor:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: The advisory lock held while a store's schema is created or migrated.
SCHEMA_LOCK = "schema"


def xact_lock(conn: Connection, name: str) -> None:
    """Hold PostgreSQL advisory lock `name` until `conn`'s transaction ends (waiting for
    it if another transaction holds it). A no-op on other databases."""
    if is_postgresql(conn):
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(name))))


def append_lock(conn: Connection, table: str) -> None:
    """Serialise the appends to `table` on PostgreSQL (module notes); call it first in
    the writing transaction. A no-op on SQLite, which serialises writers itself."""
    xact_lock(conn, f"append:{table}")


def create_schema(
    engine: Engine,
    metadata: sa.MetaData,
    migrate: Callable[[Connection], object] | None = None,
) -> None:
    """Create `metadata`'s missing tables (with their indexes), then run `migrate` on a
    connection, on PostgreSQL all in one transaction under the schema lock. On SQLite,
    ``create_all`` runs on the engine and `migrate` is left to the caller (its own
    migration path tolerates a concurrent twin)."""
    if not is_postgresql(engine):
        metadata.create_all(engine)
        return
    with engine.begin() as conn:
        xact_lock(conn, SCHEMA_LOCK)
        metadata.create_all(conn)
        if migrate is not None:
            migrate(conn)
