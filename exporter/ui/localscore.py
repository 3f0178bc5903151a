"""What-if scoring with the champion loaded in this process, outside the API.

The page's counterfactuals (one customer with one feature at a time set to the typical
value) must not enter the prediction log: the drift monitor reads that log as the
production traffic. The API logs every prediction and, until it offers
``POST /predict/batch?log=false``, this module scores the counterfactuals with the
same registry model the API serves (``registry.load_champion``), checked to be the
very version the API answered with. When the API advertises the ``log`` parameter
(see :meth:`ApiClient.supports_unlogged_batch`), the page uses the API instead and
this module is not imported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from exporter.config import MonitoringConfig
from exporter.domain import schema

# The model download is local and quick; its progress bar would only clutter the log.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class VersionMismatch(RuntimeError):
    """The registry's champion is not the version the API serves."""


class LocalScorer:
    """The champion of `config`'s registry (or ``model.local_path``), loaded on demand."""

    def __init__(self, config: MonitoringConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._loaded: Any = None

    def _ensure(self, version: str) -> Any:
        from exporter.model.registry import load_champion  # imports MLflow: only when needed

        with self._lock:
            if self._loaded is None or self._loaded.ref.version != version:
                self._loaded = load_champion(self.config)
            loaded = self._loaded
        if loaded.ref.version != version:
            raise VersionMismatch(
                f"the API serves {loaded.ref.name} version {version} but the registry's "
                f"champion is version {loaded.ref.version}"
            )
        return loaded

    def score(self, customers: Sequence[Mapping[str, Any]], version: str) -> list[float]:
        """P(churn) of `customers` (API request bodies) from model `version`."""
        loaded = self._ensure(version)
        frame = pd.DataFrame([dict(c) for c in customers], columns=list(schema.FEATURES))
        return [float(p) for p in loaded.score(frame)]
