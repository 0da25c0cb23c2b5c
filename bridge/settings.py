"""Settings: one typed object built from the environment and validated before anything starts.

Every problem is a `SettingsError` naming the variable and what is wrong with it, so the CLI can
print one line and exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import msgspec

from bridge.catalogue import BY_NAME, DEFAULT_RESOURCES
from bridge.errors import SettingsError

T = TypeVar("T")

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
DEFAULT_COMMAND_RETRY_SCHEDULE = (2, 10, 30, 120, 600)
REDIS_SCHEMES = ("redis", "rediss", "unix", "memory")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
POLL_JITTER_SHARE = 0.1
"""An unset `BRIDGE_POLL_JITTER_SECONDS` is this share of `BRIDGE_SCHOOL_POLL_SECONDS`."""
MAX_DELIVERY_CONCURRENCY = 10_000
"""The highest `BRIDGE_DELIVERY_CONCURRENCY`: a claim this large against a deeper backlog is tested
(tests/delivery/test_claim_chunks.py)."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Every setting of the bridge; defaults are docs/configuration.md's."""

    d6_base_url: str = "https://integrate.d6plus.co.za/api"
    d6_username: str | None = None
    d6_password: str | None = None
    d6_max_rps: float = 10.0
    d6_timeout_seconds: float = 30.0
    redis_url: str = "redis://localhost:6379/0"
    redis_prefix: str = "d6b"
    redis_cluster: bool = False
    admin_token: str | None = None
    readonly_token: str | None = None
    """A second bearer token that may only read (`GET`) `/v1/*`; every change answers 403."""
    host: str = "0.0.0.0"  # noqa: S104 - a service in a container listens on every interface
    port: int = 8080
    integrations_poll_seconds: float = 60.0
    school_poll_seconds: float = 300.0
    poll_jitter_seconds: float = 30.0
    """Unset, `POLL_JITTER_SHARE` of `school_poll_seconds` (30 s of the default 300 s)."""
    auto_activate: bool = True
    api_type_ids: frozenset[int] | None = None
    debtor_scope: Literal["all", "active"] = "all"
    emit_initial_snapshot: bool = False
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    command_retry_schedule: tuple[float, ...] = DEFAULT_COMMAND_RETRY_SCHEDULE
    """Seconds between attempts of a write-back command after a 429, 5xx or unknown outcome."""
    delivery_timeout_seconds: float = 15.0
    delivery_concurrency: int = 64
    handoff_process: bool = True
    """Run the hand-off (published events fanned out to the delivery queues) in a process of its own beside
    `serve`'s, so its CPU leaves the delivering process (docs/operations.md#the-hand-off-process). Always in
    the serve process with the embedded store (`memory://`)."""
    disable_after_hours: float = 120.0
    allow_private_urls: bool = False
    event_retention_days: float = 30.0
    revoked_purge_days: float = 7.0
    resources: tuple[str, ...] = DEFAULT_RESOURCES
    """The watched resources (catalogue names), in catalogue order."""
    resource_poll_seconds: dict[str, float] = {}
    """Per-resource target intervals that override `school_poll_seconds`."""
    transaction_window_days: int = 45
    poll_planning: Literal["adaptive", "fixed"] = "adaptive"
    """`adaptive`: when the d6 budget cannot cover every feed at its target interval, plan polls where
    changes happen (bridge/sync/planner.py); `fixed`: every feed takes its turn."""
    max_poll_seconds: float = 86400.0
    """Under `adaptive`, the longest a feed may wait between polls, whatever its change rate; unset, at
    least the longest target interval."""
    log_format: Literal["json", "console"] = "json"
    """Unset, `console` when stderr is a terminal."""
    log_level: str = "info"

    def feed_interval(self, resource: str) -> float:
        """Target seconds between polls of one resource of a school."""
        if resource in self.resource_poll_seconds:
            return self.resource_poll_seconds[resource]
        default = BY_NAME[resource].default_interval if resource in BY_NAME else None
        return default if default is not None else self.school_poll_seconds

    def feed_jitter(self, resource: str) -> float:
        """`poll_jitter_seconds` scaled to the feed's interval (the same share of it as for schools)."""
        return self.poll_jitter_seconds * self.feed_interval(resource) / self.school_poll_seconds

    @property
    def uses_memory_store(self) -> bool:
        return self.redis_url.startswith("memory://")

    def require_for_serve(self) -> None:
        """`serve` refuses to start without the admin token and d6 credentials."""
        if not self.admin_token:
            raise SettingsError("BRIDGE_ADMIN_TOKEN", "required for serve; set a long random token")
        if not self.d6_username:
            raise SettingsError("BRIDGE_D6_USERNAME", "required for serve; the integrator username from d6")
        if not self.d6_password:
            raise SettingsError("BRIDGE_D6_PASSWORD", "required for serve; the integrator password from d6")


def secrets_of(settings: Settings) -> list[str | None]:
    """Every configured credential, so the log redactor can scrub it wherever it appears."""
    return [
        settings.d6_password,
        settings.admin_token,
        settings.readonly_token,
        urlsplit(settings.redis_url).password,
    ]


_DEFAULT = Settings()
"""Every default, read by `load_settings` for an unset variable."""


def load_settings(environ: Mapping[str, str] | None = None, *, isatty: bool | None = None) -> Settings:
    """Build `Settings` from `environ` (default: the process environment); raise `SettingsError`.

    An unset variable takes the field's default from `Settings` (`_DEFAULT`), the one place defaults are
    written; only the defaults that follow other settings (the jitter, the longest wait, the log format on
    a terminal) are computed here."""
    env = _Env(os.environ if environ is None else environ)
    d = _DEFAULT
    school_poll = env.number("BRIDGE_SCHOOL_POLL_SECONDS", d.school_poll_seconds, minimum=1.0)
    if isatty is None:
        isatty = sys.stderr.isatty()
    return Settings(
        d6_base_url=env.url("BRIDGE_D6_BASE_URL", d.d6_base_url, ("http", "https")),
        d6_username=env.optional("BRIDGE_D6_USERNAME"),
        d6_password=env.optional("BRIDGE_D6_PASSWORD"),
        d6_max_rps=env.number("BRIDGE_D6_MAX_RPS", d.d6_max_rps, minimum=0.01),
        d6_timeout_seconds=env.number("BRIDGE_D6_TIMEOUT_SECONDS", d.d6_timeout_seconds, minimum=0.1),
        redis_url=env.url("BRIDGE_REDIS_URL", d.redis_url, REDIS_SCHEMES),
        redis_prefix=env.text("BRIDGE_REDIS_PREFIX", d.redis_prefix, forbid="{}: \t"),
        redis_cluster=env.flag("BRIDGE_REDIS_CLUSTER", d.redis_cluster),
        admin_token=env.optional("BRIDGE_ADMIN_TOKEN"),
        readonly_token=env.readonly_token("BRIDGE_READONLY_TOKEN", env.optional("BRIDGE_ADMIN_TOKEN")),
        host=env.text("BRIDGE_HOST", d.host),
        port=int(env.number("BRIDGE_PORT", d.port, minimum=0, maximum=65535, integer=True)),
        integrations_poll_seconds=env.number(
            "BRIDGE_INTEGRATIONS_POLL_SECONDS", d.integrations_poll_seconds, minimum=1.0
        ),
        school_poll_seconds=school_poll,
        poll_jitter_seconds=env.number(
            "BRIDGE_POLL_JITTER_SECONDS", school_poll * POLL_JITTER_SHARE, minimum=0.0, maximum=school_poll
        ),
        auto_activate=env.flag("BRIDGE_AUTO_ACTIVATE", d.auto_activate),
        api_type_ids=env.id_set("BRIDGE_API_TYPE_IDS"),
        debtor_scope=env.choice(  # type: ignore[arg-type]
            "BRIDGE_DEBTOR_SCOPE", d.debtor_scope, ("all", "active")
        ),
        emit_initial_snapshot=env.flag("BRIDGE_EMIT_INITIAL_SNAPSHOT", d.emit_initial_snapshot),
        retry_schedule=env.schedule("BRIDGE_RETRY_SCHEDULE", d.retry_schedule),
        command_retry_schedule=env.schedule("BRIDGE_COMMAND_RETRY_SCHEDULE", d.command_retry_schedule),
        delivery_timeout_seconds=env.number(
            "BRIDGE_DELIVERY_TIMEOUT_SECONDS", d.delivery_timeout_seconds, minimum=0.1
        ),
        delivery_concurrency=int(
            env.number(
                "BRIDGE_DELIVERY_CONCURRENCY",
                d.delivery_concurrency,
                minimum=1,
                maximum=MAX_DELIVERY_CONCURRENCY,
                integer=True,
            )
        ),
        handoff_process=env.flag("BRIDGE_HANDOFF_PROCESS", d.handoff_process),
        disable_after_hours=env.number("BRIDGE_DISABLE_AFTER_HOURS", d.disable_after_hours, minimum=0.01),
        allow_private_urls=env.flag("BRIDGE_ALLOW_PRIVATE_URLS", d.allow_private_urls),
        event_retention_days=env.number("BRIDGE_EVENT_RETENTION_DAYS", d.event_retention_days, minimum=0.001),
        revoked_purge_days=env.number("BRIDGE_REVOKED_PURGE_DAYS", d.revoked_purge_days, minimum=0.0),
        resources=env.resources("BRIDGE_RESOURCES", d.resources),
        resource_poll_seconds=env.resource_seconds("BRIDGE_RESOURCE_POLL_SECONDS"),
        transaction_window_days=int(
            env.number(
                "BRIDGE_TRANSACTION_WINDOW_DAYS",
                d.transaction_window_days,
                minimum=1,
                maximum=3660,
                integer=True,
            )
        ),
        poll_planning=env.choice(  # type: ignore[arg-type]
            "BRIDGE_POLL_PLANNING", d.poll_planning, ("adaptive", "fixed")
        ),
        max_poll_seconds=_max_poll_seconds(env, school_poll),
        log_format=env.choice(  # type: ignore[arg-type]
            "BRIDGE_LOG_FORMAT", "console" if isatty else d.log_format, ("json", "console")
        ),
        log_level=env.choice("BRIDGE_LOG_LEVEL", d.log_level, LOG_LEVELS),
    )


def _max_poll_seconds(env: _Env, school_poll: float) -> float:
    """`BRIDGE_MAX_POLL_SECONDS`: at least every feed's target interval (a floor below the target is none)."""
    longest = max([school_poll, *env.resource_seconds("BRIDGE_RESOURCE_POLL_SECONDS").values()])
    return env.number("BRIDGE_MAX_POLL_SECONDS", max(_DEFAULT.max_poll_seconds, longest), minimum=longest)


class _Env:
    """Reads and checks one variable at a time; every failure names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def readonly_token(self, name: str, admin_token: str | None) -> str | None:
        """The read-only token: it must differ from the admin token, or a reader would be an admin."""
        token = self.optional(name)
        if token is not None and token == admin_token:
            raise SettingsError(name, "must differ from BRIDGE_ADMIN_TOKEN")
        return token

    def optional(self, name: str) -> str | None:
        return self._raw(name)

    def text(self, name: str, default: str, *, forbid: str = "") -> str:
        value = self._raw(name)
        if value is None:
            return default
        bad = sorted({c for c in value if c in forbid})
        if bad:
            raise SettingsError(name, f"must not contain {' '.join(repr(c) for c in bad)}")
        return value

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        integer: bool = False,
    ) -> float:
        value = self._raw(name)
        if value is None:
            return default
        kind = "a whole number" if integer else "a number"
        try:
            number = float(int(value)) if integer else float(value)
        except ValueError:
            raise SettingsError(name, f"must be {kind}, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise SettingsError(name, f"must be a finite number, got {value!r}")
        if minimum is not None and number < minimum:
            raise SettingsError(name, f"must be at least {_fmt(minimum)}, got {value!r}")
        if maximum is not None and number > maximum:
            raise SettingsError(name, f"must be at most {_fmt(maximum)}, got {value!r}")
        return number

    def flag(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(name, f"must be true or false, got {value!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._raw(name)
        if value is None:
            return default
        if value.lower() not in choices:
            raise SettingsError(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value.lower()

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        value = self._raw(name)
        if value is None:
            return default
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            raise SettingsError(
                name,
                f"scheme must be one of {', '.join(s + '://' for s in schemes)}; got {value.split(':')[0]!r}",
            )
        if parts.scheme in ("http", "https", "redis", "rediss") and not parts.hostname:
            raise SettingsError(name, "has no host name")
        return value.rstrip("/") if parts.scheme in ("http", "https") else value

    def id_set(self, name: str) -> frozenset[int] | None:
        value = self._raw(name)
        if value is None or value.lower() == "all":
            return None
        ids = set()
        for item in value.split(","):
            item = item.strip()
            if not item.isdigit():
                raise SettingsError(name, f"must be a comma list of API type ids (like 8,9); got {item!r}")
            ids.add(int(item))
        return frozenset(ids)

    def resources(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A comma list of catalogue names, or `all`; returned in catalogue order."""
        value = self._raw(name)
        if value is None:
            return default
        if value.lower() == "all":
            return tuple(BY_NAME)
        names = {item.strip().lower() for item in value.split(",") if item.strip()}
        unknown = sorted(names - set(BY_NAME))
        if unknown:
            raise SettingsError(
                name, f"unknown resource {unknown[0]!r}; use any of {', '.join(BY_NAME)}, or all"
            )
        if not names:
            raise SettingsError(name, "names no resource; use any of " + ", ".join(BY_NAME))
        return tuple(n for n in BY_NAME if n in names)

    def resource_seconds(self, name: str) -> dict[str, float]:
        """`balances=3600,transactions=900`: per-resource seconds, each at least 1."""
        value = self._raw(name)
        if value is None:
            return {}
        seconds: dict[str, float] = {}
        for item in value.split(","):
            resource, sep, number = (part.strip() for part in item.partition("="))
            if not sep or resource.lower() not in BY_NAME:
                got = item.strip()
                raise SettingsError(
                    name, f"must be a comma list of resource=seconds (like balances=3600); got {got!r}"
                )
            try:
                interval = float(number)
            except ValueError:
                raise SettingsError(name, f"{resource}: {number!r} is not a number of seconds") from None
            if not interval >= 1 or interval == float("inf"):
                raise SettingsError(name, f"{resource}: must be at least 1 second; got {number!r}")
            seconds[resource.lower()] = interval
        return seconds

    def schedule(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        value = self._raw(name)
        if value is None:
            return default
        delays = []
        for item in value.split(","):
            item = item.strip()
            try:
                delay = float(item)
            except ValueError:
                raise SettingsError(
                    name, f"must be a comma list of seconds; {item!r} is not a number"
                ) from None
            if delay < 0 or delay != delay:
                raise SettingsError(name, f"delays must not be negative; got {item!r}")
            delays.append(delay)
        return tuple(delays)


def _fmt(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


def or_exit(build: Callable[[], T]) -> T:
    """Run `build`; on a SettingsError print one line and exit 2."""
    try:
        return build()
    except SettingsError as error:
        print(f"d6-bridge: bad setting {error}", file=sys.stderr)
        raise SystemExit(2) from None
