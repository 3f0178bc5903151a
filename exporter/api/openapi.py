"""What the OpenAPI document says beyond the routes' own models: the error answers each
route may give (with their bodies, see :mod:`.errors`) and HTTP basic auth."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from exporter.api.models import ErrorBody, ValidationErrorBody
from exporter.web.webconfig import OPEN_PATHS, WebConfig

#: An OpenAPI ``responses`` mapping: status -> description and body model.
Responses = dict[int | str, dict[str, Any]]

_AUTH_SCHEME = "basicAuth"


def answer(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    """One declared answer: its description and the model of its JSON body."""
    return {"description": description, "model": model}


#: What every route with a JSON body may answer before it runs (see `errors`).
BODY_ERRORS: Responses = {
    400: answer("malformed JSON"),
    413: answer("body over api.max_body_bytes"),
    415: answer("body not sent as application/json"),
    422: answer("invalid field; `message` names each one", ValidationErrorBody),
}
SCORING_ERRORS: Responses = {
    **BODY_ERRORS,
    500: answer("the model failed to score the customers"),
    503: answer("no model loaded, or the prediction log unavailable"),
}


def auth_errors(web: WebConfig) -> Responses:
    """The 401 every route but ``OPEN_PATHS`` answers first when the web config has
    users (``BasicAuthMiddleware``); nothing without users."""
    if not web.users:
        return {}
    return {401: answer("no or wrong credentials (HTTP basic auth, api.web_config_file)")}


def batch_errors(max_batch: int) -> Responses:
    """`SCORING_ERRORS`, with the 413 of a batch over ``api.max_batch``."""
    return {
        **SCORING_ERRORS,
        413: answer(
            f"body over api.max_body_bytes, or more than {max_batch} customers "
            "(api.max_batch, the maxItems of `customers`)"
        ),
    }


def declare_basic_auth(app: FastAPI) -> None:
    """Add HTTP basic auth to `app`'s OpenAPI document: the scheme, required by every
    operation but those on ``webconfig.OPEN_PATHS`` (as `BasicAuthMiddleware` does)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()  # FastAPI keeps it as app.openapi_schema
        schemes = spec.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[_AUTH_SCHEME] = {"type": "http", "scheme": "basic"}
        spec["security"] = [{_AUTH_SCHEME: []}]
        for path in OPEN_PATHS & spec.get("paths", {}).keys():
            for operation in spec["paths"][path].values():
                operation["security"] = []
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
