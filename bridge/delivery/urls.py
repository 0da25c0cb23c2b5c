"""Subscriber URL checks: shape at creation, and private-address refusal (SSRF) at creation and send.

DNS rebinding: a host can resolve to a public address when the subscription is created and to
127.0.0.1 or 169.254.169.254 later, or even between our check and the connection. So at delivery
time `UrlGuard.target` resolves the host, refuses the attempt if *any* address is not public,
and then connects to the very address it checked: the request goes to the IP literal, with the
original `Host` header and, for https, the original name as TLS SNI and for certificate checks. No
second lookup happens between check and connect, so a rebinding answer can't slip in.

A name's answer is reused for `DNS_TTL_SECONDS` (30 s), then resolved and checked again: a subscriber
that moves is found within that time, and the sender's kept-alive connections, pooled per address,
follow it (a connection to the old address is no longer asked for). With `BRIDGE_ALLOW_PRIVATE_URLS` the
same happens without the check. IP literals need no lookup.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import SplitResult, urlsplit, urlunsplit

import msgspec

from bridge.delivery.models import DeliveryError

MAX_URL_LENGTH = 2048
DNS_TTL_SECONDS: Final = 30.0
"""How long a name's checked addresses are reused before it is resolved again (docs/delivery.md)."""
MAX_TARGETS: Final = 4096
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class UrlRefused(DeliveryError):
    """The URL is malformed, or resolves to an address a webhook may not reach."""


class Target(msgspec.Struct, kw_only=True, frozen=True):
    """Where one attempt connects: `url` (maybe an IP literal) plus the name to present."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None
    fallbacks: tuple[str, ...] = ()
    """The same request at the name's other addresses, tried in order when a connection can't be made."""


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


def parse(url: str) -> SplitResult:
    """Shape checks that need no network: scheme, length, host, port."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"url is {len(url)} characters long; at most {MAX_URL_LENGTH} are allowed")
    if any(c.isspace() for c in url):
        raise UrlRefused("url must not contain whitespace")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UrlRefused(f"url is not valid: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"url must start with http:// or https://, not {parts.scheme or 'nothing'!r}")
    if not parts.hostname:
        raise UrlRefused("url has no host")
    if port == 0:
        raise UrlRefused("url has port 0")
    return parts


def forbidden_reason(address: str) -> str | None:
    """Why `address` is not a public unicast address, or None when it is."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            reason = forbidden_reason(str(mapped))
            return None if reason is None else f"{ip} embeds {reason}"
    checks = (
        ("a loopback address", ip.is_loopback),
        ("the unspecified address", ip.is_unspecified),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
        ("a reserved address", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return f"{ip} is {name}"
    return None


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _refuse_private(host: str, addresses: list[str]) -> None:
    for address in addresses:
        reason = forbidden_reason(address)
        if reason is not None:
            raise UrlRefused(
                f"host {host!r} resolves to a non-public address ({reason}); "
                "set BRIDGE_ALLOW_PRIVATE_URLS=true to allow it"
            )


@functools.lru_cache(maxsize=MAX_TARGETS)
def _at_hand(url: str, allow_private: bool) -> Target | None:
    """The target of a URL whose host is an IP literal, kept per URL: it needs nothing but the URL, and
    every attempt asks. None for a name."""
    parts = parse(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    if not allow_private:
        _refuse_private(host, [host])
    return Target(url=url)


class UrlGuard:
    """Applies the address policy; `allow_private` is `BRIDGE_ALLOW_PRIVATE_URLS`. `dns_ttl` is no
    setting: tests shorten it."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver | None = None,
        dns_ttl: float = DNS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow_private = allow_private
        self.dns_ttl = dns_ttl
        self._resolve = resolver or system_resolver
        self._clock = clock
        self._targets: dict[str, tuple[float, Target]] = {}
        """URL -> (until when, its pinned target): the answers of the last `dns_ttl` seconds."""

    async def _addresses(self, parts: SplitResult) -> list[str]:
        """The host's addresses; unless private ones are allowed, refused if any is not public."""
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            try:
                addresses = await self._resolve(host, _port(parts))
            except (OSError, UnicodeError) as error:
                raise UrlRefused(f"host {host!r} does not resolve: {error}") from None
        if not addresses:
            raise UrlRefused(f"host {host!r} does not resolve to any address")
        if not self.allow_private:
            _refuse_private(host, addresses)
        return addresses

    async def check(self, url: str) -> str:
        """Validate a URL a user gives us (resolved now, not from the cache); returns it unchanged."""
        parts = parse(url)
        if not self.allow_private:
            await self._addresses(parts)
        return url

    def at_hand(self, url: str) -> Target | None:
        """The target when it needs no lookup (an IP literal, or a name resolved less than `dns_ttl`
        seconds ago), else None."""
        found = _at_hand(url, self.allow_private)
        if found is not None:
            return found
        cached = self._targets.get(url)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        return None

    async def target(self, url: str) -> Target:
        """Resolve and check right before sending, and pin the connection to the checked address; the
        answer serves the next `dns_ttl` seconds."""
        found = self.at_hand(url)
        if found is not None:
            return found
        parts = parse(url)
        addresses = await self._addresses(parts)  # a name: `at_hand` took IP literals
        host = parts.hostname or ""
        pinned = [_pinned(parts, address) for address in addresses]
        target = Target(
            url=pinned[0],
            host_header=host if parts.port is None else f"{host}:{parts.port}",
            sni_hostname=host if parts.scheme == "https" else None,
            fallbacks=tuple(pinned[1:]),
        )
        now = self._clock()
        if len(self._targets) >= MAX_TARGETS:
            self._targets = {u: entry for u, entry in self._targets.items() if entry[0] > now}
            if len(self._targets) >= MAX_TARGETS:
                self._targets.clear()
        self._targets[url] = (now + self.dns_ttl, target)
        return target


def _pinned(parts: SplitResult, address: str) -> str:
    """The URL with its host replaced by `address` (the request goes there; the name goes in `Host`)."""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
