"""The reference to a model version, as every room names it (one owner)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelRef:
    """The model version being served or monitored: registered name, version, MLflow run."""

    name: str
    version: str = "unknown"
    run_id: str = "unknown"
