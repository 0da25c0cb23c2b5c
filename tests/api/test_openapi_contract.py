"""The OpenAPI document as stock tools read it: valid, and a generated client that works with no warning.

The document is the live one (`GET /schema/openapi.json`). `openapi-spec-validator` must accept it without
a warning, and `openapi-python-client` must generate a client from it without one (a warning there means
a response or a model it dropped). The generated client then talks to the same bridge.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from bridge.testing.settings import TOKEN

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "d6_bridge_client"
LISTS = (
    "/v1/subscriptions",
    "/v1/subscriptions/{subscription_id}/deliveries",
    "/v1/events",
    "/v1/dead-letters",
    "/v1/schools",
)


@pytest.fixture(scope="module")
def document(bridge: str) -> dict[str, Any]:
    answer = httpx.get(f"{bridge}/schema/openapi.json", timeout=10)
    answer.raise_for_status()
    return dict(answer.json())


@pytest.fixture(scope="module")
def client_package(document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The client `openapi-python-client` generates from the live document, imported."""
    where = tmp_path_factory.mktemp("generated")
    spec = where / "openapi.json"
    spec.write_text(httpx.Response(200, json=document).text)
    config = where / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: the code is imported, not read
    run = subprocess.run(
        [
            *(str(GENERATOR), "generate", "--path", str(spec), "--meta", "none"),
            *("--output-path", str(where / PACKAGE), "--config", str(config)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    said = run.stdout + run.stderr
    assert run.returncode == 0, said
    assert "warning" not in said.lower(), said
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_openapi_spec_validator_accepts_the_document_without_a_warning(document: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_list_answers_the_one_envelope_with_cursor_and_limit(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for path in LISTS:
        operation = document["paths"][path]["get"]
        assert {"cursor", "limit"} <= {p["name"] for p in operation["parameters"]}, path
        page = schemas[
            operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        ]
        assert set(page["properties"]) == {"data", "meta"}, path
        assert page["properties"]["meta"]["$ref"] == "#/components/schemas/PageMeta"
    assert schemas["PageMeta"]["required"] == ["limit"]


def test_errors_and_times_are_typed(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["ErrorBody"]["properties"]["extra"] == {"type": "object", "additionalProperties": {}}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")) and path.startswith("/v1"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    assert schemas["Event"]["properties"]["timestamp"]["format"] == "date-time"
    assert schemas["SubscriptionView"]["properties"]["created_at"]["format"] == "date-time"
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert "listSubscriptions" in ids and "rotateSubscriptionSecret" in ids
    assert all(i.isalnum() and i[0].islower() for i in ids), ids


def test_the_generated_client_works_against_the_live_api(client_package: Any, bridge: str) -> None:
    api = importlib.import_module(f"{PACKAGE}.api.subscriptions")
    events = importlib.import_module(f"{PACKAGE}.api.events.list_events")
    schools = importlib.import_module(f"{PACKAGE}.api.schools.list_schools")
    models = importlib.import_module(f"{PACKAGE}.models")
    create = importlib.import_module(f"{api.__name__}.create_subscription")
    listing = importlib.import_module(f"{api.__name__}.list_subscriptions")
    one = importlib.import_module(f"{api.__name__}.get_subscription")
    client = client_package.AuthenticatedClient(base_url=bridge, token=TOKEN)

    made = create.sync(
        client=client,
        body=models.SubscriptionCreate(url="http://127.0.0.1:9/hook", event_types=["learner.*"]),
    )
    assert isinstance(made, models.SubscriptionWithSecret) and made.secret.startswith("whsec_")
    page = listing.sync(client=client, limit=500)
    assert isinstance(page, models.SubscriptionPage) and made.id in {s.id for s in page.data}
    assert page.meta.limit == 500 and made.created_at.tzinfo is not None
    assert isinstance(events.sync(client=client), models.EventPage)
    assert isinstance(schools.sync(client=client), models.SchoolPage)
    missing = one.sync_detailed(client=client, subscription_id="sub_nope")
    assert missing.status_code == 404 and isinstance(missing.parsed, models.ErrorBody)
    anonymous = client_package.Client(base_url=bridge)
    refused = listing.sync_detailed(client=anonymous)
    assert refused.status_code == 401 and isinstance(refused.parsed, models.ErrorBody)


def test_the_generated_client_reads_and_commits_a_pull_feed_with_a_subscription_token(
    client_package: Any, bridge: str
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    create = importlib.import_module(f"{PACKAGE}.api.subscriptions.create_subscription")
    tokens = importlib.import_module(f"{PACKAGE}.api.subscriptions.create_subscription_token")
    read = importlib.import_module(f"{PACKAGE}.api.feed.read_feed")
    commit = importlib.import_module(f"{PACKAGE}.api.feed.commit_feed")
    admin = client_package.AuthenticatedClient(base_url=bridge, token=TOKEN)

    made = create.sync(client=admin, body=models.SubscriptionCreate.from_dict({"delivery": "pull"}))
    assert isinstance(made, models.SubscriptionWithSecret) and made.delivery == "pull"
    token = tokens.sync(client=admin, subscription_id=made.id)
    reader = client_package.AuthenticatedClient(base_url=bridge, token=token.token)
    page = read.sync(client=reader, subscription_id=made.id, limit=10, wait=0.0)
    assert isinstance(page, models.FeedPageView) and page.data == []
    done = commit.sync(
        client=reader, subscription_id=made.id, body=models.FeedCommit(cursor=page.meta.next_cursor)
    )
    assert isinstance(done, models.FeedCommitted) and done.waiting == 0
    other = create.sync(client=admin, body=models.SubscriptionCreate.from_dict({"delivery": "pull"}))
    refused = read.sync_detailed(client=reader, subscription_id=other.id)
    assert refused.status_code == 403 and isinstance(refused.parsed, models.ErrorBody)
