"""Small helpers the simulator tests share: paths, credentials, a full cursor scan, the control calls."""

from __future__ import annotations

from typing import Any

import httpx

DEBTORS = "/v2/finplus/debtmanagement/accountablepersons"
LEARNERS = "/v2/finplus/debtmanagement/learners"
SCHOOLS = "/v2/finplus/debtmanagement/schools"
INTEGRATIONS = "/v2/settings/clientintegrations"
CREDENTIALS = {"HTTP-X-USERNAME": "sandbox", "HTTP-X-PASSWORD": "sandbox"}


async def scan(
    client: httpx.AsyncClient, path: str, params: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow `next_cursor` to the end, as a d6 client must; returns (records, every page's body)."""
    records: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = dict(params or {})
        if cursor is not None:
            query["cursor"] = cursor
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        records.extend(body["data"])
        cursor = body["meta"].get("next_cursor")
        if cursor is None:
            return records, pages
        assert len(pages) < 10_000, "the scan does not end"


async def control(client: httpx.AsyncClient, method: str, url: str, body: Any = None) -> Any:
    """Call a `/_sim/` control; returns the decoded JSON (None for 204)."""
    response = await client.request(method, url, json=body)
    assert response.status_code < 300, f"{method} {url}: {response.status_code} {response.text}"
    return response.json() if response.content else None
