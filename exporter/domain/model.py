"""The reference to a model version, as every room names it (one owner)."""

from __future__ import annotations

from dataclasses import dataclass

#: The version and run of a model whose registry alias has not been resolved yet.
UNRESOLVED = "unknown"


@dataclass(frozen=True)
class ModelRef:
    """The model version being served or monitored: registered name, version, MLflow run."""

    name: str
    version: str = UNRESOLVED
    run_id: str = UNRESOLVED
