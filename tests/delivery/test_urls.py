from __future__ import annotations

import pytest

from bridge.delivery.urls import UrlGuard, UrlRefused, parse


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("http:///nohost", "no host"),
        ("https://example.com/" + "a" * 2048, "at most 2048"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com:99999/", "not valid"),
        ("", "non-empty"),
    ],
)
def test_shape_refusals(url: str, problem: str) -> None:
    with pytest.raises(UrlRefused, match=problem):
        parse(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://localhost:8080/hook",
    ],
)
async def test_private_addresses_refused(url: str) -> None:
    guard = UrlGuard(allow_private=False)
    with pytest.raises(UrlRefused, match="non-public"):
        await guard.check(url)
    with pytest.raises(UrlRefused):
        await guard.target(url)


async def test_hostname_resolving_to_private_refused() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.1.2.3"]  # one bad address is enough

    guard = UrlGuard(allow_private=False, resolver=resolver)
    with pytest.raises(UrlRefused, match=r"10\.1\.2\.3"):
        await guard.check("https://hooks.example.com/x")


async def test_private_allowed_when_configured() -> None:
    guard = UrlGuard(allow_private=True)
    assert await guard.check("http://127.0.0.1:9/hook") == "http://127.0.0.1:9/hook"
    target = await guard.target("http://localhost:9/hook")
    # Not checked, but still resolved by the guard and pinned, so a moved name is followed (test_dns_ttl.py).
    assert target.url in ("http://127.0.0.1:9/hook", "http://[::1]:9/hook")
    assert target.host_header == "localhost:9"


async def test_target_pins_the_checked_address() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        assert (host, port) == ("hooks.example.com", 8443)
        return ["2606:4700::1111"]

    guard = UrlGuard(allow_private=False, resolver=resolver)
    target = await guard.target("https://hooks.example.com:8443/in?x=1")
    assert target.url == "https://[2606:4700::1111]:8443/in?x=1"
    assert target.host_header == "hooks.example.com:8443"
    assert target.sni_hostname == "hooks.example.com"


async def test_rebinding_is_caught_at_delivery_time() -> None:
    answers = [["93.184.216.34"], ["127.0.0.1"]]

    async def resolver(host: str, port: int) -> list[str]:
        return answers.pop(0)

    guard = UrlGuard(allow_private=False, resolver=resolver)
    await guard.check("http://rebind.example.com/hook")  # public at creation
    with pytest.raises(UrlRefused, match="loopback"):
        await guard.target("http://rebind.example.com/hook")  # private when sending


async def test_unresolvable_host_refused() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    guard = UrlGuard(allow_private=False, resolver=resolver)
    with pytest.raises(UrlRefused, match="does not resolve"):
        await guard.check("http://nowhere.invalid/hook")
