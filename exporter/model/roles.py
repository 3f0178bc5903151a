"""The two registry roles, champion and challenger, as configs to load them with.

The champion is the version at ``model.registry_alias``; its reference snapshot and
baseline are at ``data.reference_path``. The challenger is the version at
``model.challenger_alias``; its reference and baseline live in a folder named after
that alias beside the champion's (``data/reference/challenger/reference.parquet``).
Retraining writes them there, the API shadow-scores that alias, the exporter compares
it, and a promotion copies its files over the champion's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from exporter.config import MonitoringConfig

Role = Literal["champion", "challenger"]
ROLES: tuple[Role, ...] = ("champion", "challenger")


def challenger_config(config: MonitoringConfig) -> MonitoringConfig | None:
    """`config` with the challenger's alias and reference path (None: no challenger).

    A local model directory (``model.local_path``) has no aliases, so no challenger.
    The challenger's config names no challenger of its own.
    """
    alias = config.model.challenger_alias
    if alias is None or config.model.local_path:
        return None
    reference = Path(config.data.reference_path)
    return config.model_copy(
        update={
            "model": config.model.model_copy(
                update={"registry_alias": alias, "challenger_alias": None}
            ),
            "data": config.data.model_copy(
                update={"reference_path": str(reference.parent / alias / reference.name)}
            ),
        }
    )
