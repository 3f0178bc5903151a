"""The error a command raises for a bad argument found after parsing."""

from __future__ import annotations


class UsageError(Exception):
    """A bad argument found after parsing; reported like argparse's errors (exit 2)."""
