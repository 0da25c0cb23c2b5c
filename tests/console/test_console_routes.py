"""The console's files as the bridge serves them: headers, no data in the shell, no inline code."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx
import pytest

from bridge.app import Services
from bridge.console import STATIC_DIR
from bridge.testing.settings import TOKEN, bridge_settings
from tests.console.helpers import console_app

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HOOK_URL = "http://127.0.0.1:9/hooks/console-unit-secret-path"


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    """A bridge on the embedded store (not started: the console files need no background part)."""
    settings = bridge_settings("memory://", "http://127.0.0.1:9/api")
    services = Services.build(settings)
    await services.subscriptions.create(url=HOOK_URL, description="unit <b>subscriber</b>")
    yield services
    await services.d6.aclose()
    await services.redis.aclose()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = console_app(services.settings, services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge.test") as c:
        yield c


class Shell(HTMLParser):
    """What the shell loads, and anything inline a strict CSP would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script":
            self.scripts.append(named)
            self._in_script = True
        if tag == "link":
            self.links.append(named)
        if tag == "style":
            self.inline.append("<style>")
        self.inline.extend(f"{tag} {name}" for name in named if name == "style" or name.startswith("on"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script")


@pytest.mark.parametrize("path", ["/console", "/console/", "/console/console.js", "/console/console.css"])
async def test_console_responses_carry_a_strict_csp(client: httpx.AsyncClient, path: str) -> None:
    answer = await client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


async def test_the_shell_is_served_without_a_token_and_holds_no_data(client: httpx.AsyncClient) -> None:
    shell = await client.get("/console")
    assert shell.status_code == 200
    assert shell.headers["content-type"].startswith("text/html")
    assert 'id="login"' in shell.text and 'type="password"' in shell.text
    assert HOOK_URL not in shell.text and "subscriber" not in shell.text
    # The data itself stays behind the token.
    assert (await client.get("/v1/subscriptions")).status_code == 401
    listed = await client.get("/v1/subscriptions", headers={"Authorization": f"Bearer {TOKEN}"})
    assert [s["url"] for s in listed.json()["data"]] == [HOOK_URL]


async def test_the_shell_loads_only_its_own_files_and_nothing_inline(client: httpx.AsyncClient) -> None:
    parser = Shell()
    parser.feed((await client.get("/console")).text)
    assert parser.inline == []
    assert [s.get("src") for s in parser.scripts] == ["/console/console.js"]
    assert all(s.get("type") == "module" for s in parser.scripts)
    hrefs = {link.get("rel"): link.get("href") for link in parser.links}
    assert hrefs == {"stylesheet": "/console/console.css", "icon": "data:,"}


@pytest.mark.parametrize(
    ("path", "media_type", "name"),
    [
        ("/console/console.js", "text/javascript", "console.js"),
        ("/console/console.css", "text/css", "console.css"),
    ],
)
async def test_static_files_are_served_with_their_types(
    client: httpx.AsyncClient, path: str, media_type: str, name: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == media_type
    assert answer.content == (STATIC_DIR / name).read_bytes()
    assert answer.headers["cache-control"] == "no-cache"


async def test_files_outside_the_console_are_not_served(client: httpx.AsyncClient) -> None:
    for path in ("/console/nothing.js", "/console/../__init__.py", "/console/%2e%2e/__init__.py"):
        assert (await client.get(path)).status_code == 404, path


def test_the_script_never_parses_data_as_html() -> None:
    """Every value reaches the page as text (textContent, append): no HTML sinks, no eval."""
    modules = sorted(STATIC_DIR.glob("*.js"))
    assert len(modules) > 1
    script = "\n".join(m.read_text() for m in modules)
    sinks = re.findall(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function", script
    )
    assert sinks == []
    assert ".style" not in script  # styles come from console.css only
    assert "localStorage" not in script and "document.cookie" not in script  # the token: sessionStorage
