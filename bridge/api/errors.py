"""Maps the bridge's own errors to HTTP answers, in one place."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.status_codes import (
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_502_BAD_GATEWAY,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap
from redis.exceptions import RedisError

from bridge.errors import BridgeError, D6Error, StoreError

log = structlog.get_logger(__name__)


def bridge_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """d6 trouble is a 502 and store trouble a 503: both name what failed, neither is a 500."""
    if isinstance(error, D6Error):
        status, detail = HTTP_502_BAD_GATEWAY, f"d6 did not answer usefully: {error}"
    elif isinstance(error, StoreError):
        status, detail = HTTP_503_SERVICE_UNAVAILABLE, f"the store is unavailable: {error}"
    else:
        status, detail = HTTP_503_SERVICE_UNAVAILABLE, str(error)
    log.warning("request failed", path=request.url.path, error=str(error), status=status)
    return Response(
        {"status_code": status, "detail": detail, "extra": {}}, status_code=status, media_type=MediaType.JSON
    )


def redis_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    return bridge_error_handler(request, StoreError(f"{type(error).__name__}: {error}"))


def unexpected_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """A bug: logged with its traceback (secrets redacted by the processors), never shown to the caller."""
    log.error("request crashed", path=request.url.path, method=request.method, exc_info=error)
    status = HTTP_500_INTERNAL_SERVER_ERROR
    detail = "internal error; the bridge logged it as 'request crashed'"
    return Response(
        {"status_code": status, "detail": detail, "extra": {}}, status_code=status, media_type=MediaType.JSON
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    BridgeError: bridge_error_handler,
    RedisError: redis_error_handler,
    HTTP_500_INTERNAL_SERVER_ERROR: unexpected_error_handler,
}
