"""The one error training reports: what stops it, naming the column or setting."""

from __future__ import annotations


class TrainingError(Exception):
    """Training cannot start or finish; the message names the column or setting."""
