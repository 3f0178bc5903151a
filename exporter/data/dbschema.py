"""Creating the stores' tables, and serialising writers, on SQLite and PostgreSQL alike.

The prediction log and the history are selected by URL alone (``sqlite:///...`` or
``postgresql+psycopg://user@host/db``); this module holds the few places where the two
differ.

* **Schema creation** (:func:`create_schema`). Every process that opens a store runs
  ``metadata.create_all`` and its migrations in one transaction that holds the schema
  lock (:func:`schema_transaction`): several API replicas, exporters or CLI commands
  starting at once create the tables exactly once, and the others, waiting on the
  lock, then find them. DDL is transactional in both databases. On PostgreSQL the
  lock is a transaction-level advisory lock (``pg_advisory_xact_lock``; each statement
  of a READ COMMITTED transaction sees what committed before it). On SQLite it is the
  database's write lock, taken by ``BEGIN IMMEDIATE`` before the existence checks:
  without it two processes both find a table missing and the second ``CREATE TABLE``
  fails with "table ... already exists".
* **Ordered appends** (:func:`append_lock`). A reader that follows a table by an
  increasing key (:mod:`exporter.data.logtail`) needs keys that become visible in key
  order. SQLite serialises writers, so its rowids do. PostgreSQL draws identity values
  at insert time and commits in any order, so the writers of such a table take an
  advisory lock for their transaction first: keys are then drawn and committed in one
  order, as on SQLite. The lock is released at commit, after the rows are visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


def is_postgresql(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name` (the same in every process)."""
    digest = hashlib.blake2b(f"churn-monitor:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


T = TypeVar("T")

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


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection whose transaction holds the schema lock (module notes), committed
    when the block ends and rolled back if it raises. The lock waits for its holder
    (on SQLite up to the engine's busy timeout)."""
    with engine.connect() as conn:
        if is_postgresql(conn):
            xact_lock(conn, SCHEMA_LOCK)
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn  # an exception closes the connection, which rolls back
        conn.commit()


def create_schema(
    engine: Engine,
    metadata: sa.MetaData,
    migrate: Callable[[Connection], T] | None = None,
) -> T | None:
    """Create `metadata`'s missing tables (with their indexes), then run `migrate` on the
    same connection, all in one transaction under the schema lock; return what
    `migrate` returned (None without one)."""
    with schema_transaction(engine) as conn:
        metadata.create_all(conn)
        return None if migrate is None else migrate(conn)
