"""The API docs page with no network: headless Chromium may reach the bridge only, and the page still
shows every operation (Swagger UI's files come from the bridge, not from a CDN)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.console.helpers import CHROMIUM_ARGS, chromium_path

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
def test_the_docs_page_renders_every_operation_with_no_network(bridge: str, path: str) -> None:
    document = httpx.get(f"{bridge}/schema/openapi.json", timeout=10).json()
    operations = sum(
        1
        for item in [*document["paths"].values(), *document["webhooks"].values()]
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    )
    elsewhere: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        def only_the_bridge(route: Any) -> None:
            if route.request.url.startswith(bridge + "/"):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort("internetdisconnected")

        page.route("**/*", only_the_bridge)
        page.goto(bridge + path)
        page.wait_for_selector(".opblock", timeout=15_000)
        shown = page.locator(".opblock").count()
        title = page.locator(".info .title").inner_text()
        browser.close()
    assert elsewhere == []
    assert errors == []
    assert shown == operations > 40  # the paths' operations and the webhooks
    assert title.startswith("d6 bridge")
