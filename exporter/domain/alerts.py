"""The alert types of the alerting contract (one owner).

Every alerting rule in ``prometheus/rules`` carries an ``alert_type`` label with one of
these values: the seed's five, and ``MODEL_COMPARISON`` for the champion-challenger
verdict. The retraining loop starts on the types its config lists
(``retraining.alert_types``), so a misspelt type is a config error, not a loop that
never starts.
"""

from __future__ import annotations

from typing import Literal, get_args

#: An alert's ``alert_type`` label.
AlertType = Literal[
    "DATA_DRIFT",
    "MODEL_DEGRADATION",
    "THRESHOLD_BREACH",
    "PREDICTION_DRIFT",
    "MONITORING",
    "MODEL_COMPARISON",
]
#: The alert types, in the contract's order.
ALERT_TYPES: tuple[str, ...] = get_args(AlertType)
