"""The model the API serves, swapped for a new champion without a restart.

`ChampionHolder` keeps the loaded model in one attribute: a request reads it once and
uses that model for the whole call, and a swap is a single assignment, so a request
sees the previous model or the next one, never a mixture. `poll` (blocking; the app
runs it in a worker thread every ``api.model_poll_seconds``) asks the registry where
the champion alias points and loads the new version when it moved. When no model
could be loaded the holder remembers why, for ``/health`` and the 503 bodies.

Each served model carries the anomaly model of the reference snapshot
(:mod:`.anomaly`), fitted in the same load, so a request sees a model and the profile
of its reference together. A poll that finds the alias where it was still checks the
reference file (one ``stat``): a promotion replaces it after moving the alias, and the
served model then gets the new profile in another single assignment.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.api.anomaly import AnomalyModel, AnomalyProfiles
from exporter.api.fastpath import FastPath, verified_fast_path
from exporter.config import MonitoringConfig
from exporter.data import synthetic
from exporter.domain import schema
from exporter.domain.model import ModelRef
from exporter.model import modeling
from exporter.model.version import VersionedModel

log = logging.getLogger("churn_monitor.api")

#: Loads the champion: ``registry.load_champion`` or a stand-in with its contract
#: (returns an object with ``model``, ``ref``, ``baseline`` and ``threshold``).
ModelLoader = Callable[[MonitoringConfig], Any]
#: Makes a watch over the registry alias: ``registry.ModelWatch`` or a stand-in
#: (``current() -> ModelRef`` and ``refresh() -> bool``).
WatchFactory = Callable[[MonitoringConfig], Any]


@dataclass(frozen=True)
class Served(VersionedModel):
    """One loaded model version and what the API reports about it."""

    loaded_at: float
    positive_column: int
    #: ``(columns, n) -> P(churn)`` equivalent to ``model`` (see fastpath), or None.
    fast: FastPath | None = None
    #: Anomaly scores against the reference snapshot (:mod:`.anomaly`), or None.
    anomaly: AnomalyModel | None = None


def positive_column(model: Any) -> int:
    """The column of ``predict_proba`` that holds P(churn), for a fitted classifier
    (the domain's rule, :func:`exporter.domain.schema.positive_column`)."""
    return schema.positive_column(getattr(model, "classes_", None))


@functools.cache
def _check_sample() -> tuple[dict[str, list[Any]], Any]:
    """Customers to compare the fast path with the pipeline on: every scenario's
    shapes, new customers (blank TotalCharges) and an unseen payment method."""
    import pandas as pd

    frames = [
        synthetic.generate_customers(100, seed=1, scenario="none"),
        synthetic.generate_customers(100, seed=2, scenario="sudden"),
        synthetic.generate_customers(100, seed=3, scenario="new_payment_method"),
    ]
    raw = pd.concat(frames, ignore_index=True)
    raw.loc[:9, "tenure"] = 0
    raw.loc[:9, "TotalCharges"] = float("nan")
    frame = modeling.prepare_features(raw)
    columns = {name: frame[name].tolist() for name in schema.FEATURES}
    return columns, frame


def _reason(err: BaseException) -> str:
    text = str(err).strip() or err.__class__.__name__
    return text.splitlines()[0][:500]


class ChampionHolder:
    """The served model, its last load error, and the polling that replaces it."""

    def __init__(
        self,
        config: MonitoringConfig,
        loader: ModelLoader,
        watch_factory: WatchFactory | None,
        on_swap: Callable[[Served], None] | None = None,
        anomaly: AnomalyProfiles | None = None,
    ) -> None:
        self.config = config
        self._loader = loader
        self._watch_factory = watch_factory
        self._watch: Any = None
        self._on_swap = on_swap
        self._anomaly = anomaly
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self.current: Served | None = None
        self.error: str | None = "the model has not been loaded yet"

    def load(self) -> bool:
        """Load the champion now; True when a model is being served afterwards."""
        with self._lock:
            try:
                loaded = self._loader(self.config)
            except Exception as err:
                reason = _reason(err)
                if self.current is None:
                    self.error = reason
                    log.warning("no model to serve: %s", reason)
                else:
                    log.error(
                        "keeping model %s version %s: loading the new champion failed: %s",
                        self.current.ref.name,
                        self.current.ref.version,
                        reason,
                    )
                return self.current is not None
            column = positive_column(loaded.model)
            columns, frame = _check_sample()
            anomaly = self._anomaly.refresh((columns, frame)) if self._anomaly else None
            served = Served(
                model=loaded.model,
                ref=loaded.ref,
                baseline={k: float(v) for k, v in dict(loaded.baseline).items()},
                threshold=float(loaded.threshold),
                loaded_at=time.time(),
                positive_column=column,
                fast=verified_fast_path(loaded.model, column, columns, frame),
                anomaly=anomaly,
            )
            previous = self.current
            self.current = served  # the atomic swap
            self.error = None
            if previous is None:
                log.info(
                    "serving model %s version %s (run %s, threshold %.4f, %s)",
                    served.ref.name,
                    served.ref.version,
                    served.ref.run_id,
                    served.threshold,
                    "fast path" if served.fast else "predict_proba",
                )
            elif previous.ref != served.ref:
                log.info(
                    "switched model %s from version %s to version %s (run %s, threshold %.4f)",
                    served.ref.name,
                    previous.ref.version,
                    served.ref.version,
                    served.ref.run_id,
                    served.threshold,
                )
            if self._on_swap is not None:
                self._on_swap(served)
            return True

    def _champion_ref(self) -> ModelRef | None:
        """Where the alias points now, per the watch (None when it cannot tell)."""
        if self._watch_factory is None:
            return None
        if self._watch is None:
            self._watch = self._watch_factory(self.config)
        self._watch.refresh()
        return self._watch.current()

    def refresh_anomaly(self) -> bool:
        """Refit the served model's anomaly model if the reference file changed; True
        when the served model's anomaly model was replaced."""
        if self._anomaly is None:
            return False
        with self._lock:
            current = self.current
            if current is None:
                return False
            anomaly = self._anomaly.refresh(_check_sample())
            if anomaly is current.anomaly:
                return False
            self.current = dataclasses.replace(current, anomaly=anomaly)  # atomic, as a swap
            return True

    def poll(self) -> bool:
        """Load the champion if none is served or the alias moved, else follow the
        reference file; True on a swap."""
        current = self.current
        if current is None:
            return self.load()
        try:
            ref = self._champion_ref()
        except Exception as err:
            log.warning("cannot check the model registry: %s", _reason(err))
            ref = None
        if ref is None or ref == current.ref:
            return self.refresh_anomaly()
        log.info("champion of %s moved to version %s; loading it", ref.name, ref.version)
        self.load()
        return self.current is not current
