"""The API docs page, whole from the bridge: it works where there is no internet access.

Litestar's Swagger UI page loads its script and stylesheet from a CDN by default, so on a machine with no
outbound access it stays blank. Here the page points at `/schema/assets/...`, which the bridge serves
from the `swagger-ui-py` package's copy of Swagger UI (a pinned dependency, upgraded like any other,
never a bundle copied into this repository). The page's icon is inline, so nothing leaves the origin.

`/schema` and `/schema/swagger` show Swagger UI; `/schema/openapi.json` and `/schema/openapi.yaml` are
the document itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import OpenAPIRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router

SCHEMA_PATH: Final = "/schema"
ASSETS: Final = "/assets"
NO_FAVICON: Final = "<link rel='icon' href='data:,'>"


def swagger_ui_dir() -> Path:
    """Swagger UI's files as the `swagger-ui-py` package ships them (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing: pip install -e . installs it")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class OfflineSwagger(SwaggerRenderPlugin):
    """Swagger UI with its script, preset and stylesheet served by this app under `/schema/assets`."""

    def __init__(self) -> None:
        base = f"{SCHEMA_PATH}{ASSETS}"
        super().__init__(
            js_url=f"{base}/swagger-ui-bundle.js",
            css_url=f"{base}/swagger-ui.css",
            standalone_preset_js_url=f"{base}/swagger-ui-standalone-preset.js",
            path="/swagger",
            favicon=NO_FAVICON,
        )

    def receive_router(self, router: Router) -> None:
        router.register(
            create_static_files_router(
                path=ASSETS,
                directories=[swagger_ui_dir()],
                name="api-docs-assets",
                cache_control=CacheControlHeader(max_age=3600),
                include_in_schema=False,
            )
        )


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI (also at `/schema`), and the document as YAML (JSON is Litestar's own)."""
    return [OfflineSwagger(), YamlRenderPlugin()]
