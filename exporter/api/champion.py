"""The models the API holds, each swapped for a new version without a restart.

`ModelHolder` keeps the loaded model of one registry role in one attribute: a request
reads it once and uses that model for the whole call, and a swap is a single
assignment, so a request sees the previous model or the next one, never a mixture.
`poll` (blocking; the app runs it in a worker thread every ``api.model_poll_seconds``)
asks the registry where the role's alias points and loads the new version when it
moved. When no model could be loaded the holder remembers why, for ``/health`` and the
503 bodies.

The API holds two: the champion, which it serves, and (with ``api.shadow_scoring``)
the challenger at ``model.challenger_alias``, which scores every prediction in the
shadow (:mod:`.scoring`). A challenger alias that does not exist is the normal "no
challenger" state, not a failure: the holder is then empty, says so once in the log,
and drops a loaded challenger when its alias is removed (a promotion does that).
Any other failure to load a version is reported to ``on_load_failure``.

The champion carries the anomaly model of the reference snapshot (:mod:`.anomaly`),
fitted in the same load, so a request sees a model and the profile of its reference
together (the challenger has none: anomaly scores come from the champion). A poll that
finds the alias where it was still checks the reference file (one ``stat``): a
promotion replaces it after moving the alias, and the served model then gets the new
profile in another single assignment.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn

from exporter.api.anomaly import AnomalyModel, AnomalyProfiles
from exporter.api.fastpath import FastPath, verified_fast_path
from exporter.config import MonitoringConfig
from exporter.data import synthetic
from exporter.domain import schema
from exporter.domain.model import ModelRef
from exporter.model import modeling
from exporter.model.roles import Role
from exporter.model.version import VersionedModel

log = logging.getLogger("churn_monitor.api")

#: Loads the version at the config's ``model.registry_alias``: ``registry.load_champion``
#: or a stand-in with its contract (returns an object with ``model``, ``ref``,
#: ``baseline`` and ``threshold``; raises ``registry.AliasNotFound`` when the alias
#: does not exist).
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

    def probabilities(self, columns: dict[str, Any], n: int) -> np.ndarray:
        """P(churn) of the `n` customers in feature `columns`: the verified fast path
        when there is one, else ``predict_proba``; one float per customer. scikit-learn's
        finiteness and parameter checks are skipped: the request models already
        rejected NaN and infinities (a blank TotalCharges is the one NaN imputed)."""
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            if self.fast is not None:
                scores = self.fast(columns, n)
            else:
                frame = pd.DataFrame(columns, columns=list(schema.FEATURES))
                proba = self.model.predict_proba(frame)
                scores = np.asarray(proba, dtype=np.float64)[:, self.positive_column]
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"expected {n} scores, got an array of shape {scores.shape}")
        return scores


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


def _alias_missing(err: BaseException) -> bool:
    """Whether `err` is the registry's ``AliasNotFound`` (the alias does not exist).

    Looked up in ``sys.modules`` rather than imported: the registry module imports
    MLflow (seconds), and a loader that never imported it cannot have raised it.
    """
    registry = sys.modules.get("exporter.model.registry")
    return registry is not None and isinstance(err, registry.AliasNotFound)


@dataclass(frozen=True)
class _Wording:
    """How the log names a role's model and what the API does with it."""

    what: str
    use: str
    using: str


_WORDING: dict[Role, _Wording] = {
    "champion": _Wording("model", "serve", "serving"),
    "challenger": _Wording("challenger model", "shadow-score", "shadow-scoring with"),
}


class ModelHolder:
    """The model of one registry role, its last load error, and the polling that
    replaces it (see the module docstring).

    `config` names the role's alias (``model.registry_alias``; for the challenger,
    :func:`exporter.model.roles.challenger_config`). `on_swap` is called with each
    model put in place, and with None when the challenger is dropped; `on_load_failure`
    once per failed load (a missing challenger alias is not one).
    """

    def __init__(
        self,
        config: MonitoringConfig,
        loader: ModelLoader,
        watch_factory: WatchFactory | None,
        on_swap: Callable[[Served | None], None] | None = None,
        anomaly: AnomalyProfiles | None = None,
        *,
        role: Role = "champion",
        on_load_failure: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.role = role
        self._wording = _WORDING[role]
        self._loader = loader
        self._watch_factory = watch_factory
        self._watch: Any = None
        self._on_swap = on_swap
        self._on_load_failure = on_load_failure
        self._anomaly = anomaly
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self._absence_logged = False
        self.current: Served | None = None
        self.error: str | None = "the model has not been loaded yet"

    @property
    def _may_be_absent(self) -> bool:
        """Whether a missing alias is a state rather than a failure (the challenger)."""
        return self.role == "challenger"

    def _absent(self, reason: str) -> bool:
        """The alias does not exist: hold nothing (log it once); True when a model was
        dropped."""
        previous = self.current
        self.current = None
        self.error = reason
        if not self._absence_logged:
            self._absence_logged = True
            log.info(
                "no %s at alias %s of %s: nothing to %s until one is registered (%s)",
                self.role,
                self.config.model.registry_alias,
                self.config.model.name,
                self._wording.use,
                reason,
            )
        if previous is not None and self._on_swap is not None:
            self._on_swap(None)
        return previous is not None

    def _failed(self, err: Exception) -> None:
        """A load failed: log it, keep the current model, report the failure."""
        reason = _reason(err)
        if self.current is None:
            self.error = reason
            log.warning("no %s to %s: %s", self._wording.what, self._wording.use, reason)
        else:
            log.error(
                "keeping %s %s version %s: loading the new %s failed: %s",
                self._wording.what,
                self.current.ref.name,
                self.current.ref.version,
                self.role,
                reason,
            )
        if self._on_load_failure is not None:
            self._on_load_failure()

    def load(self) -> bool:
        """Load the role's version now; True when a model is held afterwards."""
        with self._lock:
            try:
                loaded = self._loader(self.config)
            except Exception as err:
                if self._may_be_absent and _alias_missing(err):
                    self._absent(_reason(err))
                else:
                    self._failed(err)
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
            self._absence_logged = False
            if previous is None:
                log.info(
                    "%s %s %s version %s (run %s, threshold %.4f, %s)",
                    self._wording.using,
                    self._wording.what,
                    served.ref.name,
                    served.ref.version,
                    served.ref.run_id,
                    served.threshold,
                    "fast path" if served.fast else "predict_proba",
                )
            elif previous.ref != served.ref:
                log.info(
                    "switched %s %s from version %s to version %s (run %s, threshold %.4f)",
                    self._wording.what,
                    served.ref.name,
                    previous.ref.version,
                    served.ref.version,
                    served.ref.run_id,
                    served.threshold,
                )
            if self._on_swap is not None:
                self._on_swap(served)
            return True

    def _alias_ref(self) -> ModelRef | None:
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
        """Load the role's version if none is held or the alias moved, drop the
        challenger whose alias was removed, else follow the reference file; True on a
        swap."""
        current = self.current
        if current is None:
            return self.load()
        try:
            ref = self._alias_ref()
        except Exception as err:
            if self._may_be_absent and _alias_missing(err):
                with self._lock:
                    return self._absent(_reason(err))
            log.warning("cannot check the model registry: %s", _reason(err))
            ref = None
        if ref is None or ref == current.ref:
            return self.refresh_anomaly()
        log.info("%s of %s moved to version %s; loading it", self.role, ref.name, ref.version)
        self.load()
        return self.current is not current
