"""Request and response bodies of the prediction API (pydantic).

A customer is the 19 model features of the Telco export with their exact value sets
(:data:`exporter.domain.schema.CATEGORIES`), plus an optional ``customerID``. Unknown fields
are rejected, so a misspelt feature is an error naming it rather than a silently
imputed value.

Numbers must be JSON numbers (a string or a boolean where a number belongs is an
error); the one exception is ``TotalCharges``, which may be null or blank, as the
export leaves it for customers in their first month. The numeric limits reject
impossible values only: a price rise that pushes MonthlyCharges past the schema's
plausible range is drift for the monitor to report, not a request to refuse, so the
API accepts up to twice the schema's plausible maxima.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.config import JsonValue
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from exporter.data.records import Number, number_or_blank
from exporter.domain import customers, schema

#: Hard limits the API enforces (see module doc).
MONTHLY_CHARGES_MAX = schema.HARD_MAXIMA["MonthlyCharges"]
TOTAL_CHARGES_MAX = schema.HARD_MAXIMA["TotalCharges"]
TENURE_MAX = int(schema.HARD_MAXIMA["tenure"])


def _one_of(values: Any) -> Any:
    """A ``Field`` describing a value set (a ``Literal`` type of the schema)."""
    return Field(description=f"one of: {', '.join(get_args(values))}")


Gender = Annotated[schema.Gender, _one_of(schema.Gender)]
YesNo = Annotated[schema.YesNo, _one_of(schema.YesNo)]
MultipleLines = Annotated[schema.MultipleLines, _one_of(schema.MultipleLines)]
InternetService = Annotated[schema.InternetService, _one_of(schema.InternetService)]
InternetAddon = Annotated[schema.InternetAddon, _one_of(schema.InternetAddon)]
Contract = Annotated[schema.Contract, _one_of(schema.Contract)]
PaymentMethod = Annotated[schema.PaymentMethod, _one_of(schema.PaymentMethod)]


class Customer(BaseModel):
    """One customer's features, named and valued as in the Telco export."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [customers.FIRST]},
        field_title_generator=lambda name, _info: name,
    )

    customerID: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    gender: Gender
    SeniorCitizen: Annotated[Literal[0, 1], Field(description="0 or 1"), Number]
    Partner: YesNo
    Dependents: YesNo
    tenure: Annotated[int, Field(ge=0, le=TENURE_MAX, description="months"), Number]
    PhoneService: YesNo
    MultipleLines: MultipleLines
    InternetService: InternetService
    OnlineSecurity: InternetAddon
    OnlineBackup: InternetAddon
    DeviceProtection: InternetAddon
    TechSupport: InternetAddon
    StreamingTV: InternetAddon
    StreamingMovies: InternetAddon
    Contract: Contract
    PaperlessBilling: YesNo
    PaymentMethod: PaymentMethod
    MonthlyCharges: Annotated[
        float, Field(ge=0.0, le=MONTHLY_CHARGES_MAX, allow_inf_nan=False), Number
    ]
    TotalCharges: Annotated[
        Annotated[float, Field(ge=0.0, le=TOTAL_CHARGES_MAX, allow_inf_nan=False)] | None,
        BeforeValidator(number_or_blank),
        Field(description="null or blank for customers in their first month"),
    ] = None


def batch_request_model(max_batch: int) -> type[BaseModel]:
    """The body of ``POST /predict/batch`` for a configured batch limit."""

    class BatchRequest(BaseModel):
        """Up to ``api.max_batch`` customers, scored and logged in one transaction."""

        model_config = ConfigDict(extra="forbid", frozen=True)

        customers: Annotated[
            list[Customer],
            Field(
                min_length=1,
                max_length=max_batch,
                description=(
                    f"1 to {max_batch} customers (api.max_batch); more is answered 413, not 422"
                ),
            ),
        ]

    return BatchRequest


class Prediction(BaseModel):
    """The model's answer for one customer."""

    prediction_id: str = Field(description="uuid4; quote it in POST /feedback")
    customerID: str | None = None
    churn_probability: float = Field(ge=0.0, le=1.0)
    predicted: Literal[0, 1] = Field(description="1 when churn_probability >= threshold")
    churn: Literal["Yes", "No"]
    threshold: float
    model_name: str
    model_version: str
    anomaly_score: float | None = Field(
        default=None,
        ge=0.0,
        description=(
            "how unlike the training data the customer is: the PCA reconstruction error "
            "of its features against the champion's reference snapshot (in reference "
            "standard deviations; larger is more unusual); null when the API has no "
            "reference profile (reference missing or unreadable, or "
            "data_drift_monitoring.multivariate.enabled false)"
        ),
    )
    unusual: bool | None = Field(
        default=None,
        description=(
            "true when anomaly_score exceeds anomaly_cutoff: the customer is unlike the "
            "customers the model was trained on, so treat the prediction with care; "
            "null when anomaly_score is"
        ),
    )
    anomaly_cutoff: float | None = Field(
        default=None,
        ge=0.0,
        description=(
            "the anomaly_score above which a customer is unusual: exceeded by about "
            "data_drift_monitoring.multivariate.unusual_rate (1 %) of reference "
            "customers; null when anomaly_score is"
        ),
    )


class BatchResponse(BaseModel):
    model_name: str
    model_version: str
    count: int
    predictions: list[Prediction]


#: The feedback key rule in JSON Schema: exactly one of the two keys is a string (a key
#: that is absent or null names nothing, as in `Feedback._one_key`).
_ONE_FEEDBACK_KEY: list[JsonValue] = [
    {"required": [key], "properties": {key: {"type": "string"}}}
    for key in ("prediction_id", "customerID")
]


class Feedback(BaseModel):
    """The true outcome of a prediction, named by its id or by the customer: exactly one
    of ``prediction_id`` and ``customerID`` (the other absent or null).

    With ``customerID`` the label applies to that customer's latest prediction.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "oneOf": _ONE_FEEDBACK_KEY,
            "examples": [
                {"prediction_id": "0b6b1d3e-5f0a-4c1e-9a57-2f4e8c0d9b31", "actual": "Yes"},
                {"customerID": "7590-VHVEG", "actual": 0},
            ],
        },
    )

    prediction_id: Annotated[str, Field(min_length=1, max_length=36)] | None = None
    customerID: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    actual: Literal[0, 1, "Yes", "No"] = Field(description="1/Yes: the customer churned")

    @model_validator(mode="after")
    def _one_key(self) -> Feedback:
        if (self.prediction_id is None) == (self.customerID is None):
            raise PydanticCustomError(
                "feedback_key", "give exactly one of prediction_id and customerID"
            )
        return self

    @property
    def label(self) -> schema.LabelCode:
        """The outcome as a 0/1 code (1: churned)."""
        return schema.label_code(self.actual)


Scalar = str | int | float | bool | None


class FieldError(BaseModel):
    """One invalid field of a 422 answer, as pydantic reports it."""

    type: str = Field(description="pydantic's error type, such as missing or too_long")
    loc: list[str | int] = Field(description='where, such as ["body", "customers", 3, "tenure"]')
    msg: str
    input: Scalar = Field(default=None, description="the value given, when it is a scalar")
    ctx: dict[str, Scalar] | SkipJsonSchema[None] = None


class ValidationErrorBody(BaseModel):
    """A 422 answer: every invalid field, and one line naming them."""

    detail: list[FieldError]
    message: str = Field(description="each invalid field as `path: problem (got value)`")


class ErrorBody(BaseModel):
    """Any other error answer (400, 401, 404, 413, 415, 500, 503): what went wrong."""

    detail: str
    message: str | SkipJsonSchema[None] = Field(
        default=None, description="the same text (400, 413 for a batch, 415)"
    )


class FeedbackResponse(BaseModel):
    prediction_id: str
    actual: schema.LabelCode


class ModelInfo(BaseModel):
    name: str
    version: str
    run_id: str
    threshold: float
    baseline: dict[str, float]
    loaded_at: float = Field(description="Unix seconds")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model: ModelInfo | None = None
    model_error: str | None = None
    database: Literal["ok", "unavailable"]
    database_error: str | None = None
    challenger_version: str | None = Field(
        default=None,
        description="the challenger version scoring every prediction in the shadow (null: none)",
    )
