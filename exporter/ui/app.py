"""The churn prediction form: `churn-monitor ui` runs this script with Streamlit.

One customer's 19 features in, the prediction API's answer out: churn probability,
label against the decision threshold, confidence in words, the model version, a
warning when the customer is unlike the customers the model was trained on (the API's
``unusual``), the champion's global feature importances and, for this customer, the
features that push the probability most. Every failure is a message on the page (the
inputs stay as they were); no traceback is shown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from exporter.config import ConfigError, MonitoringConfig
from exporter.domain import schema
from exporter.ui import explain, form
from exporter.ui.apiclient import ApiClient, ApiError, PredictionResult, api_url
from exporter.ui.launch import load_ui_config

log = logging.getLogger("churn_monitor.ui")

KEY = "in_"  # widget keys: KEY + feature name
AUTO_TOTAL = "auto_total"
OUTCOME = "outcome"

LABELS: dict[str, str] = {
    "gender": "Gender",
    "SeniorCitizen": "Senior citizen",
    "Partner": "Partner",
    "Dependents": "Dependents",
    "tenure": "Tenure (months)",
    "PhoneService": "Phone service",
    "MultipleLines": "Multiple lines",
    "InternetService": "Internet service",
    "OnlineSecurity": "Online security",
    "OnlineBackup": "Online backup",
    "DeviceProtection": "Device protection",
    "TechSupport": "Tech support",
    "StreamingTV": "Streaming TV",
    "StreamingMovies": "Streaming movies",
    "Contract": "Contract",
    "PaperlessBilling": "Paperless billing",
    "PaymentMethod": "Payment method",
    "MonthlyCharges": "Monthly charges ($)",
    "TotalCharges": "Total charges ($)",
}

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Customer", ("gender", "SeniorCitizen", "Partner", "Dependents", "tenure")),
    ("Phone and internet", ("PhoneService", "MultipleLines", "InternetService")),
    ("Internet add-ons", schema.INTERNET_ADDONS),
    (
        "Contract and billing",
        ("Contract", "PaperlessBilling", "PaymentMethod", "MonthlyCharges", "TotalCharges"),
    ),
)


@dataclass
class Outcome:
    """What the last press of "Predict churn" produced (kept across reruns)."""

    payload: dict[str, Any]
    error: str | None = None
    prediction: PredictionResult | None = None
    effects: list[explain.Effect] = field(default_factory=list)
    effects_note: str | None = None
    importance: dict[str, float] = field(default_factory=dict)
    importance_note: str | None = None


# ---------------------------------------------------------------------- resources


@st.cache_data(ttl=60, show_spinner=False)
def _reference(path: str, _mtime: float) -> form.Reference:
    return form.load_reference(path)


def reference_for(config: MonitoringConfig) -> form.Reference:
    path = Path(config.data.reference_path)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = -1.0
    return _reference(str(path), mtime)


@st.cache_data(ttl=600, show_spinner=False)
def _importance(_config: MonitoringConfig, config_key: str, run_id: str) -> dict[str, float]:
    from exporter.ui.importance import feature_importance

    return feature_importance(_config, run_id)


@st.cache_data(ttl=300, show_spinner=False)
def _unlogged_batch(url: str) -> bool:
    return ApiClient(url).supports_unlogged_batch()


@st.cache_resource(show_spinner=False)
def _local_scorer(_config: MonitoringConfig, config_key: str) -> Any:
    from exporter.ui.localscore import LocalScorer

    return LocalScorer(_config)


# --------------------------------------------------------------------------- form


def _state_values() -> dict[str, Any]:
    return {name: st.session_state[KEY + name] for name in schema.FEATURES}


def _prepare_state(reference: form.Reference) -> None:
    """Defaults on the first run; dependent fields and auto TotalCharges kept consistent
    on every run (before any widget is drawn, so the widgets show the fixed values)."""
    state = st.session_state
    for name in schema.FEATURES:
        state.setdefault(KEY + name, reference.typical[name])
    state.setdefault(AUTO_TOTAL, True)
    values = _state_values()
    fixed = form.consistent(values, reference.with_service)
    if state[AUTO_TOTAL]:
        fixed["TotalCharges"] = form.total_charges_estimate(
            int(values["tenure"]), float(values["MonthlyCharges"])
        )
    for name, value in fixed.items():
        if values[name] != value:
            state[KEY + name] = value


def _widget(name: str, values: dict[str, Any]) -> None:
    label, key = LABELS[name], KEY + name
    help_text = f"Column `{name}` of the Telco export."
    if name == "SeniorCitizen":
        st.selectbox(
            label,
            (0, 1),
            key=key,
            format_func=form.SENIOR_LABELS.__getitem__,
            help=f"{help_text} Sent as 1 (Yes) or 0 (No).",
        )
    elif name in schema.CATEGORIES:
        choices = form.options(name, values)
        disabled = name in form.DEPENDENTS and not form.has_service(values, name)
        if disabled:
            service = form.DEPENDENTS[name][0]
            help_text += f" Fixed while {LABELS[service].lower()} is No."
        st.selectbox(label, choices, key=key, disabled=disabled, help=help_text)
    elif name == "tenure":
        low, high = schema.NUMERIC_RANGES[name]
        st.number_input(label, int(low), int(high), step=1, key=key, help=help_text)
    elif name == "MonthlyCharges":
        low, high = schema.NUMERIC_RANGES[name]
        st.number_input(
            label, float(low), float(high), step=0.05, format="%.2f", key=key, help=help_text
        )
    else:  # TotalCharges
        low, high = schema.NUMERIC_RANGES[name]
        auto = st.session_state[AUTO_TOTAL]
        st.number_input(
            label,
            float(low),
            float(high),
            step=1.0,
            format="%.2f",
            key=key,
            disabled=auto,
            help=f"{help_text} Untick the box below to type it.",
        )
        st.checkbox("Tenure × monthly charges", key=AUTO_TOTAL)


def draw_form(reference: form.Reference) -> dict[str, Any]:
    """Draw the 19 inputs; return the API request body for their current values."""
    values = _state_values()
    columns = st.columns(len(GROUPS), gap="medium")
    for column, (title, names) in zip(columns, GROUPS, strict=True):
        with column:
            st.subheader(title)
            for name in names:
                _widget(name, values)
    return form.customer_payload(_state_values())


# --------------------------------------------------------------------- prediction


def _effects(
    config: MonitoringConfig,
    client: ApiClient,
    payload: dict[str, Any],
    reference: form.Reference,
    version: str,
) -> list[explain.Effect]:
    """Effects of this customer's features; what-if variants never enter the log."""
    if _unlogged_batch(client.base_url):
        score = client.predict_unlogged
    else:
        scorer = _local_scorer(config, config.model_dump_json())

        def score(customers: Any) -> list[float]:
            return scorer.score(customers, version)

    _base, found = explain.effects(payload, reference, score)
    return found


def predict(config: MonitoringConfig, payload: dict[str, Any], reference: form.Reference) -> None:
    """Ask the API; store the outcome (answer or error) in the session."""
    client = ApiClient(api_url(config))
    outcome = Outcome(payload=payload)
    st.session_state[OUTCOME] = outcome
    try:
        outcome.prediction = client.predict(payload)
    except ApiError as err:
        outcome.error = str(err)
        return
    version = outcome.prediction.model_version
    try:
        info = client.model()
        if str(info.get("version")) != version:
            outcome.importance_note = (
                f"The API switched to model version {info.get('version')} after answering; "
                "press Predict churn again."
            )
        else:
            outcome.importance = _importance(
                config, config.model_dump_json(), str(info.get("run_id", ""))
            )
    except Exception as err:  # importances are extra information: never fail the page
        outcome.importance_note = f"The model's feature importances are not available: {err}"
    try:
        outcome.effects = _effects(config, client, payload, reference, version)
    except Exception as err:
        log.warning("cannot explain the prediction: %s", err, exc_info=True)
        outcome.effects_note = f"Cannot work out which features push this prediction: {err}"


# ------------------------------------------------------------------------ results


def _importance_chart(importance: dict[str, float]) -> alt.Chart:
    frame = pd.DataFrame(
        {
            "feature": [LABELS.get(name, name) for name in importance],
            "column": list(importance),
            "importance": list(importance.values()),
        }
    )
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("importance:Q", title="Drop in ROC AUC when shuffled"),
            y=alt.Y(
                "feature:N",
                sort="-x",
                title=None,
                axis=alt.Axis(labelOverlap=False, labelLimit=200),
            ),
            tooltip=["feature", "column", alt.Tooltip("importance:Q", format=".4f")],
        )
        .properties(height=alt.Step(20))
    )


def show_outcome(current: dict[str, Any]) -> None:
    outcome: Outcome | None = st.session_state.get(OUTCOME)
    if outcome is None:
        return
    with st.container(key="result", border=True):
        if outcome.payload != current:
            st.warning(
                "The inputs changed since this answer; press **Predict churn** to score them."
            )
        if outcome.error is not None:
            st.error(outcome.error)
            st.caption("Your inputs are kept. Fix the problem and press Predict churn again.")
            return
        result = outcome.prediction
        assert result is not None
        p, t = result.churn_probability, result.threshold
        churn = result.predicted == schema.POSITIVE
        left, middle, right = st.columns(3)
        left.metric("Churn probability", f"{p:.1%}")
        middle.metric("Prediction", "Churn" if churn else "No churn")
        right.metric("Model", f"{result.model_name} v{result.model_version}")
        st.markdown(
            f"Churn probability **{p:.4f}** against the decision threshold **{t:.4f}**: "
            f"predicted **{'churn' if churn else 'no churn'}**."
        )
        st.markdown(explain.confidence(p, t).text)
        unusual = explain.unusual_warning(
            result.unusual, result.anomaly_score, result.anomaly_cutoff
        )
        if unusual is not None:
            st.warning(unusual, icon="⚠️")
        why, importance = st.columns(2, gap="large")
        with why:
            st.subheader("What pushes this customer's probability")
            if outcome.effects_note:
                st.info(outcome.effects_note)
            else:
                sentences = explain.top_sentences(outcome.effects)
                if sentences:
                    st.markdown("\n".join(f"- {s}" for s in sentences))
                else:
                    st.markdown(
                        "No feature moves the probability by half a point or more compared "
                        "with a typical customer's value."
                    )
                st.caption(
                    "Each feature set alone to a typical customer's value (mode or median of "
                    "the reference data); the change in probability is its effect."
                )
        with importance:
            st.subheader("What the model looks at overall")
            if outcome.importance:
                st.altair_chart(_importance_chart(outcome.importance), width="stretch")
                st.caption(
                    "Permutation importance from the champion's training run (MLflow): how "
                    "much the test ROC AUC drops when the feature is shuffled."
                )
            else:
                st.info(
                    outcome.importance_note or "The model's feature importances are not available."
                )


# --------------------------------------------------------------------------- page


def main() -> None:
    st.set_page_config(page_title="Churn prediction", layout="wide")
    st.title("Churn prediction")
    try:
        config = load_ui_config()
    except (ConfigError, ValueError) as err:
        st.error(f"The configuration is not valid: {err}")
        st.stop()
    reference = reference_for(config)
    st.caption(
        f"Scores one customer with the model the prediction API at {api_url(config)} serves. "
        f"The inputs start at a typical customer ({reference.source})."
    )
    if reference.note:
        st.caption(f"Note: {reference.note}.")
    _prepare_state(reference)
    payload = draw_form(reference)
    if st.button("Predict churn", key="predict", type="primary"):
        with st.spinner("Asking the prediction API…"):
            try:
                predict(config, payload, reference)
            except Exception as err:  # the page shows a sentence, the log the traceback
                log.exception("prediction failed")
                st.session_state[OUTCOME] = Outcome(
                    payload=payload, error=f"Something went wrong: {err}"
                )
    show_outcome(payload)


main()
