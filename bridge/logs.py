"""Logging: structlog, JSON lines in production, colours on a terminal, secrets redacted.

The redaction processor runs before the renderer and scrubs every value, so a credential can't leak
through an exception message, a logged URL or a header dump.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
SECRET_KEYS = re.compile(
    r"(password|passwd|secret|token|authorization|api[_-]?key|http-x-password|credential)", re.IGNORECASE
)
# Values that look like secrets wherever they appear inside text.
SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),
    re.compile(r"d6bs_[A-Za-z0-9_-]+"),  # a subscription token (bridge/delivery/tokens.py): never in settings
    re.compile(r"(?i)(http-x-password['\"]?\s*[:=]\s*['\"]?)[^\s\"',;}]+"),
    re.compile(r"(?i)((?:password|token|secret)=)[^\s&\"',;]+"),
    re.compile(r"(://[^/\s:@]+:)[^@/\s]+(@)"),
)


class Redactor:
    """Replaces known secret values, and values under secret-looking keys, in every event dict."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub_text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in SECRET_PATTERNS:
            text = pattern.sub(lambda m: _keep_groups(m), text)
        return text

    def scrub(self, value: Any, key: str = "") -> Any:
        if key and SECRET_KEYS.search(key) and value not in (None, ""):
            return REDACTED
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {k: self.scrub(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        if isinstance(value, BaseException):
            return self.scrub_text(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        return {k: self.scrub(v, k) for k, v in event_dict.items()}


def _keep_groups(match: re.Match[str]) -> str:
    groups = match.groups()
    if not groups:
        return REDACTED
    prefix = groups[0] or ""
    suffix = groups[1] if len(groups) > 1 and groups[1] else ""
    return f"{prefix}{REDACTED}{suffix}"


def configure_logging(
    *, level: str = "info", fmt: str = "json", secrets: Iterable[str | None] = (), stream: Any = None
) -> None:
    """Set up structlog (and the stdlib root logger, for uvicorn and friends) once at start."""
    redactor = Redactor(secrets)
    stream = stream or sys.stderr
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                redactor,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # uvicorn installs its own handlers when it starts; route its records through ours so they are redacted.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(numeric_level, logging.WARNING))
