"""JSON error bodies: every client error names its field, no error shows a traceback.

Every error body has ``detail``; validation errors keep FastAPI's list of
``{type, loc, msg, input}`` there (``loc`` such as ``["body", "customers", 3,
"tenure"]``) and add ``message``, one readable line naming each field
(``customers[3].tenure: Input should be greater than or equal to 0 (got -1)``).

Status codes: 400 malformed JSON, 415 a body not sent as JSON, 422 schema errors
(including an empty body), 413 a batch over ``api.max_batch``, 404 feedback for an
unknown prediction, 503 no model or the prediction log unavailable, 500 a model that
raised or another server fault. The routes declare each of these in the OpenAPI
document with its body (``models.ErrorBody``, ``models.ValidationErrorBody``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from exporter.api.scoring import InferenceFailed, ModelNotReady
from exporter.data.predlog import LogUnavailable, UnknownPrediction

log = logging.getLogger("churn_monitor.api")

_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """`value` if JSON can carry it (NaN and infinities become their names)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "customers", 3, "tenure")`` as ``customers[3].tenure``."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": error.get("type"),
        "loc": list(error.get("loc", ())),
        "msg": error.get("msg"),
    }
    if isinstance(error.get("input"), _SCALARS):
        item["input"] = _plain(error["input"])
    ctx = error.get("ctx")
    if isinstance(ctx, dict):
        plain = {k: _plain(v) for k, v in ctx.items() if isinstance(v, _SCALARS)}
        if plain:
            item["ctx"] = plain
    return item


def _line(item: dict[str, Any]) -> str:
    text = f"{field_path(item['loc'])}: {item['msg']}"
    if item["type"] == "missing" or "input" not in item:
        return text
    return f"{text} (got {item['input']!r})"


def _body(status: int, detail: Any, message: str | None = None) -> JSONResponse:
    content: dict[str, Any] = {"detail": detail}
    if message is not None:
        content["message"] = message
    return JSONResponse(status_code=status, content=content)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [e for e in exc.errors() if isinstance(e, dict)]
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and not _is_json(content_type):
        detail = (
            "the request body must be JSON with Content-Type: application/json "
            f"(got {content_type or 'no Content-Type'!r})"
        )
        return _body(415, detail, detail)
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            position = f" at character {loc[1]}" if len(loc) > 1 else ""
            detail = f"request body is not valid JSON{position}: {reason}".rstrip(": ")
            return _body(400, detail, detail)
        if error.get("type") == "too_long" and loc == ("body", "customers"):
            ctx = error.get("ctx") or {}
            detail = (
                f"batch too large: {ctx.get('actual_length')} customers, the limit is "
                f"{ctx.get('max_length')} (api.max_batch)"
            )
            return _body(413, detail, detail)
        if error.get("type") == "missing" and loc == ("body",):
            detail = "request body is empty: expected a JSON object"
            return _body(422, [_clean(error)], detail)
    items = [_clean(e) for e in errors]
    shown = "; ".join(_line(i) for i in items[:10])
    more = f"; and {len(items) - 10} more" if len(items) > 10 else ""
    plural = "s" if len(items) != 1 else ""
    return _body(422, items, f"{len(items)} invalid field{plural}: {shown}{more}")


async def unknown_prediction(request: Request, exc: UnknownPrediction) -> JSONResponse:
    return _body(404, str(exc))


async def log_unavailable(request: Request, exc: LogUnavailable) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return _body(503, str(exc))


async def model_not_ready(request: Request, exc: ModelNotReady) -> JSONResponse:
    return _body(503, f"no model is being served: {exc}")


async def inference_failed(request: Request, exc: InferenceFailed) -> JSONResponse:
    return _body(500, str(exc))


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _body(500, f"internal server error ({exc.__class__.__name__}); see the server log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(UnknownPrediction, unknown_prediction)  # type: ignore[arg-type]
    app.add_exception_handler(LogUnavailable, log_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(ModelNotReady, model_not_ready)  # type: ignore[arg-type]
    app.add_exception_handler(InferenceFailed, inference_failed)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, server_error)
