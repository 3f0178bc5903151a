"""Database URLs (SQLAlchemy form): shown without passwords, and the file behind SQLite."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages, logs and params.

    A string that is not an SQLAlchemy URL (an ``http://`` tracking server) is returned
    as it is.
    """
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # sqlalchemy raises ArgumentError and others for non-DB URLs
        return url


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:`` URL, as written (maybe relative); None for any
    other URL and for an in-memory database."""
    if not url.startswith("sqlite:"):
        return None
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)
