"""The event catalogue for programs: `GET /v1/event-types` and the OpenAPI document's `webhooks` section.

Both come from `bridge.events.schemas.event_types()`, which reads the envelope's own msgspec definition,
so what the API says a webhook looks like is what the bridge sends. In the OpenAPI document each event
type is one `webhooks` entry (OpenAPI 3.1): a `POST` whose body is that type's schema, with its example,
so tools that import webhooks from OpenAPI (Svix, for one) get every type with its payload. (Litestar
writes the document without null values, so an example there lacks its null fields; `/v1/event-types`
shows each example whole.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec
from litestar import Controller, get
from litestar.openapi.spec import (
    Example,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
)

from bridge.api.auth import admin_guard
from bridge.api.common import Cursor, Limit, PageMeta, int_cursor, keyset_page, page_meta
from bridge.api.contract import SECURITY, error_responses
from bridge.events.schemas import EventTypeInfo, event_types


class EventTypePage(msgspec.Struct, kw_only=True):
    data: list[EventTypeInfo]
    meta: PageMeta


class EventTypesController(Controller):
    path = "/v1/event-types"
    tags = ["events"]
    guards = [admin_guard]
    security = SECURITY

    @get(
        "/",
        summary="Every event type: description, resource, JSON Schema of its body and an example",
        responses=error_responses(),
    )
    async def list_event_types(self, limit: Limit = 50, cursor: Cursor = None) -> EventTypePage:
        """In the catalogue's order; the cursor is a position in it."""
        ordered = list(enumerate(event_types()))
        page, next_cursor = keyset_page(ordered, lambda item: item[0], int_cursor(cursor), limit)
        return EventTypePage(data=[info for _, info in page], meta=page_meta(limit, next_cursor))


# JSON Schema keywords as Litestar's `Schema` names them (those msgspec writes, and `$schema`, dropped).
KEYWORDS: Final = {
    "anyOf": "any_of",
    "oneOf": "one_of",
    "allOf": "all_of",
    "additionalProperties": "additional_properties",
    "prefixItems": "prefix_items",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_items",
    "maxItems": "max_items",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "multipleOf": "multiple_of",
    **{same: same for same in ("title", "description", "type", "format", "const", "enum", "default")},
    **{same: same for same in ("properties", "required", "items", "minimum", "maximum", "pattern")},
}


def to_openapi(schema: Mapping[str, Any]) -> Schema:
    """A self-contained JSON Schema as Litestar's `Schema` (a keyword it does not know is a bug: raise)."""
    fields: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword == "$schema":
            continue
        name = KEYWORDS[keyword]
        if keyword == "properties":
            value = {key: to_openapi(item) for key, item in value.items()}
        elif keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
            value = [to_openapi(item) for item in value]
        elif keyword in ("items", "additionalProperties") and isinstance(value, Mapping):
            value = to_openapi(value)
        elif keyword == "type":
            value = [OpenAPIType(v) for v in value] if isinstance(value, list) else OpenAPIType(value)
        fields[name] = value
    return Schema(**fields)


def webhooks() -> dict[str, PathItem | Reference]:
    """One `webhooks` entry per event type: the POST the bridge sends, with the body's schema."""
    return {
        info.name: PathItem(
            post=Operation(
                operation_id=_operation_id(info.name),
                summary=info.name,
                description=f"{info.description}. Signed with the Standard Webhooks headers "
                "(`webhook-id`, `webhook-timestamp`, `webhook-signature`).",
                tags=["webhooks"],
                request_body=RequestBody(
                    required=True,
                    content={
                        "application/json": OpenAPIMediaType(
                            schema=to_openapi(info.schema),
                            examples={info.name: Example(value=info.example)},
                        )
                    },
                ),
                responses={
                    "2XX": OpenAPIResponse(description="Received. Any other answer, or none, is retried."),
                    "410": OpenAPIResponse(description="Gone: the bridge disables the subscription."),
                },
            )
        )
        for info in event_types()
    }


def _operation_id(event_type: str) -> str:
    """`learner.updated` -> `learnerUpdatedWebhook`."""
    first, *rest = event_type.split(".")
    return first + "".join(word.title() for word in rest) + "Webhook"
