"""Every error the API answers, mapped in one place (`EXCEPTION_HANDLERS`, set on the app).

- Delivery-side requests that cannot be done as asked: 400 (bad field), 404 (unknown subscription or
  event), 409 (not in this state: a feed read on a webhook subscription), 503 (no event log), each with a
  detail a person can act on.
- Litestar's own validation errors are rewritten to name each bad field and the problem.
- d6 trouble is a 502 and store trouble (Redis) a 503: both name what failed, neither is a 500.
- A bug is a 500 with a plain detail; its traceback goes to the log, never to the caller.
"""

from __future__ import annotations

import re
from typing import Any, Final

import structlog
from litestar import Request, Response
from litestar.exceptions import ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_502_BAD_GATEWAY,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap
from redis.exceptions import RedisError

from bridge.api.common import error_response
from bridge.delivery.erasure import UnknownRecord
from bridge.delivery.models import DeliveryError, UnknownSubscription
from bridge.delivery.service import NoEventLog, UnknownEvent
from bridge.errors import BridgeError, Conflict, D6Error, InvalidRequest, NotFound, StoreError

log = structlog.get_logger(__name__)


def delivery_error_handler(_: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    if isinstance(error, UnknownSubscription):
        return error_response(HTTP_404_NOT_FOUND, str(error), {"subscription_id": error.subscription_id})
    if isinstance(error, UnknownRecord):
        extra = {"school_id": error.school_id, "resource": error.resource, "record_id": error.record_id}
        return error_response(HTTP_404_NOT_FOUND, str(error), extra)
    if isinstance(error, UnknownEvent):
        return error_response(HTTP_404_NOT_FOUND, str(error), {"event_id": error.event_id})
    if isinstance(error, NoEventLog):
        return error_response(HTTP_503_SERVICE_UNAVAILABLE, str(error))
    return error_response(HTTP_400_BAD_REQUEST, str(error))


_QUOTED_VALUE: Final = re.compile(r"^(Invalid enum value) .*$", re.DOTALL)
"""msgspec's one message that quotes the value sent: an error never repeats a value (docs/api.md#errors)."""


def _unquoted(item: Any) -> Any:
    """A validation problem without the value it was about (a note's status may be anything a client sent)."""
    if isinstance(item, dict) and isinstance(item.get("message"), str):
        return {**item, "message": _QUOTED_VALUE.sub(r"\1", item["message"])}
    return item


def validation_error_handler(_: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """Name each bad field in `detail` (Litestar's own says only 'Validation failed')."""
    assert isinstance(error, ValidationException)
    problems: list[str] = []
    errors = [_unquoted(item) for item in error.extra] if isinstance(error.extra, list) else []
    for item in errors:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid"))
        key = item.get("key")
        if message == "'data'":
            problems.append("a JSON object is required as the request body")
        elif key in (None, "data"):
            problems.append(message)
        else:
            problems.append(f"{key}: {message}")
    detail = "invalid request: " + "; ".join(problems) if problems else str(error.detail)
    return error_response(HTTP_400_BAD_REQUEST, detail, {"errors": errors})


def bridge_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """A bad request is a 400 and a missing thing a 404; d6 trouble is a 502 and store trouble a 503: each
    names what failed, none is a 500."""
    if isinstance(error, InvalidRequest):
        return error_response(HTTP_400_BAD_REQUEST, str(error), error.extra)
    if isinstance(error, NotFound):
        return error_response(HTTP_404_NOT_FOUND, str(error), error.extra)
    if isinstance(error, Conflict):
        return error_response(HTTP_409_CONFLICT, str(error), error.extra)
    if isinstance(error, D6Error):
        status, detail = HTTP_502_BAD_GATEWAY, f"d6 did not answer usefully: {error}"
    elif isinstance(error, StoreError):
        status, detail = HTTP_503_SERVICE_UNAVAILABLE, f"the store is unavailable: {error}"
    else:
        status, detail = HTTP_503_SERVICE_UNAVAILABLE, str(error)
    log.warning("request failed", path=request.url.path, error=str(error), status=status)
    return error_response(status, detail)


def redis_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    return bridge_error_handler(request, StoreError(f"{type(error).__name__}: {error}"))


def unexpected_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """A bug: logged with its traceback (secrets redacted by the processors), never shown to the caller."""
    log.error("request crashed", path=request.url.path, method=request.method, exc_info=error)
    return error_response(
        HTTP_500_INTERNAL_SERVER_ERROR, "internal error; the bridge logged it as 'request crashed'"
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    BridgeError: bridge_error_handler,
    DeliveryError: delivery_error_handler,  # a BridgeError: the more specific class wins
    ValidationException: validation_error_handler,
    RedisError: redis_error_handler,
    HTTP_500_INTERNAL_SERVER_ERROR: unexpected_error_handler,
}
