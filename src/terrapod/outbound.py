"""Outbound HTTP to URLs that users chose (notification webhooks, run task services).

Addresses. Such a URL names a host that somebody outside the server chose, so by default it
must not lead inside the server's network: every address the host resolves to must be public
(not private, loopback, link-local, multicast, reserved or unspecified) unless the caller
allows private addresses (each domain has its own setting, named in the refusal). The check
runs when the URL is saved (:func:`check_url`) and again at every request (:func:`post`), and
the request connects to exactly the address it checked (the URL's host is replaced by that
address; ``Host`` and the TLS server name keep the original name, so certificates are still
verified against it). A DNS answer that changes between the check and the connection (DNS
rebinding) therefore cannot redirect the request. Redirects are not followed, and proxies from
the environment are not used.

This module knows no domain: callers pass ``allow_private``, the name of the setting that
allows private addresses (for the refusal message) and the timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

# What is kept of an answer (body characters).
MAX_RESPONSE_BODY = 4096


class AddressRefused(Exception):
    """The URL may not be used (its address is not allowed, or its host does not resolve)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one request. ``code`` is None when no answer came at all (``body``
    then says why)."""

    url: str
    successful: bool
    code: int | None
    body: str
    headers: dict[str, list[str]] = field(default_factory=dict)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_allowed(address: IPAddress) -> bool:
    """A public unicast address (an IPv4-mapped IPv6 address is judged as its IPv4 one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL; ValueError naming what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("url must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("url must not contain a user name or password")
    if any(c.isspace() for c in url):
        raise ValueError("url must not contain whitespace")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int, within: float) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal address is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=within
    )
    seen: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


def _refuse(host: str, addresses: list[IPAddress], allowed_by: str) -> None:
    bad = [a for a in addresses if not address_allowed(a)]
    if bad:
        which = host if str(bad[0]) == host else f"{host} ({bad[0]})"
        raise AddressRefused(
            f"{which} is a private, loopback, link-local or reserved address; the server "
            f"administrator can allow such addresses with {allowed_by}"
        )


async def check_url(
    url: str, *, allow_private: bool, allowed_by: str, timeout_seconds: float
) -> None:
    """When saving a URL: ValueError for a malformed URL, AddressRefused for a host that
    resolves to an address not allowed. A host that does not resolve (yet) is accepted; every
    request checks it again."""
    _, host, port = split_url(url)
    if allow_private:
        return
    try:
        addresses = await resolve(host, port, timeout_seconds)
    except (OSError, TimeoutError, UnicodeError):
        return
    _refuse(host, addresses, allowed_by)


async def _pinned_address(
    url: str, *, allow_private: bool, allowed_by: str, timeout_seconds: float
) -> tuple[str, str, int, IPAddress]:
    scheme, host, port = split_url(url)
    try:
        addresses = await resolve(host, port, timeout_seconds)
    except TimeoutError:
        raise AddressRefused(f"resolving {host} timed out") from None
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"{host} does not resolve: {exc}") from None
    if not addresses:
        raise AddressRefused(f"{host} does not resolve")
    if not allow_private:
        _refuse(host, addresses, allowed_by)
    return scheme, host, port, addresses[0]


async def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    allowed_by: str,
    timeout_seconds: float,
) -> Outcome:
    """POST ``body`` to ``url`` at the address that was checked; never raises for the
    receiver's faults (they become an unsuccessful Outcome; a URL that may not be used is
    never connected to and its Outcome's body starts with "not sent: ")."""
    try:
        scheme, host, port, address = await _pinned_address(
            url, allow_private=allow_private, allowed_by=allowed_by, timeout_seconds=timeout_seconds
        )
    except (ValueError, AddressRefused) as exc:
        return Outcome(url, successful=False, code=None, body=f"not sent: {exc}")
    parts = urlsplit(url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    target = urlunsplit((scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    request_headers = {**headers, "Host": parts.netloc}
    extensions: dict[str, Any] = {}
    if scheme == "https":
        extensions["sni_hostname"] = host
    try:
        async with httpx.AsyncClient(
            timeout=timeout_seconds, follow_redirects=False, trust_env=False
        ) as client:
            response = await client.post(
                target, content=body, headers=request_headers, extensions=extensions
            )
    except httpx.TimeoutException:
        return Outcome(
            url, successful=False, code=None, body=f"no answer within {timeout_seconds:g} s"
        )
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        return Outcome(
            url, successful=False, code=None, body=f"could not deliver: {type(exc).__name__}: {exc}"
        )
    answer_headers: dict[str, list[str]] = {}
    for name, value in response.headers.multi_items():
        answer_headers.setdefault(name, []).append(value)
    return Outcome(
        url,
        successful=200 <= response.status_code < 300,
        code=response.status_code,
        body=response.text[:MAX_RESPONSE_BODY],
        headers=answer_headers,
    )
