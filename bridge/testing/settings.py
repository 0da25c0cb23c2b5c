"""The settings of a bridge under test: quick retries, loopback subscribers, the simulator's sandbox.

`fast_settings` is for a dispatcher or store built by hand; `bridge_settings` for `Services` wired to a
Redis and a simulator as `serve` wires them; `serve_env` the environment of a `d6-bridge serve` child
process. All of them use `TOKEN` as the admin token.
"""

from __future__ import annotations

import os
from typing import Any, Final

from bridge.settings import Settings, load_settings

TOKEN: Final = "test-admin-token-0123456789"  # noqa: S105 - known to every test, guards nothing

FAST: Final[dict[str, Any]] = {
    "allow_private_urls": True,
    "retry_schedule": (0.05, 0.1),
    "delivery_timeout_seconds": 2.0,
    "delivery_concurrency": 16,
    "admin_token": TOKEN,
    "handoff_process": False,
}
"""Two quick retries, a short delivery timeout: a failing subscription dead-letters within a second."""


def fast_settings(**overrides: Any) -> Settings:
    return Settings(**{**FAST, **overrides})


def bridge_env(redis_url: str, d6_base_url: str, **overrides: str) -> dict[str, str]:
    """`BRIDGE_*` for a bridge on `redis_url` polling the simulator at `d6_base_url` every 2 s."""
    return {
        "BRIDGE_REDIS_URL": redis_url,
        "BRIDGE_D6_BASE_URL": d6_base_url,
        "BRIDGE_D6_USERNAME": "sandbox",
        "BRIDGE_D6_PASSWORD": "sandbox",
        "BRIDGE_ADMIN_TOKEN": TOKEN,
        "BRIDGE_D6_MAX_RPS": "200",
        "BRIDGE_INTEGRATIONS_POLL_SECONDS": "1",
        "BRIDGE_SCHOOL_POLL_SECONDS": "2",
        "BRIDGE_POLL_JITTER_SECONDS": "0.2",
        "BRIDGE_ALLOW_PRIVATE_URLS": "true",
        "BRIDGE_LOG_LEVEL": "warning",
        **overrides,
    }


def bridge_settings(redis_url: str, d6_base_url: str, **overrides: str) -> Settings:
    """`bridge_env` as `load_settings` reads it, with retries after 0.2, 0.5 and 1 s, and the hand-off in the
    calling process (these services run inside a test)."""
    defaults = {"BRIDGE_RETRY_SCHEDULE": "0.2,0.5,1", "BRIDGE_HANDOFF_PROCESS": "false"}
    env = bridge_env(redis_url, d6_base_url, **{**defaults, **overrides})
    return load_settings(env, isatty=False)


def serve_env(redis_url: str, d6_base_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a `d6-bridge serve` process: this one's, `bridge_env`, JSON logs on loopback,
    and every record told from the first poll (`BRIDGE_EMIT_INITIAL_SNAPSHOT`)."""
    process = {
        "BRIDGE_HOST": "127.0.0.1",
        "BRIDGE_EMIT_INITIAL_SNAPSHOT": "true",
        "BRIDGE_LOG_FORMAT": "json",
    }
    return {**os.environ, **bridge_env(redis_url, d6_base_url, **{**process, **overrides})}
