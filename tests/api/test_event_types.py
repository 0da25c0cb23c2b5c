"""The event catalogue for programs: `GET /v1/event-types` and the OpenAPI `webhooks` section agree with
each other and with the events themselves (every example, and every example in docs/events.md, validates)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from bridge.catalogue import EVENT_TYPES
from bridge.testing.settings import TOKEN

EVENTS_DOC = Path(__file__).parents[2] / "docs" / "events.md"


@pytest.fixture(scope="module")
def catalogue(bridge: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{bridge}/v1/event-types", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    assert "next_cursor" not in body["meta"]  # the whole catalogue fits the default page
    return list(body["data"])


def test_every_event_type_is_listed_with_a_schema_its_example_meets(catalogue: list[dict[str, Any]]) -> None:
    assert [t["name"] for t in catalogue] == list(EVENT_TYPES)
    for entry in catalogue:
        Draft202012Validator.check_schema(entry["schema"])
        Draft202012Validator(entry["schema"]).validate(entry["example"])
        assert entry["example"]["type"] == entry["name"]
        assert entry["example"]["resource"] == entry["resource"]
        assert entry["description"]
        properties = entry["schema"]["properties"]
        assert properties["timestamp"]["format"] == "date-time"
        assert ("changes" in properties) == entry["name"].endswith(".updated")
        assert properties["data"]["type"] == "object" and properties["data"]["properties"]


def test_a_schema_refuses_another_type_and_mistyped_data(catalogue: list[dict[str, Any]]) -> None:
    learner = next(t for t in catalogue if t["name"] == "learner.created")
    validator = Draft202012Validator(learner["schema"])
    assert not validator.is_valid({**learner["example"], "type": "learner.removed"})
    assert not validator.is_valid({**learner["example"], "data": {"learner_id": "not a number"}})
    unknown_field = {**learner["example"], "data": {**learner["example"]["data"], "new_in_d6": 1}}
    assert validator.is_valid(unknown_field)  # d6 may add fields; they are passed on


def test_the_webhooks_section_is_the_same_catalogue(bridge: str, catalogue: list[dict[str, Any]]) -> None:
    document = httpx.get(f"{bridge}/schema/openapi.json", timeout=10).json()
    assert list(document["webhooks"]) == list(EVENT_TYPES)
    for entry in catalogue:
        body = document["webhooks"][entry["name"]]["post"]["requestBody"]["content"]["application/json"]
        # Litestar writes the document without null values (a `default: null`, an example's null fields).
        expected = {k: v for k, v in entry["schema"].items() if k != "$schema"}
        assert body["schema"] == _without_nulls(expected)
        shown = body["examples"][entry["name"]]["value"]
        assert shown == _without_nulls(entry["example"])
        Draft202012Validator(body["schema"]).validate(shown)


def test_every_example_in_the_events_doc_meets_its_schema(catalogue: list[dict[str, Any]]) -> None:
    schemas = {t["name"]: t["schema"] for t in catalogue}
    bodies = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", EVENTS_DOC.read_text(), re.S)]
    events = [b for b in bodies if isinstance(b, dict) and b.get("type") in schemas]
    assert len(events) >= 10
    for event in events:
        Draft202012Validator(schemas[event["type"]]).validate(event)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
