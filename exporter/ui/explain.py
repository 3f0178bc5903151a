"""What the page says about a prediction: confidence and the features that push it.

**Confidence** is the distance of the probability from the decision threshold, as a
share of the way to certainty on that side: ``(p - t) / (1 - t)`` above the
threshold, ``(t - p) / t`` below. Under 0.2 is *low* (a small change of the inputs
could flip the label), under 0.5 *medium*, else *high*.

**What pushes this customer's probability**: for each feature, the customer is scored
again with that one feature set to the reference's typical value (a counterfactual),
and the feature's effect is ``p(customer) - p(counterfactual)``: positive when the
customer's own value raises the probability compared with a typical customer's. A
counterfactual stays a valid customer: setting InternetService or PhoneService also
sets their dependent features, and a dependent feature of a service the customer lacks
(an internet add-on without internet) has no counterfactual. Features already at the
typical value have no effect to report.

**Unusual customers**: the API scores how unlike the training data (the champion's
reference snapshot) a customer is; when it says ``unusual``, the page says so in one
warning (:func:`unusual_warning`), with the anomaly score and its cut-off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.domain import schema
from exporter.ui.form import DEPENDENTS, Reference, consistent

#: Effects smaller than this (half a percentage point) are not worth a sentence.
MIN_EFFECT = 0.005


def unusual_warning(unusual: bool | None, score: float | None, cutoff: float | None) -> str | None:
    """The warning for a customer the API calls unusual (None otherwise): the anomaly
    score and cut-off when the API gives them."""
    if not unusual:
        return None
    figures = []
    if score is not None:
        figures.append(f"anomaly score {score:.2f}")
    if cutoff is not None:
        figures.append(f"cut-off {cutoff:.2f}")
    said = f" ({', '.join(figures)})" if figures else ""
    return (
        f"This customer is unlike the customers the model was trained on{said}: "
        "treat the prediction with care."
    )


@dataclass(frozen=True)
class Confidence:
    level: str  # "low", "medium" or "high"
    margin: float  # 0 at the threshold, 1 at certainty
    text: str


def confidence(probability: float, threshold: float) -> Confidence:
    """How far `probability` is from `threshold`, in words."""
    above = probability >= threshold
    span = (1.0 - threshold) if above else threshold
    margin = abs(probability - threshold) / span if span > 0 else 1.0
    margin = min(max(margin, 0.0), 1.0)
    level = "high" if margin >= 0.5 else "medium" if margin >= 0.2 else "low"
    points = abs(probability - threshold) * 100
    side = "above" if above else "below"
    text = (
        f"{level.capitalize()} confidence: the probability is {points:.1f} points {side} "
        f"the decision threshold of {threshold:.1%}."
    )
    if level == "low":
        text += " A small change in the inputs could flip the prediction."
    return Confidence(level, margin, text)


# ------------------------------------------------------------------ counterfactuals


def counterfactual(
    customer: Mapping[str, Any], feature: str, reference: Reference
) -> dict[str, Any] | None:
    """`customer` with `feature` at the typical value (dependents kept valid), or None
    when the feature cannot be changed alone or already has the typical value."""
    if feature in DEPENDENTS:
        service, no_service, _none = DEPENDENTS[feature]
        if customer.get(service) == no_service:
            return None
        typical = reference.with_service.get(feature, "No")
    else:
        typical = reference.typical[feature]
    if customer.get(feature) == typical:
        return None
    variant = dict(customer)
    variant[feature] = typical
    if feature in ("InternetService", "PhoneService"):
        variant = consistent(variant, reference.with_service)
    return variant


def counterfactuals(
    customer: Mapping[str, Any], reference: Reference
) -> list[tuple[str, dict[str, Any]]]:
    """(feature, counterfactual) for every feature that has one, in schema order."""
    out = []
    for feature in schema.FEATURES:
        variant = counterfactual(customer, feature, reference)
        if variant is not None:
            out.append((feature, variant))
    return out


@dataclass(frozen=True)
class Effect:
    feature: str
    value: Any  # the customer's value
    typical: Any  # the counterfactual's value
    delta: float  # p(customer) - p(counterfactual)


def effects(
    customer: Mapping[str, Any],
    reference: Reference,
    score: Callable[[Sequence[Mapping[str, Any]]], Sequence[float]],
) -> tuple[float, list[Effect]]:
    """The customer's probability and each feature's effect, largest first.

    `score` gets the customer followed by its counterfactuals in one call (one model
    call or one API request) and returns their probabilities in that order.
    """
    variants = counterfactuals(customer, reference)
    scores = list(score([dict(customer), *(v for _f, v in variants)]))
    if len(scores) != len(variants) + 1:
        raise ValueError(f"expected {len(variants) + 1} scores, got {len(scores)}")
    base = float(scores[0])
    found = [
        Effect(feature, customer[feature], variant[feature], base - float(p))
        for (feature, variant), p in zip(variants, scores[1:], strict=True)
    ]
    found.sort(key=lambda e: (-abs(e.delta), schema.FEATURES.index(e.feature)))
    return base, found


# ---------------------------------------------------------------------------- words

_SERVICE_NAMES = {
    "OnlineSecurity": "online security",
    "OnlineBackup": "online backup",
    "DeviceProtection": "device protection",
    "TechSupport": "tech support",
    "StreamingTV": "TV streaming",
    "StreamingMovies": "movie streaming",
}
_PAYMENT = {
    "Electronic check": "payment by electronic check",
    "Mailed check": "payment by mailed check",
    "Bank transfer (automatic)": "payment by automatic bank transfer",
    "Credit card (automatic)": "payment by automatic credit card charge",
}


def _money(value: Any) -> str:
    return f"${float(value):,.2f}"


def phrase(feature: str, value: Any) -> str:
    """A lower-case noun phrase for a feature's value ("a two-year contract" style,
    without the article), fit for "<phrase> raises ..." and "a typical customer's
    <phrase>"."""
    if feature == "gender":
        return f"{str(value).lower()} gender"
    if feature == "SeniorCitizen":
        return "senior-citizen status" if int(value) == 1 else "non-senior status"
    if feature in ("Partner", "Dependents"):
        noun = "a partner" if feature == "Partner" else "dependents"
        return f"having {noun}" if value == "Yes" else f"having no {noun.removeprefix('a ')}"
    if feature == "tenure":
        months = int(value)
        return f"tenure of {months} month{'s' if months != 1 else ''}"
    if feature == "PhoneService":
        return "phone service" if value == "Yes" else "no phone service"
    if feature == "MultipleLines":
        return {"Yes": "multiple phone lines", "No": "a single phone line"}.get(
            value, "no phone service"
        )
    if feature == "InternetService":
        return {"DSL": "DSL internet", "Fiber optic": "fiber-optic internet"}.get(
            value, "no internet service"
        )
    if feature in _SERVICE_NAMES:
        name = _SERVICE_NAMES[feature]
        return {"Yes": name, "No": f"no {name}"}.get(value, "no internet service")
    if feature == "Contract":
        return {
            "Month-to-month": "month-to-month contract",
            "One year": "one-year contract",
            "Two year": "two-year contract",
        }.get(value, f"{value} contract")
    if feature == "PaperlessBilling":
        return "paperless billing" if value == "Yes" else "paper billing"
    if feature == "PaymentMethod":
        return _PAYMENT.get(value, f"payment by {value}")
    if feature == "MonthlyCharges":
        return f"monthly charges of {_money(value)}"
    if feature == "TotalCharges":
        return "blank total charges" if value is None else f"total charges of {_money(value)}"
    return f"{feature} {value}"


def _points(delta: float) -> str:
    points = abs(delta) * 100
    return f"{points:.0f} points" if points >= 9.5 else f"{points:.1f} points"


def sentence(effect: Effect) -> str:
    """``Month-to-month contract raises the churn probability by 12 points compared
    with a typical customer's two-year contract.``"""
    subject = phrase(effect.feature, effect.value)
    plural = effect.feature in ("MonthlyCharges", "TotalCharges") or (
        effect.feature == "MultipleLines" and effect.value == "Yes"
    )
    verb = ("raise" if effect.delta > 0 else "lower") + ("" if plural else "s")
    return (
        f"{subject[0].upper()}{subject[1:]} {verb} the churn probability by "
        f"{_points(effect.delta)} compared with a typical customer's "
        f"{phrase(effect.feature, effect.typical)}."
    )


def top_sentences(found: Sequence[Effect], n: int = 3) -> list[str]:
    """Sentences for the `n` largest effects of at least :data:`MIN_EFFECT`."""
    return [sentence(e) for e in found[:n] if abs(e.delta) >= MIN_EFFECT]
