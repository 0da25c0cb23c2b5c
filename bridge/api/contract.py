"""What `/v1` promises beyond each handler's own answer: documented errors, bearer auth and JSON bodies.

- `error_responses(...)`: the error answers an operation can give, for the OpenAPI schema, so that every
  status a client can meet is documented with the one error body (`{"status_code", "detail", "extra"}`,
  `extra` always an object). 400 (a bad parameter), 401 (no or wrong token) and 503 (Redis unavailable)
  are always there; they replace Litestar's own 400 schema, whose `extra` generators cannot type.
- `operation_id`: the operation id of a handler, its name in camelCase (`list_events` -> `listEvents`), so
  that generated clients get plain names (`list_events.py`, `ListEventsResponse...`).
- `SECURITY` / `SECURITY_SCHEMES`: the bearer token, declared in the schema.
- `StrictStructSchemaPlugin`: a body struct declared `forbid_unknown_fields` gets
  `additionalProperties: false` in the schema, as the server does refuse unknown fields (400).
- `MetaSchemaPlugin`: a string annotated with `msgspec.Meta(extra_json_schema=...)` (the bridge's
  `Timestamp`) gets that format and description in the schema, as msgspec's own schema has them.
- `json_body`: a `before_request` hook. A body must be JSON (`Content-Type: application/json` or
  `*/*+json`, else 415), valid UTF-8 and not absurdly nested (else 400); the decoded body is cached on
  the request, so the handler's own parsing does not decode it again. Over `request_max_body_size`
  reading it raises 413, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec
from litestar import Request
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin  # litestar is pinned
from litestar.exceptions import ClientException, HTTPException, SerializationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Reference, Schema, SecurityScheme
from litestar.plugins import OpenAPISchemaPlugin
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.typing import FieldDefinition

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.handlers import HTTPRouteHandler

BEARER: Final = "BearerToken"
SECURITY: Final[list[dict[str, list[str]]]] = [{BEARER: []}]
SECURITY_SCHEMES: Final[dict[str, SecurityScheme | Reference]] = {
    BEARER: SecurityScheme(
        type="http",
        scheme="bearer",
        description="`Authorization: Bearer <BRIDGE_ADMIN_TOKEN>`; every `/v1` path needs it",
    )
}


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error answer: the status again, what went wrong and what to do, and details."""

    status_code: int
    detail: str
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    """Details for a program: for a 400, `errors` (each bad field); for a 404, the id not found."""


DESCRIPTIONS: Final = {
    400: "The request is not valid; `detail` names the field and the problem",
    401: "No token, a wrong one, or a revoked subscription token",
    403: "The read-only token on a change, or a subscription token outside its own subscription's routes",
    404: "No such subscription, event, school or record",
    409: "Not in this state (a feed of a webhook subscription, a test send to a pull one); see `detail`",
    413: "The body is larger than the limit (1 MB)",
    415: "The body is not JSON; send it with `Content-Type: application/json`",
    503: "The store (Redis) is unavailable; try again",
}


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """The documented error answers of an operation: 400, 401 and 503, and `codes`."""
    return {
        code: ResponseSpec(data_container=ErrorBody, description=DESCRIPTIONS[code], generate_examples=False)
        for code in sorted({400, 401, 503, *codes})
    }


def operation_id(handler: HTTPRouteHandler, _method: Any, _path: Any) -> str:
    """`list_events` -> `listEvents`: the handler's name is the operation's (handler names are unique)."""
    first, *rest = handler.handler_name.split("_")
    return first + "".join(word.title() for word in rest)


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's own schema for msgspec structs, plus `additionalProperties: false` when the struct
    refuses unknown fields (Litestar leaves it out, so the schema allowed what the server refused)."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return super().is_plugin_supported_field(field_definition) and bool(
            getattr(field_definition.type_, "__struct_config__", None)
            and field_definition.type_.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


class MetaSchemaPlugin(OpenAPISchemaPlugin):
    """A `str` annotated with `msgspec.Meta(extra_json_schema=..., description=...)` keeps its format and
    description in the OpenAPI schema (Litestar reads only its own parameter metadata)."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        del value
        return False

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return field_definition.annotation is str and _meta(field_definition) is not None

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        del schema_creator
        meta = _meta(field_definition)
        extra = (meta.extra_json_schema if meta else None) or {}
        return Schema(
            type=OpenAPIType.STRING,
            format=extra.get("format"),
            description=meta.description if meta else None,
        )


def _meta(field_definition: FieldDefinition) -> msgspec.Meta | None:
    return next(
        (m for m in field_definition.metadata if isinstance(m, msgspec.Meta) and m.extra_json_schema), None
    )


BODY_ERRORS: Final = (400, 403, 413, 415)
"""What any operation that takes a JSON body can answer besides its own errors (each one is a change, so
a read-only token gets 403)."""


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def json_body(request: Request[Any, Any, Any]) -> None:
    """Refuse a body that is not JSON (415), not UTF-8 or nested too deeply (400), with a `detail`."""
    if "data" not in request.route_handler.parsed_fn_signature.parameters:
        return
    body = await request.body()
    if not body:
        return
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"the body must be JSON: send it with 'Content-Type: application/json' "
            f"(got {content_type[:100]!r})"
            if content_type
            else "the body must be JSON: send it with 'Content-Type: application/json' (none given)",
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ClientException(detail=f"the body is not valid UTF-8 (byte {error.start})") from None
    try:
        await request.json()
    except SerializationException as error:
        raise ClientException(detail=f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise ClientException(detail="the JSON body is nested too deeply") from None
