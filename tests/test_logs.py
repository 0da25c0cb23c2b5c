"""No secret reaches a log line: by key, by known value, or inside text."""

from __future__ import annotations

import io
import json
import logging

import structlog

from bridge.logs import configure_logging


def _capture(secrets: list[str]) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", secrets=secrets, stream=stream)
    return stream


def test_secrets_are_redacted_everywhere() -> None:
    password, token = "s3cr3t-Pa55word", "admin-token-0123456789"
    stream = _capture([password, token])
    log = structlog.get_logger("test")
    log.info("request", headers={"HTTP-X-PASSWORD": password, "HTTP-X-USERNAME": "sandbox"})
    log.info("calling", url=f"https://user:{password}@d6.example/api?token={token}")
    log.warning("failed", error=RuntimeError(f"server said Authorization: Bearer {token}"))
    log.info("created", secret="whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", detail="whsec_abcdEFGH1234==")
    logging.getLogger("uvicorn").error("stdlib line with %s", password)
    try:
        raise ValueError(f"password was {password}")
    except ValueError:
        log.exception("boom")
    output = stream.getvalue()
    assert output.count("\n") == 6
    for secret in (password, token, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", "abcdEFGH1234"):
        assert secret not in output
    first = json.loads(output.splitlines()[0])
    assert first["headers"]["HTTP-X-USERNAME"] == "sandbox"
    assert first["headers"]["HTTP-X-PASSWORD"] == "[redacted]"


def test_console_format_renders_readable_lines() -> None:
    stream = io.StringIO()
    configure_logging(level="info", fmt="console", stream=stream)
    structlog.get_logger("test").info("polled", school_id=1000)
    assert "polled" in stream.getvalue()
    assert "school_id=1000" in stream.getvalue()
