"""How every error reaches the client: one JSON object {"error": "..."} naming the problem, never a trace."""

import json
import logging
import re

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from proxy import schemas
from proxy.redis_store import StoreUnavailable
from serving.tf_serving import BackendError

log = logging.getLogger("proxy.app")
RETRY_AFTER_SECONDS = "2"
# The error answers every endpoint with a body may give, for the OpenAPI document.
ERRORS = {
    400: {"model": schemas.Error},
    413: {"model": schemas.Error},
    422: {"model": schemas.Error},
    503: {"model": schemas.Error},
}
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Unavailable(Exception):
    """No model to answer with right now: 503 with Retry-After."""


def _location(loc: tuple) -> str:
    """Where the problem is, as the client wrote it: a key that is not a plain name (an unknown "a.b", "x: y",
    "", or "body" inside the body) is JSON-quoted, so that every location reads back as one field."""
    parts = loc[1:] if loc[:1] == ("body",) else loc
    return (
        ".".join(
            str(p)
            if isinstance(p, int) or _PLAIN_NAME.fullmatch(str(p)) and p != "body"
            else json.dumps(p, ensure_ascii=False)
            for p in parts
        )
        or "body"
    )


def _validation_message(error: dict) -> str:
    field = _location(tuple(error["loc"]))
    if error["type"] == "json_invalid":
        return f"malformed JSON: {error.get('ctx', {}).get('error', error['msg'])}"
    if error["loc"] == ("body",) and error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return "body: expected a JSON object (Content-Type: application/json)"
    return f"{field}: {error['msg']}"


def _undecodable_body(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return f"malformed JSON: the body is not UTF-8 text (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "malformed JSON: nested too deeply"
    return f"malformed JSON: {type(cause).__name__}"


async def invalid(request, exc: RequestValidationError):
    errors = exc.errors()
    status = 400 if any(e["type"] == "json_invalid" for e in errors) else 422
    return JSONResponse({"error": "; ".join(_validation_message(e) for e in errors)}, status_code=status)


async def http_error(request, exc: HTTPException):
    message = str(exc.detail)
    if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not decode the body as JSON
        message = _undecodable_body(exc.__cause__)
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def unavailable(request, exc: Exception):
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})


async def backend_error(request, exc: BackendError):
    log.error("model backend error: %s", exc)
    return JSONResponse({"error": "the model backend refused the request"}, status_code=502)


async def internal(request, exc: Exception):
    log.exception("unhandled error on %s", request.url.path)  # the trace goes to the log, never the client
    return JSONResponse({"error": "internal error"}, status_code=500)


def add_handlers(app: FastAPI):
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Unavailable, unavailable)
    app.add_exception_handler(StoreUnavailable, unavailable)
    app.add_exception_handler(BackendError, backend_error)
    app.add_exception_handler(Exception, internal)
