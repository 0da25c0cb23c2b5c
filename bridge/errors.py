"""One error hierarchy for the whole bridge.

Every error the bridge raises on purpose is a `BridgeError`; the HTTP layer maps them to answers in
one place, and the CLI turns `SettingsError` into one line and exit code 2.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError


class BridgeError(Exception):
    """Base of every error the bridge raises deliberately."""


class SettingsError(BridgeError):
    """A setting is missing or has a value the bridge cannot use."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class InvalidRequest(BridgeError):
    """A request to the API names something we cannot use: a field, a query parameter, a cursor (400).

    `field` is what is wrong, as the caller spelled it; the message never repeats a value it was sent."""

    def __init__(self, field: str, problem: str, **extra: Any) -> None:
        self.field = field
        self.problem = problem
        self.extra = {"field": field, **extra}
        super().__init__(f"{field}: {problem}")


class NotFound(BridgeError):
    """A request names a thing the bridge does not hold (404); `extra` says which."""

    def __init__(self, message: str, **extra: Any) -> None:
        self.extra = extra
        super().__init__(message)


class Conflict(BridgeError):
    """A request that cannot be done in the state the thing it names is in (409); the message says what
    to do instead."""

    def __init__(self, message: str, **extra: Any) -> None:
        self.extra = extra
        super().__init__(message)


class StoreError(BridgeError):
    """The store (Redis) could not be reached or refused an operation."""


UNREACHABLE: tuple[type[Exception], ...] = (RedisError, OSError, StoreError)
"""What a background step catches as "Redis or the network is away": logged as a warning naming the
error and retried, never a traceback. `StoreError` is in it because the d6 request budget wraps the
Redis error it meets in one (every d6 request asks the budget first)."""


class D6Error(BridgeError):
    """Base of everything that went wrong talking to d6."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        endpoint: str | None = None,
        school_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.endpoint = endpoint
        self.school_id = school_id
        self.details = details or {}
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"status {self.status_code}")
        if self.endpoint:
            parts.append(f"endpoint {self.endpoint}")
        if self.school_id is not None:
            parts.append(f"school {self.school_id}")
        return "; ".join(parts)


class D6TransportError(D6Error):
    """No usable answer: timeout or connection failure, after the bounded retries."""


class D6ServerError(D6Error):
    """d6 answered 5xx (after the bounded retries)."""


class D6RateLimited(D6Error):
    """d6 answered 429 and kept answering it after the bounded retries."""


class D6AuthError(D6Error):
    """401/403: the credentials are wrong or not allowed."""


class D6NotAuthorised(D6AuthError):
    """401 "Client has not authorised access": the school revoked (or never gave) its authorisation."""


class D6NotFound(D6Error):
    """404: the record or route does not exist."""


class D6ValidationError(D6Error):
    """4xx with validation errors: the request was refused as malformed."""


class D6MalformedResponse(D6Error):
    """The body was not JSON, or not the shape the endpoint documents. Never an empty page."""


class LeaseLost(StoreError):
    """The fencing token no longer holds the school's lease: another replica took over; nothing changed."""


class SnapshotConflict(StoreError):
    """The snapshot changed since it was loaded (another commit won); reload, diff again, nothing changed."""


class StoreCorrupt(StoreError):
    """The store's own invariants do not hold (e.g. the event log and the sequence disagree)."""
