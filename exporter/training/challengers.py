"""Ready-made challengers: a better and a worse model under the challenger alias.

`churn-monitor challenger better|worse` trains one of these :data:`RECIPES` with the
training pipeline (:func:`exporter.training.pipeline.train`) into the challenger's
config (:func:`exporter.model.roles.challenger_config`): the version is registered
under ``model.challenger_alias``, its reference snapshot and baseline are written to the
challenger's folder, and the champion's alias and files do not move. The API then
shadow-scores it and the exporter compares it with the champion on live traffic.

``better``
    More data: 20,000 synthetic customers instead of the default 7,000.
``worse``
    The default 7,000 synthetic customers with the churn relation's strongest inputs
    (:data:`WORSE_SHUFFLED`) shuffled among the training rows, like a join that mixed
    up rows: each column keeps its distribution but loses its link with churn.

More data alone does not beat the default champion visibly: on this synthetic data a
model tuned on 7,000 customers is within about 0.01 ROC AUC of the true churn
probability, and 20,000 customers add about 0.003, which DeLong's test does not
separate on a demo's traffic (nor does `churn-monitor promote`'s margin of 0.01 allow).
So `make run` trains a weaker champion, with :data:`DEMO_CHAMPION_SHUFFLED` shuffled
(``churn-monitor train --shuffle ...``). On the demo's traffic its ROC AUC is about
0.80, ``better``'s 0.84 and ``worse``'s 0.75 (the README's demo section has the
measurements).

The recipes are plain data; :func:`register_challenger` does the training (I/O).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exporter.config import MonitoringConfig
from exporter.model.roles import challenger_config
from exporter.training.dataset import SYNTHETIC_ROWS
from exporter.training.errors import TrainingError
from exporter.training.pipeline import TrainResult, train

Kind = Literal["better", "worse"]

#: What `make run` shuffles for its champion: contract and tenure (with its proxy
#: TotalCharges ~ tenure x MonthlyCharges), the churn relation's strongest inputs.
DEMO_CHAMPION_SHUFFLED: tuple[str, ...] = ("Contract", "tenure", "TotalCharges")
#: What the ``worse`` challenger shuffles: the demo champion's and three more inputs of
#: the churn relation.
WORSE_SHUFFLED: tuple[str, ...] = (
    *DEMO_CHAMPION_SHUFFLED,
    "InternetService",
    "MonthlyCharges",
    "PaymentMethod",
)


@dataclass(frozen=True)
class Recipe:
    """How a challenger's training data is made."""

    kind: Kind
    #: Synthetic customers generated (60 % fitted on, 40 % held out as the reference).
    rows: int
    #: Feature columns shuffled among the training rows.
    shuffled: tuple[str, ...]
    #: One line for people.
    about: str


RECIPES: dict[Kind, Recipe] = {
    "better": Recipe(
        "better",
        20_000,
        (),
        f"more data: 20000 synthetic customers (the default is {SYNTHETIC_ROWS})",
    ),
    "worse": Recipe(
        "worse",
        SYNTHETIC_ROWS,
        WORSE_SHUFFLED,
        f"{SYNTHETIC_ROWS} synthetic customers with {', '.join(WORSE_SHUFFLED)} "
        "shuffled among the training rows",
    ),
}


def challenger_target(config: MonitoringConfig) -> MonitoringConfig:
    """The config to train the challenger with; TrainingError naming the field when
    `config` has no challenger."""
    target = challenger_config(config)
    if target is not None:
        return target
    if config.model.challenger_alias is None:
        raise TrainingError(
            "model.challenger_alias: is null, so there is no alias to register a "
            "challenger under; set it (e.g. challenger) in the config"
        )
    raise TrainingError(
        "model.local_path: the model is loaded from a local directory, which has no "
        "registry aliases and so no challenger"
    )


def register_challenger(
    config: MonitoringConfig,
    kind: Kind,
    *,
    trials: int | None = None,
    seed: int = 42,
    progress: bool = False,
) -> TrainResult:
    """Train the `kind` recipe and register it under ``model.challenger_alias`` with its
    reference snapshot and baseline (module docstring); TrainingError as
    :func:`~exporter.training.pipeline.train` raises it, or naming
    ``model.challenger_alias`` when there is no challenger alias."""
    target = challenger_target(config)
    recipe = RECIPES[kind]
    return train(
        target,
        trials=trials,
        seed=seed,
        progress=progress,
        rows=recipe.rows,
        shuffle=recipe.shuffled,
    )
