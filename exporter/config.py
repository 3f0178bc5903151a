"""Monitoring configuration: the YAML file, validated with pydantic.

Every model forbids unknown keys, so a typo is an error naming its dotted path rather
than a silently ignored setting. Relative paths are resolved against the working
directory the process runs in (the repository root in the README's commands).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exporter.domain import schema
from exporter.domain.alerts import AlertType
from exporter.domain.drift_rules import DriftMethod, FeatureKind, check_method
from exporter.domain.metrics import Metric
from exporter.domain.scenarios import Scenario

DEFAULT_CONFIG_PATH = Path("configs/monitoring/monitoring_config.yaml")
CONFIG_ENV = "CHURN_MONITOR_CONFIG"

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveMinutes = Annotated[float, Field(gt=0.0, le=7 * 24 * 60)]
Port = Annotated[int, Field(ge=0, le=65535)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigError(ValueError):
    """A configuration problem; the message starts with the dotted path of the field."""


#: The database backends the stores are built and tested on.
DATABASE_BACKENDS = ("sqlite", "postgresql")


def _database_url(url: str) -> str:
    """`url` when it is an SQLAlchemy URL of a supported backend; otherwise ValueError
    (which does not repeat the URL: it may hold a password)."""
    expected = "expected sqlite:///FILE or postgresql+psycopg://USER@HOST/DATABASE"
    try:
        backend = sa.engine.make_url(url).get_backend_name()
    except sa.exc.ArgumentError:
        raise ValueError(f"not a database URL: {expected}") from None
    if backend not in DATABASE_BACKENDS:
        raise ValueError(f"unsupported database {backend!r}: {expected}")
    return url


#: An SQLAlchemy URL of SQLite or PostgreSQL.
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureRule(_Strict):
    """Per-feature override of the drift test and its threshold (which tests apply to
    which kind of feature: :mod:`exporter.domain.drift_rules`)."""

    method: DriftMethod
    threshold: Annotated[float, Field(gt=0.0)]


class MultivariateConfig(_Strict):
    """Multivariate drift and unusual rows (:mod:`exporter.stats.multivariate`)."""

    enabled: bool = True
    #: Share of the reference variance the principal components keep (NannyML's 65 %).
    variance_share: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.65
    #: Wanted share of no-drift windows that the multivariate decision flags, and that
    #: the unusual-row verdict flags.
    false_alarm_rate: Annotated[float, Field(gt=0.0, le=0.2)] = 0.01
    #: Share of reference-like rows called unusual (sets the per-row cut-off).
    unusual_rate: Annotated[float, Field(gt=0.0, le=0.2)] = 0.01
    #: Most window rows (and so reference rows) the domain classifier sees: its cost cap.
    domain_classifier_max_rows: Annotated[int, Field(ge=100, le=1_000_000)] = 5000


class DataDriftConfig(_Strict):
    enabled: bool = True
    #: The dataset drift score (share of decided features that drifted) above which the
    #: dataset counts as drifted.
    drift_threshold: Probability = 0.15
    #: `ChurnDataDriftDetected` goes critical at this multiple of `drift_threshold`.
    critical_multiplier: Annotated[float, Field(ge=1.0)] = 2.0
    check_interval_minutes: PositiveMinutes = 30
    psi_bins: Annotated[int, Field(ge=2, le=100)] = 10
    #: Below this many current rows no drift decision is made.
    min_window_rows: Annotated[int, Field(ge=1)] = 300
    #: Streaming: every this many seconds, the exporter reads the rows and labels logged
    #: since its last look into an in-memory window (the `data.current` window) and
    #: serves its univariate and dataset drift (`task="stream"`); null: off. The full
    #: run above still writes the reports, the history and the multivariate drift.
    update_seconds: Annotated[float, Field(gt=0.0, le=86400.0)] | None = None
    multivariate: MultivariateConfig = MultivariateConfig()

    @property
    def critical_threshold(self) -> float:
        """Where the dataset drift score goes critical: ``drift_threshold ×
        critical_multiplier``, at most 1 (a share of features)."""
        return min(1.0, self.drift_threshold * self.critical_multiplier)


class PerformanceThresholds(_Strict):
    min_accuracy: Probability = 0.70
    min_precision: Probability = 0.50
    min_recall: Probability = 0.40
    min_f1: Probability = 0.45
    min_roc_auc: Probability = 0.70
    #: Baseline minus realized value (absolute) above which the model counts as degraded.
    degradation_threshold: Probability = 0.05


class PerformanceConfig(_Strict):
    enabled: bool = True
    check_interval_minutes: PositiveMinutes = 30
    min_labeled_rows: Annotated[int, Field(ge=1)] = 100
    #: Realized metrics use predictions made in this many hours that have feedback (churn
    #: labels arrive weeks late, so this window is longer than the drift window).
    label_window_hours: Annotated[float, Field(gt=0)] = 720.0
    #: PSI of the model's scores (current window against reference) above which the
    #: prediction distribution counts as drifted.
    prediction_drift_psi_threshold: Annotated[float, Field(gt=0.0)] = 0.2
    thresholds: PerformanceThresholds = PerformanceThresholds()


class FeaturesConfig(_Strict):
    numeric: tuple[str, ...] = schema.NUMERIC_FEATURES
    categorical: tuple[str, ...] = schema.CATEGORICAL_FEATURES
    overrides: dict[str, FeatureRule] = {}

    @model_validator(mode="after")
    def _check(self) -> FeaturesConfig:
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f"features listed as both numeric and categorical: {sorted(both)}")
        known = set(self.numeric) | set(self.categorical)
        unknown = sorted(set(self.overrides) - known)
        if unknown:
            raise ValueError(f"overrides name features that are not monitored: {unknown}")
        for feature, rule in self.overrides.items():
            kind: FeatureKind = "numeric" if feature in self.numeric else "categorical"
            try:
                check_method(kind, rule.method)
            except ValueError as err:
                raise ValueError(f"overrides.{feature}.method: {err}") from None
        return self


class ModelConfig(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")] = "churn-model"
    registry_alias: Annotated[str, Field(min_length=1)] = "champion"
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    #: Load the model from this MLflow model directory instead of the registry.
    local_path: str | None = None
    #: The registry alias of the challenger: retraining registers it there, the API
    #: shadow-scores it and the exporter compares it with the champion (null: none).
    challenger_alias: Annotated[str, Field(min_length=1)] | None = Field(
        default="challenger", validate_default=True
    )

    @field_validator("challenger_alias")
    @classmethod
    def _not_the_champion(cls, alias: str | None, info: ValidationInfo) -> str | None:
        if alias is not None and alias == info.data.get("registry_alias"):
            raise ValueError(
                f"{alias!r} is model.registry_alias: a model cannot challenge itself "
                "(set another alias, or null for none)"
            )
        return alias


class CurrentSourceConfig(_Strict):
    """Where the current window comes from."""

    kind: Literal["sql", "file"] = "sql"
    #: SQLAlchemy URL of the prediction log (kind ``sql``).
    url: DatabaseUrl = "sqlite:///data/predictions.db"
    table: str = "predictions"
    #: CSV or Parquet path or glob (kind ``file``).
    path: str | None = None
    #: Window: rows logged in the last N hours and/or the last N rows (both may apply).
    window_hours: Annotated[float, Field(gt=0)] | None = 24.0
    window_rows: Annotated[int, Field(ge=1)] | None = 5000

    @model_validator(mode="after")
    def _check(self) -> CurrentSourceConfig:
        if self.kind == "file" and not self.path:
            raise ValueError("path is required when kind is 'file'")
        return self


class DataConfig(_Strict):
    #: Reference snapshot written at training time (Parquet or CSV).
    reference_path: str = "data/reference/reference.parquet"
    current: CurrentSourceConfig = CurrentSourceConfig()


class OptunaConfig(_Strict):
    enabled: bool = True
    storage: DatabaseUrl = "sqlite:///data/optuna.db"
    study_name: Annotated[str, Field(min_length=1)] = "churn-model"
    n_trials: Annotated[int, Field(ge=1)] = 20
    check_interval_minutes: PositiveMinutes = 5


#: An email address as Alertmanager's ``to:`` takes it (``name@host``).
EmailAddress = Annotated[str, Field(pattern=r"^[^@\s,]+@[^@\s,]+$")]


class DigestConfig(_Strict):
    """The scheduled digest: the period report emailed as HTML (docs/reports.md).

    Off by default. The SMTP relay, sender, login and password file are Alertmanager's
    (``global.smtp_*`` of `alertmanager_config`): one place configures both.
    """

    enabled: bool = False
    #: The digest covers the last this many hours and is sent once per this many hours.
    period_hours: Annotated[float, Field(gt=0.0, le=24 * 366)] = 168.0
    #: How often the job checks whether a digest is due (and retries a failed send).
    check_interval_minutes: PositiveMinutes = 60
    #: Recipients; required when enabled.
    to: tuple[EmailAddress, ...] = Field(default=(), validate_default=True)
    #: The Alertmanager config whose ``global.smtp_*`` settings the digest uses (`up`
    #: renders one pointing at the local sinks: data/stack/alertmanager.yml).
    alertmanager_config: Annotated[str, Field(min_length=1)] = "alertmanager/alertmanager.yml"

    @field_validator("to")
    @classmethod
    def _recipients(cls, to: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.data.get("enabled") and not to:
            raise ValueError("at least one recipient is required when the digest is enabled")
        return to


class ReportsConfig(_Strict):
    dir: str = "reports"
    retention_days: Annotated[float, Field(gt=0)] = 30
    #: Write an HTML report beside each run's JSON reports (same name, same retention).
    html: bool = True
    digest: DigestConfig = DigestConfig()


class IngestConfig(_Strict):
    """The exporter's push endpoint, ``POST /ingest`` (docs/ingest.md).

    Off unless enabled: it writes into the prediction log, which drives the drift and
    performance alerts and, with retraining on, the training data. Enabled, it takes
    the same basic auth and TLS as /metrics (``exporter.web_config_file``).
    """

    enabled: bool = False
    #: Largest request body accepted, in bytes (more: 413).
    max_body_bytes: Annotated[int, Field(ge=1024, le=100_000_000)] = 5_000_000


class ExporterConfig(_Strict):
    host: str = "127.0.0.1"
    port: Port = 9108
    #: TLS and basic auth, in the format of Prometheus' --web.config.file (docs/security.md).
    web_config_file: str | None = None
    ingest: IngestConfig = IngestConfig()


class ApiConfig(_Strict):
    """The prediction service (`churn-monitor api`) and the simulator's target."""

    host: str = "127.0.0.1"
    port: Port = 8000
    #: Base URL the traffic simulator sends to (`churn-monitor simulate --api`).
    url: str = "http://127.0.0.1:8000"
    #: Most customers in one `POST /predict/batch` (more: 413).
    max_batch: Annotated[int, Field(ge=1, le=100_000)] = 1000
    #: Largest request body accepted, in bytes (more: 413).
    max_body_bytes: Annotated[int, Field(ge=1024)] = 2_000_000
    #: How often the registry is asked whether the champion (or challenger) alias moved.
    model_poll_seconds: Annotated[float, Field(gt=0)] = 30.0
    #: Score every request with the challenger too (``model.challenger_alias``), logged
    #: beside the champion's score and never served.
    shadow_scoring: bool = True
    #: TLS and basic auth, in the format of Prometheus' --web.config.file (docs/security.md).
    web_config_file: str | None = None


class SimulatorConfig(_Strict):
    """The traffic `churn-monitor up` sends when it starts the simulator service."""

    rate: Annotated[float, Field(gt=0)] = 2.0
    scenario: Scenario = "gradual"
    duration_seconds: Annotated[float, Field(gt=0)] = 86400.0
    label_delay_seconds: Annotated[float, Field(ge=0)] = 60.0


class HistoryConfig(_Strict):
    """The monitoring history database (alerts received, runs, retraining decisions)."""

    enabled: bool = True
    url: DatabaseUrl = "sqlite:///data/history.db"


class RetrainingConfig(_Strict):
    """The closed loop: retrain when certain alerts fire, promote only if better."""

    enabled: bool = False
    #: Firing alerts of these `alert_type`s start a retraining.
    alert_types: tuple[AlertType, ...] = ("MODEL_DEGRADATION", "THRESHOLD_BREACH")
    #: No new retraining within this many minutes of the last one.
    cooldown_minutes: Annotated[float, Field(ge=0)] = 360.0
    #: Labelled predictions of this many hours are the training data.
    data_window_hours: Annotated[float, Field(gt=0)] = 720.0
    #: Fewer labelled rows than this: no retraining (recorded as skipped).
    min_rows: Annotated[int, Field(ge=50)] = 500
    #: Share of the labelled rows held out to compare champion and challenger.
    holdout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.3
    #: The comparison metric on the holdout and the margin the challenger must win by.
    metric: Metric = "roc_auc"
    min_improvement: Annotated[float, Field(ge=0.0)] = 0.01
    trials: Annotated[int, Field(ge=1)] = 10


#: A Prometheus duration: ``15s``, ``1m30s``, ``500ms``.
Duration = Annotated[str, Field(pattern=r"^(\d+(ms|s|m|h|d|w|y))+$")]
#: The servers of `churn-monitor up` whose port this section may set (the API's and the
#: exporter's are in their own sections).
StackPort = Literal[
    "mlflow", "optuna-dashboard", "ui", "prometheus", "alertmanager", "sinks", "sinks-smtp"
]


class StackConfig(_Strict):
    """`churn-monitor up`: ports, the local notification sinks and the alerting timers.

    Only the local stack reads this section. Compose runs Prometheus and Alertmanager on
    the shipped files, as they are.
    """

    #: Port overrides, e.g. ``{prometheus: 9190}``; ``--port`` on the command line wins.
    ports: dict[StackPort, Port] = {}
    #: Where `churn-monitor sinks` stores email (``email/*.eml``) and Slack posts
    #: (``slack/*.json``); `churn-monitor outbox` reads it.
    outbox_dir: str = "data/outbox"
    #: Prometheus' scrape and rule-evaluation intervals (null: prometheus.yml's).
    scrape_interval: Duration | None = None
    evaluation_interval: Duration | None = None
    #: Every alert rule's ``for:`` is multiplied by this (1: the shipped rules as they
    #: are). A demo or a test shortens them all and keeps their proportions.
    alert_for_scale: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    #: Prometheus' --rules.alert.resend-delay (null: Prometheus' default, 1m).
    alert_resend_delay: Duration | None = None
    #: Alertmanager's timers on every route (null: alertmanager.yml's).
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    #: Restart policy of `up` (like compose's ``restart: unless-stopped``): a server that
    #: exits on its own is started again after ``restart_backoff_seconds``, doubled on
    #: each further crash up to ``restart_backoff_max_seconds``; its
    #: ``restart_max_crashes``-th crash within ``restart_window_seconds`` stops the stack.
    restart_max_crashes: Annotated[int, Field(ge=1)] = 5
    restart_window_seconds: Annotated[float, Field(gt=0)] = 300.0
    restart_backoff_seconds: Annotated[float, Field(gt=0)] = 1.0
    restart_backoff_max_seconds: Annotated[float, Field(gt=0)] = 30.0


class ComparisonConfig(_Strict):
    """Champion against challenger on the same labelled rows (the shadow scores)."""

    enabled: bool = True
    check_interval_minutes: PositiveMinutes = 5
    #: Labelled predictions of this many hours are compared.
    label_window_hours: Annotated[float, Field(gt=0)] = 168.0
    #: The challenger is better when its ROC AUC is higher with DeLong's two-sided
    #: p-value below this level, over at least `min_paired_rows` rows scored by both.
    pvalue: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    min_paired_rows: Annotated[int, Field(ge=20)] = 500


class LoggingConfig(_Strict):
    level: LogLevel = "INFO"


class MonitoringConfig(_Strict):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    features: FeaturesConfig = FeaturesConfig()
    data_drift_monitoring: DataDriftConfig = DataDriftConfig()
    performance_monitoring: PerformanceConfig = PerformanceConfig()
    optuna: OptunaConfig = OptunaConfig()
    reports: ReportsConfig = ReportsConfig()
    exporter: ExporterConfig = ExporterConfig()
    api: ApiConfig = ApiConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    history: HistoryConfig = HistoryConfig()
    retraining: RetrainingConfig = RetrainingConfig()
    model_comparison: ComparisonConfig = ComparisonConfig()
    stack: StackConfig = StackConfig()
    logging: LoggingConfig = LoggingConfig()


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def _format(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{_dotted(first['loc'])}: {first['msg']}"


def parse_config(raw: Any) -> MonitoringConfig:
    """Validate a mapping (the parsed YAML); raise ConfigError naming the field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("<root>: the config must be a mapping of sections")
    try:
        return MonitoringConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> MonitoringConfig:
    """Read and validate the config file.

    The path is, in order: the argument, ``$CHURN_MONITOR_CONFIG``, the default path.
    When none is given and the default file does not exist (running outside the
    repository), the built-in defaults apply. ``$LOG_LEVEL``, when set, overrides
    ``logging.level``.
    """
    named = path or os.environ.get(CONFIG_ENV)
    chosen = Path(named or DEFAULT_CONFIG_PATH)
    if not named and not chosen.exists():
        return _with_log_level(MonitoringConfig())
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config: cannot read {chosen}: {err.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {chosen} is not valid YAML: {err}") from None
    return _with_log_level(parse_config(raw))


def _with_log_level(config: MonitoringConfig) -> MonitoringConfig:
    """Apply ``$LOG_LEVEL`` when set."""
    level = os.environ.get("LOG_LEVEL")
    if level:
        try:
            config = config.model_copy(
                update={"logging": LoggingConfig(level=level.upper())}  # type: ignore[arg-type]
            )
        except ValidationError as err:
            raise ConfigError(f"LOG_LEVEL: {err.errors()[0]['msg']}") from None
    return config
