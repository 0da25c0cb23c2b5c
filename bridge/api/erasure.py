"""`POST /v1/erasure`: remove one record's personal data from everything the bridge keeps
(docs/personal-data.md#erase-a-record).

The handler receives `eraser` (the `Eraser`, bridge/delivery/erasure.py, which says what is erased where
and in which order). 202 with what was erased; a second request for the same record answers 202 with zero
counts; 404 when neither the snapshot nor the event log knows the record; 400 for an unknown resource.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from bridge.api.auth import admin_guard
from bridge.api.common import Injected
from bridge.api.contract import BODY_ERRORS, SECURITY, error_responses, json_body
from bridge.delivery.erasure import Eraser, ErasureResult


class ErasureRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    school_id: int
    resource: str
    """The event `resource` of the record (`debtor`, `learner`, `balance`, `promise`, `note`,
    `transaction`), or its `BRIDGE_RESOURCES` name (`debtors`, ...)."""
    record_id: str
    """The record's id, as its events' `resource_id` carries it (`"6"`)."""


class ErasureController(Controller):
    path = "/v1/erasure"
    tags = ["personal data"]
    guards = [admin_guard]
    security = SECURITY
    before_request = staticmethod(json_body)

    @post(
        "/",
        summary="Erase one record's personal data: its events' data, queued deliveries and snapshot copy",
        status_code=HTTP_202_ACCEPTED,
        responses=error_responses(404, *BODY_ERRORS),
    )
    async def erase_record(self, eraser: Injected[Eraser], data: JSONBody[ErasureRequest]) -> ErasureResult:
        return await eraser.erase(data.school_id, data.resource, data.record_id)
