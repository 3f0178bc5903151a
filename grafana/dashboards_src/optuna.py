"""Churn – Optuna (uid ``churn-optuna``): progress of the hyper-parameter study that
trains the churn model."""

from __future__ import annotations

from typing import Any

from .common import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    UID_MODEL_PERFORMANCE,
    UID_OPTUNA,
    dashboard,
    finalize,
    fixed_colour,
    link_to,
    model_variable,
    organize,
    query,
    reference_line,
    row,
    stat,
    steps,
    study_variable,
    table,
    timeseries,
)

S = 'study="$study"'
DAY = 86400

#: Colours of the trial states (Optuna's TrialState names).
STATE_COLOURS = {
    "COMPLETE": GREEN,
    "PRUNED": BLUE,
    "FAIL": RED,
    "RUNNING": ORANGE,
    "WAITING": "purple",
}


def build() -> dict[str, Any]:
    builder = (
        dashboard(
            UID_OPTUNA,
            "Churn – Optuna",
            "The Optuna study behind the churn model (churn-monitor train): best objective "
            "value (cross-validated ROC AUC), trials by state, the best trial's parameters "
            "and how long ago the last trial finished. Updated by the exporter's optuna job.",
            time_from="now-7d",
        )
        .with_variable(model_variable())
        .with_variable(study_variable())
        .link(
            link_to(
                UID_MODEL_PERFORMANCE,
                "Model performance",
                "How the trained model does on live data",
            )
        )
    )
    trial_total = f"sum(churn_optuna_trials{{{S}}})"
    builder = (
        builder.with_row(row("Study $study"))
        .with_panel(
            stat(
                "Best value",
                "Best objective value of the study so far: the cross-validated ROC AUC of the "
                "best trial (0.5 is chance, 1 perfect). It only rises; a study whose best "
                "value stopped rising has converged.",
                [query(f"churn_optuna_best_value{{{S}}}", "best value", instant=True)],
                unit="percentunit",
                decimals=3,
                thresholds=steps((None, RED), (0.7, ORANGE), (0.8, GREEN)),
                span=6,
                graph=True,
            )
        )
        .with_panel(
            stat(
                "Trials",
                "Trials in the study, all states together (churn_optuna_trials summed over "
                "state). It grows only while `churn-monitor train` runs a search.",
                [query(trial_total, "trials", instant=True)],
                unit="short",
                thresholds=steps((None, BLUE)),
                span=6,
            )
        )
        .with_panel(
            stat(
                "Failed trials",
                "Share of trials that raised an error (state FAIL). A few are normal for "
                "extreme parameters; many mean a broken objective or data.",
                [
                    query(
                        f'sum(churn_optuna_trials{{{S}, state="FAIL"}}) / {trial_total}',
                        "failed",
                        instant=True,
                    )
                ],
                unit="percentunit",
                decimals=1,
                thresholds=steps((None, GREEN), (0.05, ORANGE), (0.2, RED)),
                span=6,
            )
        )
        .with_panel(
            stat(
                "Time since last trial",
                "How long ago the newest finished trial completed (time() − "
                "churn_optuna_last_trial_timestamp_seconds). Trials only run when the model "
                "is (re)trained, so a week is normal; a month means the model is not being "
                "retrained.",
                [
                    query(
                        f"time() - churn_optuna_last_trial_timestamp_seconds{{{S}}}",
                        "since last trial",
                        instant=True,
                    )
                ],
                unit="s",
                thresholds=steps((None, GREEN), (7 * DAY, ORANGE), (30 * DAY, RED)),
                span=6,
            )
        )
        .with_panel(
            timeseries(
                "Best value over time",
                "The study's best cross-validated ROC AUC as trials complete, and the test-set "
                "ROC AUC of the monitored model version (dashed; "
                "churn_model_performance_baseline). The two should be close: a test value far "
                "below the CV value points at overfitting the search.",
                [
                    query(f"churn_optuna_best_value{{{S}}}", "best value (CV)", ref="A"),
                    query(
                        'churn_model_performance_baseline{model="$model", metric="roc_auc"}',
                        "model baseline (test)",
                        ref="B",
                    ),
                ],
                unit="percentunit",
                max_value=1,
                span=12,
                height=9,
            ).override_by_name("model baseline (test)", reference_line(GREEN))
        )
        .with_panel(_trials_by_state())
        .with_panel(
            table(
                "Best parameters",
                "Numeric hyper-parameters of the best trial (churn_optuna_best_param, one row "
                "per parameter). Categorical choices are not exported (labels must stay "
                "bounded); see the Optuna dashboard on port 8080 for the full trial.",
                [query(f"churn_optuna_best_param{{{S}}}", ref="A", table=True)],
                transformations=[
                    organize(
                        exclude=("Time", "__name__", "instance", "job", "study"),
                        order=("param", "Value"),
                        rename={"Value": "value"},
                    )
                ],
                span=24,
                height=8,
                sort_by=("param", False),
            ).decimals(4)
        )
    )
    return finalize(builder)


def _trials_by_state() -> Any:
    panel = timeseries(
        "Trials by state",
        "Number of trials per state over time (stacked): COMPLETE, PRUNED (stopped early by "
        "the pruner), FAIL (raised), RUNNING, WAITING. A growing FAIL band is the thing to "
        "watch.",
        [query(f"sum by (state) (churn_optuna_trials{{{S}}})", "{{state}}")],
        unit="short",
        min_value=0,
        stacked=True,
        span=12,
        height=9,
    )
    for state, colour in STATE_COLOURS.items():
        panel = panel.override_by_name(state, [fixed_colour(colour)])
    return panel
