"""A seeded generator of Telco-like customers, with named drift scenarios.

The output has exactly the columns and value sets of the public IBM "Telco Customer
Churn" export (:mod:`exporter.domain.schema`), and marginals close to the real data's: about
16 % seniors, 48 % with a partner, 30 % with dependents, 90 % with phone service,
internet DSL 34 % / fiber 44 % / none 22 %, contracts month-to-month 55 % / one year
21 % / two year 24 %, electronic check 34 %, tenure bimodal with peaks at 1 and 72
months, MonthlyCharges set by the services a customer has (about 20 with no
internet, 45-95 on DSL with phone service, 65-119 on fiber), TotalCharges about
tenure × MonthlyCharges (NaN where tenure is 0, the export's blank) and churn about
26.5 %.

Churn is drawn as a Bernoulli variable from a logistic model
(:func:`exporter.data.churn_relation.churn_probability`) that rises with month-to-month
contracts, fiber, paying by electronic check, short tenure, high charges, missing online
security or tech support, paperless billing and age. The labels are therefore noisy the way real
ones are: a logistic regression trained on 3,500 rows reaches a test ROC AUC of
about 0.85 (0.83-0.87 over seeds), close to the ~0.84 it reaches on the real export.

Scenarios (:data:`exporter.domain.scenarios.SCENARIOS`):

``none``
    The reference population.
``gradual``
    Covariate shift that grows linearly with ``progress`` in [0, 1]: MonthlyCharges
    up to +15 % (so above the schema's plausible maximum of 120 for the dearest
    plans), more new customers (shorter tenure), a contract mix moving towards
    month-to-month. ``progress=0`` gives exactly ``none`` and ``progress=1`` exactly
    ``sudden`` (same seed, same rows).
``sudden``
    The full covariate shift of ``gradual`` at once.
``new_payment_method``
    :data:`NEW_PAYMENT_METHOD_SHARE` of the customers pay with
    :data:`NEW_PAYMENT_METHOD` ("Digital wallet"), a value that is not in
    ``schema.CATEGORIES["PaymentMethod"]``. This is the only scenario whose output
    leaves the schema's value sets; a model or drift check must cope with an unseen
    category. Everything else is drawn as in ``none``.
``concept``
    Concept drift: the inputs are drawn exactly as in ``none`` (same seed, same
    feature values) but churn follows a different relation, as if a competitor's
    loyalty offer were pulling away long-standing customers: long tenure and one- or
    two-year contracts now raise churn instead of lowering it, and price sensitivity
    is flipped (cheap plans churn); the other effects (fiber, electronic check, no
    security or support, age, paperless billing) stay. The churn rate stays near
    26.5 %, so only the relation changes; a logistic regression trained on ``none``
    loses about 19 points of accuracy (0.81 to 0.62).
``correlation``
    Joint drift that no per-feature test can see: every row's TotalCharges is the
    TotalCharges of an independently drawn ``none`` customer (a "donor", see below),
    so it no longer follows the row's own tenure × MonthlyCharges. Each column's
    marginal is exactly ``none``'s, for any batch size down to one row; only the
    joint distribution moves. Pearson correlation of TotalCharges with tenure ×
    MonthlyCharges (20,000 rows, seeds 11-20): 0.99995 under ``none``, between -0.01
    and 0.015 here (with tenure alone 0.82 and about 0). The blank TotalCharges
    no longer marks tenure 0: it falls where the donor's tenure is 0, about 0.16 %
    of rows either way. Since TotalCharges is not an input of the churn relation, the
    labels are those of ``none`` with the same seed.
``mix``
    Joint drift of the categories: every row's PaymentMethod is that of an
    independent ``none`` donor, so its marginal is unchanged but its link with
    Contract, PaperlessBilling and tenure is broken (about 74 % of the rows change
    payment method against ``none`` with the same seed). Cramér's V of Contract ×
    PaymentMethod (20,000 rows, seeds 11-20) is 0.27-0.29 under ``none`` and
    0.003-0.018 here, PaperlessBilling × PaymentMethod 0.24-0.25 against under
    0.016; electronic check is 47 % of month-to-month and 12 % of two-year
    contracts under ``none``, about 33 % of both here. Through the unchanged
    ``P(churn | x)`` the churn rate falls a little, 26.5 % to 25.9 % on average
    (electronic check moves away from the riskiest contracts), so the label's
    marginal moves even though no input's does.

Under the covariate-shift scenarios (``gradual``, ``sudden``, ``new_payment_method``,
``correlation``, ``mix``) ``P(churn | x)`` is the same function as under ``none``: only
the distribution of ``x`` moves, which is what a label-free performance estimate
assumes. The new payment method gets the churn effect of an automatic payment.

Randomness is drawn in a fixed order that does not depend on the scenario and each
value is an inverse-CDF transform of its own uniform draw, so runs with the same seed
are coupled: ``concept`` has the very same features as ``none``, the shifted
scenarios move only the rows that the shift reaches, and ``correlation`` and ``mix``
differ from ``none`` in their donor column only (and, for ``mix``, the labels that
depend on it). The donors are ``none`` customers drawn from a second stream of
their own, ``SeedSequence(seed, spawn_key=(key,))`` with one key per scenario: it
takes nothing from the main stream (every other scenario's output is unchanged) and,
unlike an entropy list ``[seed, key]`` (which is the stream of the plain seed
``seed + key * 2**32``), it is not the main stream of any seed below 2**128.

customerID has the export's shape ("7590-VHVEG": four digits, a dash, five capital
letters; :mod:`exporter.data.customer_ids`). It is a fixed bijection of the row's
global index ``id_offset + i`` and does not depend on the seed: a call never repeats an
ID, and calls over disjoint index ranges (e.g. ``id_offset`` advanced by each batch's
size) never collide, whatever their seeds. Two calls with the same ``id_offset`` reuse the same IDs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from exporter.data.churn_relation import churn_probability, sigmoid
from exporter.data.customer_ids import customer_ids
from exporter.domain import schema
from exporter.domain.scenarios import SCENARIOS, check_scenario

__all__ = [
    "NEW_PAYMENT_METHOD",
    "NEW_PAYMENT_METHOD_SHARE",
    "PRICE_INCREASE",
    "SCENARIOS",
    "churn_probability",
    "generate_customers",
]

#: The payment method introduced by the ``new_payment_method`` scenario.
NEW_PAYMENT_METHOD = "Digital wallet"
#: Share of customers paying with it in that scenario.
NEW_PAYMENT_METHOD_SHARE = 0.20

#: Full-strength covariate shift (``sudden``, and ``gradual`` at progress 1).
PRICE_INCREASE = 0.15
NEW_CUSTOMER_EXTRA_SHARE = 0.20
LOYAL_CUSTOMER_CUT = 0.60
MONTH_TO_MONTH_LOGIT_SHIFT = 1.0

#: Joint-distribution scenarios: the column taken from an independent ``none``
#: "donor" customer, and the spawn key of the donor's random stream
#: ``SeedSequence(seed, spawn_key=(key,))`` (see the module docstring).
_DONORS: dict[str, tuple[str, int]] = {
    "correlation": ("TotalCharges", 0x436F_7272),  # "Corr"
    "mix": ("PaymentMethod", 0x004D_6978),  # "Mix"
}

_MAX_TENURE = 72
_TENURE_ZERO_SHARE = 0.0016
_STR_DTYPE = pd.Series(["x"]).dtype  # "str" on pandas 3, object on pandas 2
_OBJECT_STRINGS = pd.api.types.is_object_dtype(_STR_DTYPE)

_CAT = schema.CATEGORIES


def _pick(u: np.ndarray, logits: list[np.ndarray]) -> np.ndarray:
    """Category codes from uniforms ``u`` and per-row logits, by inverse CDF."""
    stacked = np.stack(np.broadcast_arrays(*logits), axis=1)
    stacked = stacked - stacked.max(axis=1, keepdims=True)
    weights = np.exp(stacked)
    cum = np.cumsum(weights, axis=1)
    cum /= cum[:, -1:]
    return (u[:, None] > cum[:, :-1]).sum(axis=1)


def _category_series(codes: np.ndarray, values: tuple[str, ...]) -> pd.Series:
    """A string column from integer (or boolean) codes into ``values``."""
    codes = codes.astype(np.int32)
    if _OBJECT_STRINGS:
        return pd.Series(np.asarray(values, dtype=object)[codes], dtype=object)
    decoded = pa.DictionaryArray.from_arrays(
        pa.array(codes), pa.array(list(values), pa.large_string())
    ).dictionary_decode()
    return pd.Series(pd.array(decoded, dtype=_STR_DTYPE))


def _str_series(values: np.ndarray) -> pd.Series:
    if _OBJECT_STRINGS:
        return pd.Series(values.astype(object), dtype=object)
    return pd.Series(pd.array(pa.array(values, pa.large_string()), dtype=_STR_DTYPE))


# --------------------------------------------------------------------- generator
#
# Every draw is one call of ``draw()`` (n uniforms) or ``rng.standard_normal(n)``, in
# this fixed order whatever the scenario: demographics, tenure, services, contract and
# billing, charges, churn. A helper takes its draws in that order; reordering them
# changes every customer of every seed. The donors of ``correlation`` and ``mix`` come
# from a stream of their own (``_DONORS``), after the main stream's draws.


class _Draw:
    """``n`` uniforms in [0, 1) per call, from one seeded generator."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.rng = rng
        self.n = n

    def __call__(self) -> np.ndarray:
        return self.rng.random(self.n)


def _demographics(draw: _Draw) -> dict[str, np.ndarray]:
    """gender (male), SeniorCitizen, Partner, Dependents as booleans."""
    male = draw() < 0.505
    senior = draw() < 0.162
    partner = draw() < np.where(senior, 0.47, 0.485)
    dependents = draw() < np.where(partner, 0.56, 0.11) * np.where(senior, 0.5, 1.0)
    return {"male": male, "senior": senior, "partner": partner, "dependents": dependents}


def _tenure(draw: _Draw, partner: np.ndarray, shift: float) -> np.ndarray:
    """Months: a mixture of new customers (geometric from 1), a uniform middle and a
    loyal block (geometric down from 72); partners stay longer; a few are at 0."""
    u_comp, u_pos, u_zero = draw(), draw(), draw()
    w_new = np.where(partner, 0.15, 0.29) + NEW_CUSTOMER_EXTRA_SHARE * shift
    w_loyal = np.where(partner, 0.17, 0.06) * (1.0 - LOYAL_CUSTOMER_CUT * shift)
    geo_new = 1 + np.floor(np.log1p(-u_pos) / np.log(1 - 0.33))
    geo_loyal = _MAX_TENURE - np.floor(np.log1p(-u_pos) / np.log(1 - 0.45))
    flat = 1 + np.floor(u_pos * (_MAX_TENURE - 1))
    tenure = np.where(u_comp < w_new, geo_new, np.where(u_comp > 1 - w_loyal, geo_loyal, flat))
    tenure = np.clip(tenure, 1, _MAX_TENURE)
    tenure[u_zero < _TENURE_ZERO_SHARE] = 0
    return tenure.astype(np.int64)


#: Add-on logits: intercept, slope in tenure share, fiber effect.
_ADDON_PARAMS: dict[str, tuple[float, float, float]] = {
    "OnlineSecurity": (-0.22, 2.0, -0.75),
    "OnlineBackup": (-0.25, 2.0, 0.0),
    "DeviceProtection": (-0.33, 2.0, 0.15),
    "TechSupport": (-0.20, 2.0, -0.70),
    "StreamingTV": (-0.55, 1.6, 0.95),
    "StreamingMovies": (-0.55, 1.6, 0.95),
}


def _services(draw: _Draw, senior: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """Phone (bool), MultipleLines, InternetService and the add-ons as category codes.

    Without phone service a customer has DSL, as in the export. Add-ons (codes: 0 No,
    1 Yes, 2 No internet service) grow with tenure share ``s``; fiber customers stream
    more and buy security and support less than DSL customers.
    """
    n = draw.n
    phone = draw() < 0.903
    u_net = draw()
    net = _pick(u_net, [np.full(n, 0.0), 0.40 + 1.1 * senior, np.full(n, -0.03) - 1.2 * senior])
    net = np.where(phone, net, 0)  # codes: 0 DSL, 1 Fiber optic, 2 No
    fiber, no_net = net == 1, net == 2
    multi = draw() < sigmoid(-0.45 + 2.4 * (s - 0.45) + 0.9 * fiber - 0.6 * no_net)
    codes = {
        "PhoneService": phone,
        "MultipleLines": np.where(phone, multi.astype(np.int64), 2),
        "InternetService": net,
    }
    for name, (a, b, c_fiber) in _ADDON_PARAMS.items():
        yes = draw() < sigmoid(a + b * (s - 0.45) + c_fiber * fiber)
        codes[name] = np.where(~no_net, yes.astype(np.int64), 2)
    return codes


def _billing(
    draw: _Draw, senior: np.ndarray, s: np.ndarray, net: np.ndarray, shift: float
) -> dict[str, np.ndarray]:
    """Contract, PaperlessBilling and PaymentMethod codes, and the uniform that picks
    the new payment method (drawn in every scenario, used in one).

    Contracts grow with tenure; no-internet customers sign long contracts more often.
    """
    n = draw.n
    fiber, no_net = net == 1, net == 2
    u_contract = draw()
    contract = _pick(
        u_contract,
        [
            2.25 - 3.6 * s + 0.25 * fiber + 0.3 * senior + MONTH_TO_MONTH_LOGIT_SHIFT * shift,
            np.full(n, 0.0),
            -2.3 + 3.2 * s + 0.9 * no_net,
        ],
    )
    m2m = contract == 0
    paperless = draw() < sigmoid(0.45 + 0.55 * fiber - 1.3 * no_net + 0.2 * senior)
    u_pay = draw()
    pay = _pick(
        u_pay,
        [
            -0.15 + 0.55 * paperless + 0.55 * fiber - 1.6 * s + 0.45 * m2m,
            0.25 - 0.55 * paperless + 0.7 * no_net - 0.8 * s,
            -1.05 + 1.3 * s + 0.3 * ~m2m,
            -1.05 + 1.3 * s + 0.3 * ~m2m,
        ],
    )
    return {
        "Contract": contract,
        "PaperlessBilling": paperless,
        "PaymentMethod": pay,
        "u_new_pay": draw(),
    }


def _charges(
    rng: np.random.Generator, codes: dict[str, np.ndarray], tenure: np.ndarray, shift: float
) -> tuple[np.ndarray, np.ndarray]:
    """MonthlyCharges and TotalCharges (NaN at tenure 0) from the services.

    The price increase multiplies every bill. Past bills varied a little (older
    prices, partial months); the variation averages out over a long tenure.
    """
    n = tenure.size
    net = codes["InternetService"]
    dsl, fiber, no_net = net == 0, net == 1, net == 2
    n_protect = sum(codes[k] == 1 for k in schema.INTERNET_ADDONS[:4])
    n_stream = (codes["StreamingTV"] == 1).astype(int) + (codes["StreamingMovies"] == 1)
    monthly = (
        20.0 * codes["PhoneService"]
        + 5.0 * (codes["MultipleLines"] == 1)
        + 25.0 * dsl
        + 50.0 * fiber
        + 5.0 * n_protect
        + 10.0 * n_stream
        + np.where(no_net, 0.6, 1.6) * rng.standard_normal(n)
    )
    monthly = np.clip(monthly, 18.25, 118.75) * (1.0 + PRICE_INCREASE * shift)
    monthly = np.round(monthly * 20.0) / 20.0
    total_sd = np.where(tenure > 1, 0.05 / np.sqrt(np.maximum(tenure - 1, 1)), 0.0)
    total_noise = total_sd * rng.standard_normal(n)
    total = np.round(tenure * monthly * np.clip(1.0 + total_noise, 0.85, 1.15), 2)
    total[tenure == 0] = np.nan
    return monthly.astype(np.float64), total.astype(np.float64)


def _draw_features(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    """Every input of ``n`` customers, drawn from ``rng`` in the fixed order: the
    demographics' booleans, tenure, the service and billing codes, MonthlyCharges and
    TotalCharges (keyed by column name, the demographics as ``male``, ``senior``,
    ``partner``, ``dependents``)."""
    draw = _Draw(rng, n)
    people = _demographics(draw)
    tenure = _tenure(draw, people["partner"], shift)
    s = tenure / _MAX_TENURE
    codes = _services(draw, people["senior"], s)
    codes.update(_billing(draw, people["senior"], s, codes["InternetService"], shift))
    monthly, total = _charges(rng, codes, tenure, shift)
    return {**people, **codes, "tenure": tenure, "MonthlyCharges": monthly, "TotalCharges": total}


def _check_arguments(n: int, scenario: str, progress: float) -> None:
    check_scenario(scenario)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not 0.0 <= float(progress) <= 1.0:
        raise ValueError(f"progress must be in [0, 1], got {progress!r}")


def generate_customers(
    n: int,
    *,
    seed: int = 0,
    scenario: str = "none",
    progress: float = 1.0,
    id_offset: int = 0,
) -> pd.DataFrame:
    """``n`` synthetic customers with columns ``schema.ALL_COLUMNS``, Churn "Yes"/"No".

    ``progress`` (in [0, 1]) is how far the ``gradual`` drift has advanced; other
    scenarios ignore it. Dtypes: SeniorCitizen and tenure int64, MonthlyCharges and
    TotalCharges float64 (TotalCharges NaN where tenure is 0, as the export's blank;
    under ``correlation`` where the donor's tenure is 0), everything else pandas'
    default string dtype.
    """
    _check_arguments(n, scenario, progress)
    n = int(n)
    shift = {"gradual": float(progress), "sudden": 1.0}.get(scenario, 0.0)
    rng = np.random.default_rng(seed)
    values = _draw_features(rng, n, shift)
    u_churn = rng.random(n)
    if scenario in _DONORS:
        column, key = _DONORS[scenario]
        donor_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))
        values[column] = _draw_features(donor_rng, n, 0.0)[column]

    pay_values = _CAT["PaymentMethod"]
    if scenario == "new_payment_method":
        pay_values = (*pay_values, NEW_PAYMENT_METHOD)
        new_pay = values["u_new_pay"] < NEW_PAYMENT_METHOD_SHARE
        values["PaymentMethod"] = np.where(new_pay, len(pay_values) - 1, values["PaymentMethod"])

    yes_no = schema.YES_NO
    frame = pd.DataFrame(
        {
            schema.ID_COLUMN: _str_series(customer_ids(id_offset, n)),
            "gender": _category_series(values["male"], _CAT["gender"]),
            "SeniorCitizen": pd.Series(values["senior"].astype(np.int64)),
            "Partner": _category_series(values["partner"], yes_no),
            "Dependents": _category_series(values["dependents"], yes_no),
            "tenure": pd.Series(values["tenure"]),
            **{
                name: _category_series(values[name], _CAT[name])
                for name in ("PhoneService", "MultipleLines", "InternetService", *_ADDON_PARAMS)
            },
            "Contract": _category_series(values["Contract"], _CAT["Contract"]),
            "PaperlessBilling": _category_series(values["PaperlessBilling"], yes_no),
            "PaymentMethod": _category_series(values["PaymentMethod"], pay_values),
            "MonthlyCharges": pd.Series(values["MonthlyCharges"]),
            "TotalCharges": pd.Series(values["TotalCharges"]),
        },
        columns=[schema.ID_COLUMN, *schema.FEATURES],
    )
    churn = u_churn < churn_probability(frame, scenario)
    frame[schema.TARGET] = _category_series(churn, schema.LABELS)
    return frame
