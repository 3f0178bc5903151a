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
(:func:`churn_probability`) that rises with month-to-month contracts, fiber, paying
by electronic check, short tenure, high charges, missing online security or tech
support, paperless billing and age. The labels are therefore noisy the way real
ones are: a logistic regression trained on 3,500 rows reaches a test ROC AUC of
about 0.85 (0.83-0.87 over seeds), close to the ~0.84 it reaches on the real export.

Scenarios (:data:`SCENARIOS`):

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

Under the covariate-shift scenarios (``gradual``, ``sudden``, ``new_payment_method``)
``P(churn | x)`` is the same function as under ``none``: only the distribution of
``x`` moves, which is what a label-free performance estimate assumes. The new payment
method gets the churn effect of an automatic payment.

Randomness is drawn in a fixed order that does not depend on the scenario and each
value is an inverse-CDF transform of its own uniform draw, so runs with the same seed
are coupled: ``concept`` has the very same features as ``none``, and the shifted
scenarios move only the rows that the shift reaches.

customerID has the export's shape ("7590-VHVEG": four digits, a dash, five capital
letters). It is a fixed bijection of the row's global index ``id_offset + i`` and
does not depend on the seed: a call never repeats an ID, and calls over disjoint
index ranges (e.g. ``id_offset`` advanced by each batch's size) never collide, whatever
their seeds. Two calls with the same ``id_offset`` reuse the same IDs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from exporter.domain import schema

SCENARIOS: tuple[str, ...] = ("none", "gradual", "sudden", "new_payment_method", "concept")

#: The payment method introduced by the ``new_payment_method`` scenario.
NEW_PAYMENT_METHOD = "Digital wallet"
#: Share of customers paying with it in that scenario.
NEW_PAYMENT_METHOD_SHARE = 0.20

#: Full-strength covariate shift (``sudden``, and ``gradual`` at progress 1).
PRICE_INCREASE = 0.15
NEW_CUSTOMER_EXTRA_SHARE = 0.20
LOYAL_CUSTOMER_CUT = 0.60
MONTH_TO_MONTH_LOGIT_SHIFT = 1.0

#: Number of distinct customer IDs (10**4 digit blocks times 26**5 letter blocks).
ID_SPACE = 10**4 * 26**5

_MAX_TENURE = 72
_TENURE_ZERO_SHARE = 0.0016
_STR_DTYPE = pd.Series(["x"]).dtype  # "str" on pandas 3, object on pandas 2
_OBJECT_STRINGS = pd.api.types.is_object_dtype(_STR_DTYPE)

_CAT = schema.CATEGORIES


def _check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; valid scenarios: {', '.join(SCENARIOS)}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


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


# --------------------------------------------------------------------------- IDs

_ID_MULT = 7_919_263  # coprime with ID_SPACE = 2**9 * 5**4 * 13**5
_ID_ADD = 4_206_913_370
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """A 64-bit integer hash (splitmix64 finaliser), vectorised."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(salt)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _M64


def customer_ids(start: int, n: int) -> np.ndarray:
    """IDs for global row indices ``start .. start + n - 1`` (a numpy str array).

    A bijection of the index onto ``ID_SPACE``: an affine permutation followed by two
    Feistel-like rounds between the digit block and the letter block, so neighbouring
    indices get unrelated-looking IDs.
    """
    if start < 0 or start + n > ID_SPACE:
        raise ValueError(f"id_offset must be in [0, {ID_SPACE - n}] for n={n}, got {start}")
    digits_n, letters_n = np.uint64(10**4), np.uint64(26**5)
    k = np.arange(start, start + n, dtype=np.uint64)
    x = (k * np.uint64(_ID_MULT) + np.uint64(_ID_ADD)) % np.uint64(ID_SPACE)
    d, le = x % digits_n, x // digits_n
    d = (d + _mix(le, 1) % digits_n) % digits_n
    le = (le + _mix(d, 2) % letters_n) % letters_n
    chars = np.empty((n, 10), dtype=np.uint8)
    for j in range(4):
        chars[:, 3 - j] = ord("0") + (d % np.uint64(10)).astype(np.uint8)
        d = d // np.uint64(10)
    chars[:, 4] = ord("-")
    for j in range(5):
        chars[:, 9 - j] = ord("A") + (le % np.uint64(26)).astype(np.uint8)
        le = le // np.uint64(26)
    return chars.view("S10").ravel().astype("U10")


# ------------------------------------------------------------------ churn models


#: Logistic churn models: coefficients of the terms built by :func:`_churn_terms`.
_NONE_MODEL: dict[str, float] = {
    "intercept": -0.28,
    "one_year": -0.95,
    "two_year": -1.90,
    "fiber": 0.75,
    "no_internet": -0.30,
    "electronic_check": 0.45,
    "log_tenure": -0.55,
    "charges": 0.012,
    "no_security": 0.35,
    "no_tech_support": 0.35,
    "senior": 0.30,
    "paperless": 0.30,
    "dependents": -0.15,
}
#: Concept drift: long tenure and long contracts raise churn, cheap plans churn.
_CONCEPT_MODEL: dict[str, float] = {
    **_NONE_MODEL,
    "intercept": -3.43,
    "one_year": 0.30,
    "two_year": 1.00,
    "log_tenure": 0.35,
    "charges": -0.015,
}

_CHURN_INPUTS = (
    "SeniorCitizen",
    "Dependents",
    "tenure",
    "InternetService",
    "OnlineSecurity",
    "TechSupport",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
)


def _churn_terms(f: pd.DataFrame) -> dict[str, np.ndarray]:
    def eq(column: str, value: str) -> np.ndarray:
        return (f[column] == value).to_numpy(dtype=float)

    return {
        "one_year": eq("Contract", "One year"),
        "two_year": eq("Contract", "Two year"),
        "fiber": eq("InternetService", "Fiber optic"),
        "no_internet": eq("InternetService", "No"),
        "electronic_check": eq("PaymentMethod", "Electronic check"),
        "log_tenure": np.log1p(f["tenure"].to_numpy(dtype=float)),
        "charges": f["MonthlyCharges"].to_numpy(dtype=float) - 65.0,
        "no_security": eq("OnlineSecurity", "No"),
        "no_tech_support": eq("TechSupport", "No"),
        "senior": f["SeniorCitizen"].to_numpy(dtype=float),
        "paperless": eq("PaperlessBilling", "Yes"),
        "dependents": eq("Dependents", "Yes"),
    }


def _probability(terms: dict[str, np.ndarray], scenario: str) -> np.ndarray:
    model = _CONCEPT_MODEL if scenario == "concept" else _NONE_MODEL
    logit = np.full(len(terms["senior"]), model["intercept"])
    for name, value in terms.items():
        logit += model[name] * value
    return _sigmoid(logit)


def churn_probability(features: pd.DataFrame, scenario: str = "none") -> np.ndarray:
    """The true ``P(churn | x)`` the generator draws labels from, one value per row.

    ``features`` needs the churn model's input columns (any other column is ignored).
    For every scenario except ``concept`` this is one and the same function. A
    category outside the schema (the new payment method) has no effect of its own,
    like an automatic payment; a missing tenure or MonthlyCharges gives NaN.
    """
    _check_scenario(scenario)
    missing = [c for c in _CHURN_INPUTS if c not in features.columns]
    if missing:
        raise ValueError(f"churn_probability: missing feature columns: {', '.join(missing)}")
    return _probability(_churn_terms(features), scenario)


# --------------------------------------------------------------------- generator


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
    TotalCharges float64 (TotalCharges NaN where tenure is 0, as the export's blank),
    everything else pandas' default string dtype.
    """
    _check_scenario(scenario)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not 0.0 <= float(progress) <= 1.0:
        raise ValueError(f"progress must be in [0, 1], got {progress!r}")
    n = int(n)
    shift = {"gradual": float(progress), "sudden": 1.0}.get(scenario, 0.0)

    rng = np.random.default_rng(seed)

    def uniform() -> np.ndarray:
        return rng.random(n)

    # Demographics.
    male = uniform() < 0.505
    senior = uniform() < 0.162
    partner = uniform() < np.where(senior, 0.47, 0.485)
    dependents = uniform() < np.where(partner, 0.56, 0.11) * np.where(senior, 0.5, 1.0)

    # Tenure: a mixture of new customers (geometric from 1), a uniform middle and a
    # loyal block (geometric down from 72); partners stay longer.
    u_comp, u_pos, u_zero = uniform(), uniform(), uniform()
    w_new = np.where(partner, 0.15, 0.29) + NEW_CUSTOMER_EXTRA_SHARE * shift
    w_loyal = np.where(partner, 0.17, 0.06) * (1.0 - LOYAL_CUSTOMER_CUT * shift)
    geo_new = 1 + np.floor(np.log1p(-u_pos) / np.log(1 - 0.33))
    geo_loyal = _MAX_TENURE - np.floor(np.log1p(-u_pos) / np.log(1 - 0.45))
    flat = 1 + np.floor(u_pos * (_MAX_TENURE - 1))
    tenure = np.where(u_comp < w_new, geo_new, np.where(u_comp > 1 - w_loyal, geo_loyal, flat))
    tenure = np.clip(tenure, 1, _MAX_TENURE)
    tenure[u_zero < _TENURE_ZERO_SHARE] = 0
    tenure = tenure.astype(np.int64)
    s = tenure / _MAX_TENURE

    # Services. Without phone service a customer has DSL, as in the export.
    phone = uniform() < 0.903
    u_net = uniform()
    net = _pick(u_net, [np.full(n, 0.0), 0.40 + 1.1 * senior, np.full(n, -0.03) - 1.2 * senior])
    net = np.where(phone, net, 0)  # codes: 0 DSL, 1 Fiber optic, 2 No
    dsl, fiber, no_net = net == 0, net == 1, net == 2
    has_net = ~no_net
    multi = uniform() < _sigmoid(-0.45 + 2.4 * (s - 0.45) + 0.9 * fiber - 0.6 * no_net)
    multi_code = np.where(phone, multi.astype(np.int64), 2)

    # Add-ons (codes: 0 No, 1 Yes, 2 No internet service) grow with tenure; fiber
    # customers stream more and buy security and support less than DSL customers.
    addon_params = {  # intercept, tenure slope, fiber
        "OnlineSecurity": (-0.22, 2.0, -0.75),
        "OnlineBackup": (-0.25, 2.0, 0.0),
        "DeviceProtection": (-0.33, 2.0, 0.15),
        "TechSupport": (-0.20, 2.0, -0.70),
        "StreamingTV": (-0.55, 1.6, 0.95),
        "StreamingMovies": (-0.55, 1.6, 0.95),
    }
    addons: dict[str, np.ndarray] = {}
    for name, (a, b, c_fiber) in addon_params.items():
        p = _sigmoid(a + b * (s - 0.45) + c_fiber * fiber)
        yes = uniform() < p
        addons[name] = np.where(has_net, yes.astype(np.int64), 2)

    # Contract grows with tenure; no-internet customers sign long contracts more often.
    u_contract = uniform()
    contract = _pick(
        u_contract,
        [
            2.25 - 3.6 * s + 0.25 * fiber + 0.3 * senior + MONTH_TO_MONTH_LOGIT_SHIFT * shift,
            np.full(n, 0.0),
            -2.3 + 3.2 * s + 0.9 * no_net,
        ],
    )
    m2m = contract == 0

    paperless = uniform() < _sigmoid(0.45 + 0.55 * fiber - 1.3 * no_net + 0.2 * senior)
    u_pay = uniform()
    pay = _pick(
        u_pay,
        [
            -0.15 + 0.55 * paperless + 0.55 * fiber - 1.6 * s + 0.45 * m2m,
            0.25 - 0.55 * paperless + 0.7 * no_net - 0.8 * s,
            -1.05 + 1.3 * s + 0.3 * ~m2m,
            -1.05 + 1.3 * s + 0.3 * ~m2m,
        ],
    )
    u_new_pay = uniform()

    # Charges follow the services; the price increase multiplies every bill.
    n_protect = sum(addons[k] == 1 for k in schema.INTERNET_ADDONS[:4])
    n_stream = (addons["StreamingTV"] == 1).astype(int) + (addons["StreamingMovies"] == 1)
    monthly = (
        20.0 * phone
        + 5.0 * (multi_code == 1)
        + 25.0 * dsl
        + 50.0 * fiber
        + 5.0 * n_protect
        + 10.0 * n_stream
        + np.where(no_net, 0.6, 1.6) * rng.standard_normal(n)
    )
    monthly = np.clip(monthly, 18.25, 118.75) * (1.0 + PRICE_INCREASE * shift)
    monthly = np.round(monthly * 20.0) / 20.0
    # Past bills varied a little (older prices, partial months); the variation averages
    # out over a long tenure.
    total_sd = np.where(tenure > 1, 0.05 / np.sqrt(np.maximum(tenure - 1, 1)), 0.0)
    total_noise = total_sd * rng.standard_normal(n)
    total = np.round(tenure * monthly * np.clip(1.0 + total_noise, 0.85, 1.15), 2)
    total[tenure == 0] = np.nan

    u_churn = uniform()

    pay_values = _CAT["PaymentMethod"]
    if scenario == "new_payment_method":
        pay_values = (*pay_values, NEW_PAYMENT_METHOD)
        pay = np.where(u_new_pay < NEW_PAYMENT_METHOD_SHARE, len(pay_values) - 1, pay)

    terms = {
        "one_year": (contract == 1).astype(float),
        "two_year": (contract == 2).astype(float),
        "fiber": fiber.astype(float),
        "no_internet": no_net.astype(float),
        "electronic_check": (pay == 0).astype(float),
        "log_tenure": np.log1p(tenure.astype(float)),
        "charges": monthly - 65.0,
        "no_security": (addons["OnlineSecurity"] == 0).astype(float),
        "no_tech_support": (addons["TechSupport"] == 0).astype(float),
        "senior": senior.astype(float),
        "paperless": paperless.astype(float),
        "dependents": dependents.astype(float),
    }
    churn = u_churn < _probability(terms, scenario)

    yes_no = schema.YES_NO
    return pd.DataFrame(
        {
            schema.ID_COLUMN: _str_series(customer_ids(id_offset, n)),
            "gender": _category_series(male, _CAT["gender"]),
            "SeniorCitizen": pd.Series(senior.astype(np.int64)),
            "Partner": _category_series(partner, yes_no),
            "Dependents": _category_series(dependents, yes_no),
            "tenure": pd.Series(tenure),
            "PhoneService": _category_series(phone, yes_no),
            "MultipleLines": _category_series(multi_code, _CAT["MultipleLines"]),
            "InternetService": _category_series(net, _CAT["InternetService"]),
            **{k: _category_series(v, _CAT[k]) for k, v in addons.items()},
            "Contract": _category_series(contract, _CAT["Contract"]),
            "PaperlessBilling": _category_series(paperless, yes_no),
            "PaymentMethod": _category_series(pay, pay_values),
            "MonthlyCharges": pd.Series(monthly.astype(np.float64)),
            "TotalCharges": pd.Series(total.astype(np.float64)),
            schema.TARGET: _category_series(churn, yes_no),
        },
        columns=list(schema.ALL_COLUMNS),
    )
