"""Settings: defaults, parsing, and one clear line with exit 2 for every bad value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bridge.errors import SettingsError
from bridge.settings import DEFAULT_RETRY_SCHEDULE, load_settings

GOOD_SERVE_ENV = {
    "BRIDGE_ADMIN_TOKEN": "t" * 32,
    "BRIDGE_D6_USERNAME": "sandbox",
    "BRIDGE_D6_PASSWORD": "sandbox",
}


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings({}, isatty=False)
    assert settings.d6_base_url == "https://integrate.d6plus.co.za/api"
    assert settings.d6_max_rps == 10
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.redis_prefix == "d6b"
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.integrations_poll_seconds == 60
    assert settings.school_poll_seconds == 300
    assert settings.poll_jitter_seconds == 30  # 10% of the school interval
    assert settings.auto_activate is True
    assert settings.api_type_ids is None
    assert settings.debtor_scope == "all"
    assert settings.emit_initial_snapshot is False
    assert settings.retry_schedule == DEFAULT_RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.delivery_timeout_seconds == 15
    assert settings.delivery_concurrency == 64
    assert settings.disable_after_hours == 120
    assert settings.allow_private_urls is False
    assert settings.event_retention_days == 30
    assert settings.log_format == "json"
    assert settings.log_level == "info"


def test_log_format_follows_the_terminal() -> None:
    assert load_settings({}, isatty=True).log_format == "console"
    assert load_settings({"BRIDGE_LOG_FORMAT": "json"}, isatty=True).log_format == "json"


def test_values_are_parsed() -> None:
    settings = load_settings(
        {
            "BRIDGE_SCHOOL_POLL_SECONDS": "120",
            "BRIDGE_API_TYPE_IDS": "8, 9",
            "BRIDGE_RETRY_SCHEDULE": "1,2.5,10",
            "BRIDGE_AUTO_ACTIVATE": "no",
            "BRIDGE_REDIS_URL": "memory://",
            "BRIDGE_D6_BASE_URL": "http://127.0.0.1:8081/api/",
        }
    )
    assert settings.school_poll_seconds == 120
    assert settings.poll_jitter_seconds == 12
    assert settings.api_type_ids == frozenset({8, 9})
    assert settings.retry_schedule == (1, 2.5, 10)
    assert settings.auto_activate is False
    assert settings.uses_memory_store
    assert settings.d6_base_url == "http://127.0.0.1:8081/api"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("BRIDGE_SCHOOL_POLL_SECONDS", "abc", "must be a number"),
        ("BRIDGE_SCHOOL_POLL_SECONDS", "0", "at least 1"),
        ("BRIDGE_RETRY_SCHEDULE", "5,-1,30", "must not be negative"),
        ("BRIDGE_RETRY_SCHEDULE", "5,x", "not a number"),
        ("BRIDGE_REDIS_URL", "mongodb://localhost", "scheme must be one of"),
        ("BRIDGE_D6_BASE_URL", "ftp://example.com", "scheme must be one of"),
        ("BRIDGE_PORT", "70000", "at most 65535"),
        ("BRIDGE_PORT", "80.5", "whole number"),
        ("BRIDGE_AUTO_ACTIVATE", "maybe", "true or false"),
        ("BRIDGE_DEBTOR_SCOPE", "some", "one of all, active"),
        ("BRIDGE_API_TYPE_IDS", "8,debt", "comma list"),
        ("BRIDGE_LOG_LEVEL", "loud", "one of"),
        ("BRIDGE_D6_MAX_RPS", "-3", "at least"),
        ("BRIDGE_DELIVERY_CONCURRENCY", "0", "at least 1"),
        ("BRIDGE_REDIS_PREFIX", "a{b}", "must not contain"),
        ("BRIDGE_POLL_JITTER_SECONDS", "500", "at most 300"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value})
    assert caught.value.variable == variable
    assert words in str(caught.value)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({**GOOD_SERVE_ENV, "BRIDGE_SCHOOL_POLL_SECONDS": "abc"}, "BRIDGE_SCHOOL_POLL_SECONDS"),
        ({**GOOD_SERVE_ENV, "BRIDGE_RETRY_SCHEDULE": "5,-1"}, "BRIDGE_RETRY_SCHEDULE"),
        ({**GOOD_SERVE_ENV, "BRIDGE_REDIS_URL": "postgres://x"}, "BRIDGE_REDIS_URL"),
        ({k: v for k, v in GOOD_SERVE_ENV.items() if k != "BRIDGE_ADMIN_TOKEN"}, "BRIDGE_ADMIN_TOKEN"),
        ({k: v for k, v in GOOD_SERVE_ENV.items() if k != "BRIDGE_D6_USERNAME"}, "BRIDGE_D6_USERNAME"),
        ({k: v for k, v in GOOD_SERVE_ENV.items() if k != "BRIDGE_D6_PASSWORD"}, "BRIDGE_D6_PASSWORD"),
    ],
)
def test_serve_with_a_bad_setting_exits_2_with_one_line(env: dict[str, str], variable: str) -> None:
    result = _run(["serve"], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_check_with_a_bad_setting_exits_2() -> None:
    result = _run(["check"], {"BRIDGE_D6_TIMEOUT_SECONDS": "soon"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "d6-bridge: bad setting BRIDGE_D6_TIMEOUT_SECONDS: must be a number, got 'soon'"
    ]


def test_help_lists_every_command() -> None:
    result = _run(["--help"], {})
    assert result.returncode == 0
    for command in ("serve", "demo", "simulator", "check"):
        assert command in result.stdout
    for command in ("serve", "demo", "simulator", "check"):
        assert _run([command, "--help"], {}).returncode == 0
