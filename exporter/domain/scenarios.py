"""The drift scenarios of the synthetic generator and the traffic simulator (one owner).

``none`` (the reference population), ``gradual`` (a covariate shift growing over the
simulation), ``sudden`` (the full shift at once), ``new_payment_method`` (an unseen
category), ``concept`` (same inputs, another churn relation), ``correlation``
(TotalCharges no longer follows tenure × MonthlyCharges) and ``mix`` (the
Contract/PaymentMethod pairing reshuffled); the last two keep every marginal of
``none`` and change only the joint distribution.
:mod:`exporter.data.synthetic` documents what each one draws.
"""

from __future__ import annotations

from typing import Literal, get_args

Scenario = Literal[
    "none", "gradual", "sudden", "new_payment_method", "concept", "correlation", "mix"
]
#: Every scenario name, in documentation order.
SCENARIOS: tuple[str, ...] = get_args(Scenario)


def check_scenario(name: str) -> None:
    """Raise ValueError naming the valid scenarios when `name` is not one."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}")
