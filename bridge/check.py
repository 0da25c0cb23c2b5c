"""`d6-bridge check`: validate the settings, reach Redis and d6 once, say plainly what works."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from bridge.errors import BridgeError, D6AuthError, D6Error
from bridge.settings import Settings
from bridge.store.redis import connect


async def run_check(settings: Settings, out: TextIO) -> int:
    """Print one line per check; return the exit code (0 only when every check passed)."""
    problems = 0

    def report(ok: bool, text: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        out.write(f"{'ok  ' if ok else 'FAIL'} {text}\n")

    report(True, "settings are valid")
    report(
        bool(settings.admin_token),
        "BRIDGE_ADMIN_TOKEN is set"
        if settings.admin_token
        else "BRIDGE_ADMIN_TOKEN is not set: serve will refuse to start",
    )

    redis = connect(settings)
    try:
        await redis.ping()
        where = "the embedded in-memory store (not durable)" if settings.uses_memory_store else "Redis"
        report(True, f"{where} answers at {_safe_url(settings.redis_url)}")
    except Exception as error:
        report(
            False,
            f"Redis at {_safe_url(settings.redis_url)} does not answer: {type(error).__name__}: {error}",
        )
    finally:
        await redis.aclose()

    if not (settings.d6_username and settings.d6_password):
        report(False, "BRIDGE_D6_USERNAME and BRIDGE_D6_PASSWORD must both be set to reach d6")
    else:
        await _check_d6(settings, report)
    out.flush()
    return 0 if problems == 0 else 1


async def _check_d6(settings: Settings, report: Callable[[bool, str], None]) -> None:
    from bridge.d6.client import D6Client

    client = D6Client(settings, max_attempts=1)
    try:
        integrations = await client.client_integrations()
    except D6AuthError as error:
        report(False, f"d6 at {settings.d6_base_url} refused the credentials: {error.message}")
    except D6Error as error:
        report(False, f"d6 at {settings.d6_base_url} did not answer usefully: {error}")
    except BridgeError as error:
        report(False, f"d6 at {settings.d6_base_url}: {error}")
    else:
        schools = {record.get("school_id") for record in integrations}
        report(
            True,
            f"d6 answers at {settings.d6_base_url}: {len(integrations)} integrations, {len(schools)} schools",
        )
    finally:
        await client.aclose()


def _safe_url(url: str) -> str:
    """The Redis URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://[credentials]@{rest.rpartition('@')[2]}"
