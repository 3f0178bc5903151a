"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
from hypothesis import settings

# PostgreSQL for the storage tests: `backend` runs a test on SQLite and on PostgreSQL.
from .pg_fixtures import backend, postgres_server  # noqa: F401

# Property tests draw the same examples on every run (derandomize): a statistical
# bound that a rare random draw breaks fails for everyone or for no one, never in CI
# alone. No example database either, so a clean clone and a laptop behave alike.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set (to anything but 0/false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def require_binary() -> Callable[[str], str]:
    """Return ``require(name) -> path`` for an executable the test needs.

    A missing executable skips the test locally and fails it when ``CI`` is set, so a
    CI machine without Prometheus or Alertmanager cannot pass by skipping.
    """

    def require(name: str) -> str:
        path = shutil.which(name)
        if path is not None:
            return path
        message = f"{name} is not installed (not found on PATH)"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so this is an error", pytrace=False)
        pytest.skip(message)

    return require
