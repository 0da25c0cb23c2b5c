"""`.env.example` lists every setting with its default, and its defaults load."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def _example(*, commented: bool = False) -> dict[str, str]:
    """The settings the file sets; with `commented`, also those shown commented out (computed defaults)."""
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if commented:
            line = line.removeprefix("# ")
        if line.startswith("BRIDGE_"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def test_every_setting_is_listed() -> None:
    source = (ROOT / "bridge" / "settings.py").read_text()
    used = set(re.findall(r'"(BRIDGE_[A-Z0-9_]+)"', source))
    assert used == set(_example(commented=True))


def test_the_listed_defaults_are_the_defaults() -> None:
    from_example = load_settings(_example(), isatty=False)
    assert from_example == load_settings({}, isatty=False) == Settings()
    shown = load_settings(_example(commented=True), isatty=False)
    assert shown == Settings(poll_jitter_seconds=30.0, log_format="json")
