"""The snapshot and resync event types in the catalogue for programs (docs/events.md#resyncs):
`GET /v1/event-types` and the OpenAPI `webhooks` section describe them, and their examples meet their
schemas."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from bridge.catalogue import RESOURCES
from bridge.testing.settings import TOKEN

SNAPSHOTS = [f"{resource.prefix}.snapshot" for resource in RESOURCES]
MARKERS = ["resync.started", "resync.completed"]


@pytest.fixture(scope="module")
def catalogue(bridge: str) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{bridge}/v1/event-types", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    answer.raise_for_status()
    return {entry["name"]: entry for entry in answer.json()["data"]}


def test_each_snapshot_type_is_a_record_envelope_with_the_records_sequence(
    catalogue: dict[str, dict[str, Any]],
) -> None:
    for name in SNAPSHOTS:
        entry = catalogue[name]
        prefix = name.split(".")[0]
        assert entry["resource"] == prefix and "resync" in entry["description"]
        schema, example = entry["schema"], entry["example"]
        Draft202012Validator(schema).validate(example)
        assert "changes" not in schema["properties"]
        assert example["resource"] == prefix and example["resource_id"] and example["data"]
        # `data` is the record, typed as the resource's change events type it.
        created = catalogue[f"{prefix}.created"]["schema"]["properties"]["data"]
        assert schema["properties"]["data"] == created
        assert example["sequence"] < catalogue[f"{prefix}.created"]["example"]["sequence"]  # its own, older
    learner = Draft202012Validator(catalogue["learner.snapshot"]["schema"])
    assert not learner.is_valid({**catalogue["learner.snapshot"]["example"], "type": "learner.created"})


def test_the_resync_markers_carry_their_data(catalogue: dict[str, dict[str, Any]]) -> None:
    required = {
        "resync.started": ["resync_id", "resource", "as_of_sequence", "count"],
        "resync.completed": ["resync_id", "resource", "count"],
    }
    for name in MARKERS:
        entry = catalogue[name]
        assert entry["resource"] == "resync" and entry["description"]
        schema, example = entry["schema"], entry["example"]
        Draft202012Validator(schema).validate(example)
        data = schema["properties"]["data"]
        assert data["required"] == required[name]
        assert data["properties"]["resource"]["enum"] == [resource.name for resource in RESOURCES]
        assert example["resource_id"] == example["data"]["resync_id"]
        validator = Draft202012Validator(schema)
        assert not validator.is_valid({**example, "data": {**example["data"], "resource": "debtor"}})
        assert not validator.is_valid({**example, "data": {"resync_id": example["resource_id"]}})
    started = catalogue["resync.started"]["example"]
    assert started["sequence"] == started["data"]["as_of_sequence"]


def test_the_webhooks_section_has_an_entry_for_each(bridge: str) -> None:
    document = httpx.get(f"{bridge}/schema/openapi.json", timeout=10).json()
    for name in [*SNAPSHOTS, *MARKERS]:
        post = document["webhooks"][name]["post"]
        body = post["requestBody"]["content"]["application/json"]
        assert body["schema"]["properties"]["type"]["const"] == name
        Draft202012Validator(body["schema"]).validate(body["examples"][name]["value"])
    assert document["webhooks"]["resync.started"]["post"]["operationId"] == "resyncStartedWebhook"
    assert document["webhooks"]["debtor.snapshot"]["post"]["operationId"] == "debtorSnapshotWebhook"
