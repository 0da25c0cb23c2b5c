"""An attempt over HTTPS, pinned to the checked address: a real TLS server on loopback with a certificate
for `hooks.test` only; the attempt connects to the IP literal and presents the original name for SNI, the
certificate check and `Host`. A wrong name fails the certificate check. (The guard's DNS answer is given,
since loopback is private: its resolving and refusing are tested in test_urls.py.)"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest

from bridge.delivery.models import Subscription
from bridge.delivery.sender import RESPONSE_BODY_LIMIT, Sender
from bridge.delivery.signing import new_secret
from bridge.delivery.urls import Target, UrlGuard


class PinnedGuard(UrlGuard):
    """Resolves every host to the loopback server (what a public DNS answer would be for a real host)."""

    def __init__(self, port: int) -> None:
        super().__init__(allow_private=True)
        self.port = port

    def at_hand(self, url: str) -> Target | None:
        return None  # every host is looked up

    async def target(self, url: str) -> Target:
        return Target(
            url=f"https://127.0.0.1:{self.port}/in",
            host_header=f"hooks.test:{self.port}",
            sni_hostname="hooks.test",
        )


def certificate(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.test",
            "-addext", "subjectAltName=DNS:hooks.test",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def serve_tls(cert: Path, key: Path, seen: dict[str, object]) -> asyncio.Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def sni(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        seen["sni"] = name

    context.sni_callback = sni  # type: ignore[assignment]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
        seen["host"] = headers.get("Host")
        seen["body"] = await reader.readexactly(int(headers["Content-Length"]))
        answer = b"x" * (RESPONSE_BODY_LIMIT * 3)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


@pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="openssl makes the test certificate")
async def test_https_attempt_is_pinned_and_verified_by_the_original_name(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path)
    seen: dict[str, object] = {}
    server = await serve_tls(cert, key, seen)
    port = server.sockets[0].getsockname()[1]
    trust = ssl.create_default_context(cafile=str(cert))
    subscription = Subscription(
        id="sub_1", url="https://hooks.test/in", secret=new_secret(), created_at=0.0, updated_at=0.0
    )
    try:
        sender = Sender(PinnedGuard(port), timeout=5.0, concurrency=4, ssl_context=trust)
        result = await sender.send(subscription, "evt_01M8P157NM2Y9D6RTEW6DD3T12", b'{"a":1}')
        await sender.aclose()
        assert result.status_code == 200, result.error
        assert seen == {"sni": "hooks.test", "host": f"hooks.test:{port}", "body": b'{"a":1}'}
        assert len(result.response_body or "") == RESPONSE_BODY_LIMIT  # the answer read is capped

        # Without our trust the certificate is refused: TLS verification is on.
        sender = Sender(PinnedGuard(port), timeout=5.0, concurrency=4)
        refused = await sender.send(subscription, "evt_01M8P157NM2Y9D6RTEW6DD3T13", b"{}")
        await sender.aclose()
        assert refused.status_code is None and "certificate" in (refused.error or "").lower()
    finally:
        server.close()
        await server.wait_closed()
