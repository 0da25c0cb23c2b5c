"""`D6Client`: the d6 Integrate calls the bridge makes, one method per endpoint.

Built once (in the app's lifespan) from `Settings`, and shared: it holds one `httpx.AsyncClient`, the
request budget and the page size learned per endpoint. Records come back normalised
(`bridge.d6.records.normalise`): ids as ints, zero dates as None, every other field as sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import structlog

from bridge.d6 import writes
from bridge.d6.budget import Budget, LocalBudget
from bridge.d6.endpoints import (
    ACCOUNTABLE_PERSONS,
    CLIENT_INTEGRATIONS,
    LEARNERS,
    SCHOOLS,
    Endpoint,
    endpoint_for,
)
from bridge.d6.http import ResponseHook, RetryPolicy, error_for, parse_error
from bridge.d6.pagination import Page, paginate
from bridge.d6.records import Record, integration_key, normalise, normalise_in_place, record_id
from bridge.d6.writes import NoteBody, WriteHttp
from bridge.errors import D6MalformedResponse

log = structlog.get_logger(__name__)


class Settings(Protocol):
    """What the client reads of the settings (`bridge.settings.Settings` has it; the d6 package sits below
    the settings, which import the resource catalogue and so the d6 endpoints)."""

    @property
    def d6_base_url(self) -> str: ...
    @property
    def d6_username(self) -> str | None: ...
    @property
    def d6_password(self) -> str | None: ...
    @property
    def d6_timeout_seconds(self) -> float: ...
    @property
    def d6_max_rps(self) -> float: ...


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _query(**values: Any) -> dict[str, str]:
    """Query parameters as d6 takes them: booleans as 1/0, None left out."""
    query: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        query[name] = _flag(value) if isinstance(value, bool) else str(value)
    return query


class D6Client:
    """The d6 Integrate v2 client for one set of integrator credentials."""

    def __init__(
        self,
        settings: Settings,
        *,
        budget: Budget | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_after_cap: float = 60.0,
        max_connections: int = 20,
        on_response: ResponseHook | None = None,
    ) -> None:
        """`budget` is the request budget to share (the app hands in the Redis one, `RedisBudget`);
        without it the budget is local to this client (`LocalBudget` at `BRIDGE_D6_MAX_RPS`).

        `transport` replaces the network (tests use `httpx.MockTransport`); `on_response` is called
        after every attempt with (endpoint, status, seconds) for metrics.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.budget: Budget = budget if budget is not None else LocalBudget(settings.d6_max_rps)
        self.http = WriteHttp(
            base_url=settings.d6_base_url,
            username=settings.d6_username,
            password=settings.d6_password,
            timeout_seconds=settings.d6_timeout_seconds,
            budget=self.budget,
            policy=RetryPolicy(
                max_attempts=max_attempts,
                backoff_base=backoff_base,
                backoff_cap=backoff_cap,
                retry_after_cap=retry_after_cap,
            ),
            transport=transport,
            max_connections=max_connections,
            on_response=on_response,
        )
        self.page_limits: dict[str, int] = {}
        """Endpoint name -> the `max_allowed_limit` d6 last announced for it."""
        self._change_method = "POST"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> D6Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # collections

    def scan(self, resource: str, school_id: int | None = None, **filters: Any) -> AsyncIterator[Page]:
        """Every page of a collection (`learners`, `accountable_persons`, `schools`, `client_integrations`).

        `filters` are d6 query parameters (booleans sent as 1/0, None left out). Records are normalised
        and each must carry its id, or the page is malformed. Raises a `D6Error` on any failure, so a
        scan that ends without one was complete.
        """
        return self.scan_endpoint(endpoint_for(resource), school_id, **filters)

    def scan_endpoint(
        self, endpoint: Endpoint, school_id: int | None = None, *, raw: bool = False, **filters: Any
    ) -> AsyncIterator[Page]:
        """`scan` of an endpoint object (the resource catalogue names its endpoints this way). With `raw`,
        each page keeps its records as sent, each decoded, normalised and checked only when asked
        (`Page.record`: the poller's fast path, bridge/d6/pagination.py)."""
        if endpoint is CLIENT_INTEGRATIONS:
            if raw:
                raise ValueError("the client integrations list is not scanned raw")
            return self.scan_client_integrations(school_id=school_id, **filters)
        if endpoint.school_scoped and school_id is None:
            raise ValueError(f"{endpoint.name} needs a school_id")
        if not endpoint.school_scoped and school_id is not None:
            raise ValueError(f"{endpoint.name} is not per school")
        return paginate(
            self.http,
            endpoint,
            school_id=school_id,
            params=_query(**filters),
            limits=self.page_limits,
            transform=lambda record: self._checked(endpoint, record, school_id),
            raw=raw,
        )

    def scan_accountable_persons(
        self,
        school_id: int,
        *,
        all_accounts: bool = True,
        include_learners: bool = False,
        debtor_code: str | int | None = None,
        accountable_person_id: int | None = None,
    ) -> AsyncIterator[Page]:
        """Debtors of a school; `all_accounts=True` includes closed accounts (d6's default excludes them)."""
        return self.scan(
            "accountable_persons",
            school_id,
            all_accounts=all_accounts or None,
            include_learners=include_learners or None,
            debtor_code=debtor_code,
            accountable_person_id=accountable_person_id,
        )

    def scan_learners(
        self,
        school_id: int,
        *,
        all_accounts: bool = True,
        debtor_code: str | int | None = None,
        accountable_person_id: int | None = None,
        parent_id: int | None = None,
        include_parents: bool = False,
        include_accountable_person: bool = False,
    ) -> AsyncIterator[Page]:
        return self.scan(
            "learners",
            school_id,
            all_accounts=all_accounts or None,
            debtor_code=debtor_code,
            accountable_person_id=accountable_person_id,
            parent_id=parent_id,
            include_parents=include_parents or None,
            include_accountable_person=include_accountable_person or None,
        )

    def scan_client_integrations(
        self, *, school_id: int | None = None, api_type_id: int | None = None
    ) -> AsyncIterator[Page]:
        # school_id is a query filter here, not the school header.
        return paginate(
            self.http,
            CLIENT_INTEGRATIONS,
            school_id=None,
            params=_query(school_id=school_id, api_type_id=api_type_id),
            limits=self.page_limits,
            transform=lambda record: self._checked(CLIENT_INTEGRATIONS, record, None),
        )

    def scan_schools(self) -> AsyncIterator[Page]:
        return self.scan("schools")

    async def client_integrations(
        self, *, school_id: int | None = None, api_type_id: int | None = None
    ) -> list[Record]:
        """Every (school, API type) that authorised this integrator, all pages."""
        return await _collect(self.scan_client_integrations(school_id=school_id, api_type_id=api_type_id))

    async def schools(self) -> list[Record]:
        return await _collect(self.scan_schools())

    async def accountable_persons(self, school_id: int, **filters: Any) -> list[Record]:
        """All pages of `scan_accountable_persons` (same keyword filters)."""
        return await _collect(self.scan_accountable_persons(school_id, **filters))

    async def learners(self, school_id: int, **filters: Any) -> list[Record]:
        """All pages of `scan_learners` (same keyword filters)."""
        return await _collect(self.scan_learners(school_id, **filters))

    # single records

    async def accountable_person(
        self, school_id: int, accountable_person_id: int, *, include_learners: bool = False
    ) -> Record:
        return await self._read(
            ACCOUNTABLE_PERSONS,
            accountable_person_id,
            school_id,
            _query(include_learners=include_learners or None),
        )

    async def learner(
        self,
        school_id: int,
        learner_id: int,
        *,
        include_parents: bool = False,
        include_accountable_person: bool = False,
    ) -> Record:
        query = _query(
            include_parents=include_parents or None,
            include_accountable_person=include_accountable_person or None,
        )
        return await self._read(LEARNERS, learner_id, school_id, query)

    async def school(self, school_id: int) -> Record:
        return await self._read(SCHOOLS, school_id, None, {})

    async def _read(
        self, endpoint: Endpoint, key: int, school_id: int | None, query: dict[str, str]
    ) -> Record:
        label = f"GET {endpoint.resource_template}"
        reply = await self.http.send(
            "GET", endpoint.resource(key), endpoint=label, school_id=school_id, params=query or None
        )
        if reply.status != 200:
            raise error_for(reply.status, reply.body, endpoint=label, school_id=school_id)
        if not isinstance(reply.body, dict):
            raise D6MalformedResponse(
                f"expected one record (an object), got {type(reply.body).__name__}",
                status_code=200,
                endpoint=label,
                school_id=school_id,
            )
        return self._checked(endpoint, reply.body, school_id)

    # integration state

    async def change_integration_state(self, school_id: int, api_type_id: int, active: bool) -> Record:
        """Activate (or deactivate) the integration of one school and API type; return its record.

        POST as the page text says; a 405 means this d6 wants PATCH (as its code samples do): the call
        is repeated once with PATCH, and PATCH is used from then on. "Integration already activated"
        (400) means the goal is reached and returns the record d6 sent with it.
        """
        body = {"school_id": school_id, "api_type_id": api_type_id, "state": active}
        path = CLIENT_INTEGRATIONS.collection
        method = self._change_method
        reply = await self.http.send(method, path, endpoint=f"{method} {path}", json=body)
        if reply.status == 405 and method == "POST":
            log.info("d6_change_state_method_fallback", method="PATCH")
            method = "PATCH"
            reply = await self.http.send(method, path, endpoint=f"{method} {path}", json=body)
            if reply.status != 405:
                self._change_method = method
        label = f"{method} {path}"
        word = "activated" if active else "deactivated"
        if reply.status == 200:
            return self._state_record(reply.body, label, school_id, api_type_id, active)
        if reply.status == 400 and f"already {word}" in parse_error(reply.body, 400).message.lower():
            log.info(
                "d6_integration_already_in_state", school_id=school_id, api_type_id=api_type_id, state=word
            )
            return self._state_record(reply.body, label, school_id, api_type_id, active)
        raise error_for(reply.status, reply.body, endpoint=label, school_id=school_id)

    def _state_record(self, body: Any, label: str, school_id: int, api_type_id: int, active: bool) -> Record:
        data = body.get("data") if isinstance(body, dict) else None
        if data is None:
            # The goal is reached even when d6 leaves the record out; say what is known.
            return {
                "school_id": school_id,
                "api_type_id": api_type_id,
                "activated_by_integrator": "Yes" if active else "No",
            }
        if not isinstance(data, dict):
            raise D6MalformedResponse(
                f"change-state `data` is not an object (got {type(data).__name__})",
                status_code=200,
                endpoint=label,
                school_id=school_id,
            )
        return normalise(data)

    # debtor-note writes (bridge/d6/writes.py): one attempt each, outcomes as types, never retried here

    async def create_note(self, school_id: int, body: NoteBody) -> int:
        """Create Note; returns the new `note_id`."""
        return await writes.create_note(self.http, school_id, body)

    async def update_note(self, school_id: int, note_id: int, body: NoteBody) -> None:
        await writes.update_note(self.http, school_id, note_id, body)

    async def delete_note(self, school_id: int, note_id: int) -> None:
        await writes.delete_note(self.http, school_id, note_id)

    async def delete_promise(self, school_id: int, promise_id: int) -> None:
        await writes.delete_promise(self.http, school_id, promise_id)

    async def notes_of(
        self, school_id: int, accountable_person_id: int, *, include_deleted: bool = True
    ) -> list[Record]:
        """Every note of one person, with its `promise_to_pays` (Get Note(s), all pages; retried as reads
        are): what a create whose outcome was unknown looks in. Deleted notes too by default, so a note
        made and deleted since is still found."""
        return await _collect(
            self.scan_endpoint(
                writes.DEBTOR_NOTES,
                school_id,
                accountable_person_id=accountable_person_id,
                include_deleted=include_deleted or None,
                include_promise_to_pays=True,
            )
        )

    @staticmethod
    def _checked(endpoint: Endpoint, record: Record, school_id: int | None) -> Record:
        """Normalised, and carrying its identity (or the answer is malformed)."""
        record = normalise_in_place(record)
        try:
            if endpoint.id_field is not None:
                record_id(endpoint, record)
            elif endpoint is CLIENT_INTEGRATIONS:
                integration_key(record)
            # else: identified by the catalogue's identity function when it is diffed
        except D6MalformedResponse as error:  # said again with the school (its text is made when raised)
            raise D6MalformedResponse(
                error.message, status_code=200, endpoint=error.endpoint, school_id=school_id
            ) from None
        return record


async def _collect(pages: AsyncIterator[Page]) -> list[Record]:
    records: list[Record] = []
    async for page in pages:
        records.extend(page.records)
    return records
