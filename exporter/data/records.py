"""Prediction records pushed from outside the API: the push format and its validation.

A model this project does not serve pushes its predictions to the exporter's
``POST /ingest`` (docs/ingest.md) as a JSON array of records or as JSON lines (one
record per line). A record is a row of the prediction log (:mod:`exporter.data.predlog`)
in JSON:

- ``model``, ``version`` (text), ``score`` (P(churn), 0 to 1), ``predicted`` (0 or 1)
  and the 19 features of :data:`exporter.domain.schema.FEATURES` are required;
- ``id`` (at most 36 characters; default a new uuid4) and ``ts`` (Unix seconds, at most
  `MAX_AHEAD_SECONDS` past the exporter's clock; default the time of arrival) are
  optional, as are ``customer_id`` and the log's later
  columns (``anomaly_score``, ``unusual``, ``challenger_version``,
  ``challenger_score``);
- ``actual`` (0/1 or "No"/"Yes"), optional, is the true outcome when it is already
  known: it is logged as the prediction's feedback.

The features follow the Telco export's value sets (:data:`exporter.domain.schema.CATEGORIES`);
numbers must be JSON numbers (a string or a boolean is an error), finite, not negative
and at most :data:`exporter.domain.schema.HARD_MAXIMA`; ``TotalCharges`` may be null or
blank. Unknown keys are errors, so a misspelt feature is named rather than logged as
missing.

Validation reports every bad field as ``rows[i].field: problem``, ``i`` counting records
from 0 (for JSON lines, the non-blank lines).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from exporter.domain import schema

#: At most this many problems are listed in one answer (the first one is always named).
MAX_REPORTED = 20
#: A pushed ``ts`` more than this far past the exporter's clock is refused (seconds):
#: clock skew stays far below it, and a time in milliseconds far above; such a row
#: would otherwise stay the newest of every window and never age out.
MAX_AHEAD_SECONDS = 300.0


def number_only(value: Any) -> Any:
    """A JSON number as it is; a string or a boolean where a number belongs is an error."""
    if isinstance(value, bool | str):
        kind = "a boolean" if isinstance(value, bool) else "a string"
        raise PydanticCustomError("number_type", f"Input should be a number, not {kind}")
    return value


def number_or_blank(value: Any) -> Any:
    """A number, null, or blank (as null): the export's TotalCharges of a new customer."""
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, bool | str):
        kind = "a boolean" if isinstance(value, bool) else "a string"
        raise PydanticCustomError(
            "number_type", f"Input should be a number, null or blank, not {kind}"
        )
    return value


Number = BeforeValidator(number_only)


def _limit(name: str) -> Any:
    return Field(ge=0, le=schema.HARD_MAXIMA[name], allow_inf_nan=False)


class PushedPrediction(BaseModel):
    """One prediction-log row as pushed to ``POST /ingest`` (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    id: Annotated[str, Field(min_length=1, max_length=36)] | None = None
    ts: Annotated[float, Field(ge=0, allow_inf_nan=False), Number] | None = None
    model: Annotated[str, Field(min_length=1, max_length=200)]
    version: Annotated[str, Field(min_length=1, max_length=50)]
    customer_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    gender: schema.Gender
    SeniorCitizen: Annotated[Literal[0, 1], Number]
    Partner: schema.YesNo
    Dependents: schema.YesNo
    tenure: Annotated[int, _limit("tenure"), Number]
    PhoneService: schema.YesNo
    MultipleLines: schema.MultipleLines
    InternetService: schema.InternetService
    OnlineSecurity: schema.InternetAddon
    OnlineBackup: schema.InternetAddon
    DeviceProtection: schema.InternetAddon
    TechSupport: schema.InternetAddon
    StreamingTV: schema.InternetAddon
    StreamingMovies: schema.InternetAddon
    Contract: schema.Contract
    PaperlessBilling: schema.YesNo
    PaymentMethod: schema.PaymentMethod
    MonthlyCharges: Annotated[float, _limit("MonthlyCharges"), Number]
    TotalCharges: Annotated[
        Annotated[float, _limit("TotalCharges")] | None, BeforeValidator(number_or_blank)
    ] = None
    score: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False), Number]
    predicted: Annotated[Literal[0, 1], Number]
    anomaly_score: Annotated[float, Field(ge=0.0, allow_inf_nan=False), Number] | None = None
    unusual: Annotated[bool, Field(strict=True)] | None = None
    challenger_version: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    challenger_score: (
        Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False), Number] | None
    ) = None
    actual: Literal[0, 1, "Yes", "No"] | None = None


_ROWS = TypeAdapter(list[PushedPrediction])


class BadBody(ValueError):
    """The body is not a JSON array of records nor JSON lines (HTTP 400)."""


@dataclass(frozen=True)
class Problem:
    """One bad field: ``rows[row].field`` (``field`` empty: the record as a whole)."""

    row: int
    field: str
    message: str

    @property
    def where(self) -> str:
        return f"rows[{self.row}].{self.field}" if self.field else f"rows[{self.row}]"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class BadRows(ValueError):
    """Records that break the schema (HTTP 422): every problem, in row order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        more = len(self.problems) - 1
        suffix = f" (and {more} more)" if more else ""
        super().__init__(f"{self.problems[0]}{suffix}")


@dataclass(frozen=True)
class Batch:
    """Valid records as prediction-log rows, and the labels some of them carry."""

    #: Dicts with every `predlog.PREDICTION_COLUMNS` key, in the order pushed.
    rows: list[dict[str, Any]]
    #: (prediction id, 0/1 label) of the records that had ``actual``.
    labels: list[tuple[str, schema.LabelCode]]
    #: The ids the client chose (the others are new uuid4s, unique without a check).
    given_ids: list[str]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _loads(text: bytes | str) -> Any:
    return json.loads(text, parse_constant=_no_constant)


def _parse(text: str, where: str) -> Any:
    """One JSON text; `BadBody` prefixed with `where` when it is not one (a value nested
    past the parser's recursion limit included)."""
    try:
        return _loads(text)
    except ValueError as err:
        raise BadBody(f"{where}invalid JSON: {err}") from None
    except RecursionError:
        raise BadBody(f"{where}invalid JSON: nested too deeply") from None


def parse_body(body: bytes) -> list[Any]:
    """The records of a body: a JSON array (first non-blank character ``[``) or JSON
    lines (one value per non-blank line; lines end at ``\n``, with an optional ``\r``
    before it, and at nothing else, since a JSON string may hold U+2028 and the other
    characters `str.splitlines` also splits at). A leading UTF-8 byte order mark is
    ignored. Raises `BadBody` naming the problem."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadBody(f"the body is not UTF-8 text: {err.reason} at byte {err.start}") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        items = _parse(stripped, "")
        if not isinstance(items, list):  # a trailing value after the array, say
            raise BadBody("expected a JSON array of records")
    else:
        items = [
            _parse(line, f"line {number}: ")
            for number, line in enumerate(text.split("\n"), start=1)
            if line.strip()
        ]
    if not items:
        raise BadBody("the body holds no records")
    return items


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:50] + "…" if len(value) > 50 else value)
    return json.dumps(value)


def _problems(err: ValidationError) -> Iterator[Problem]:
    for e in err.errors():
        loc = e["loc"]
        row = int(loc[0]) if loc and isinstance(loc[0], int) else 0
        field = ".".join(str(part) for part in loc[1:])
        message = e["msg"]
        value = e.get("input")
        if e["type"] == "model_type":
            message = f"expected a JSON object, got {type(value).__name__}"
        elif (
            e["type"] != "missing"
            and field
            and (value is None or isinstance(value, str | int | float | bool))
        ):
            message = f"{message} (got {_scalar(value)})"
        yield Problem(row, field, message)


def validate_records(items: Sequence[Any], *, now: float, model: str | None = None) -> Batch:
    """Check every record; return them as log rows, or raise `BadRows` listing up to
    `MAX_REPORTED` problems (nothing is half-accepted: the caller logs all or none).

    A missing ``id`` becomes a new uuid4, a missing ``ts`` becomes `now`. `model`, when
    given, is the only model name accepted (the exporter's window is not split by model,
    so another model's rows would mix into it). Two records with one ``id`` are an error.
    """
    try:
        records = _ROWS.validate_python(items)
    except ValidationError as err:
        found = sorted(_problems(err), key=lambda p: p.row)
        raise BadRows(found[:MAX_REPORTED]) from None
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    labels: list[tuple[str, schema.LabelCode]] = []
    given: list[str] = []
    for i, record in enumerate(records):
        if model is not None and record.model != model:
            problems.append(
                Problem(
                    i, "model", f"this exporter monitors {model!r} (got {_scalar(record.model)})"
                )
            )
        row = record.model_dump(exclude={"actual"})
        if row["id"] is None:
            row["id"] = str(uuid.uuid4())
        elif row["id"] in seen:
            problems.append(Problem(i, "id", f"the same id as rows[{seen[row['id']]}]"))
        else:
            given.append(row["id"])
        seen[row["id"]] = i
        if row["ts"] is None:
            row["ts"] = now
        elif row["ts"] > now + MAX_AHEAD_SECONDS:
            ahead = row["ts"] - now
            problems.append(
                Problem(i, "ts", f"{ahead:.0f} s ahead of the exporter's clock (Unix seconds?)")
            )
        rows.append(row)
        if record.actual is not None:
            labels.append((row["id"], schema.label_code(record.actual)))
    if problems:
        raise BadRows(problems[:MAX_REPORTED])
    return Batch(rows=rows, labels=labels, given_ids=given)
