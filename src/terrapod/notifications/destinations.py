"""Sending to destinations: HTTP webhooks (generic, Slack) and SMTP (email).

Addresses. A destination URL names a host that somebody outside the server chose, so by
default it must not lead inside the server's network: every address the host resolves to
must be public (not private, loopback, link-local, multicast, reserved or unspecified) unless
``notifications.allow_private_addresses`` is set. The check runs when a configuration is
saved and again at every delivery, and the delivery connects to exactly the address it
checked (the URL's host is replaced by that address; ``Host`` and the TLS server name keep
the original name, so certificates are still verified against it). A DNS answer that changes
between the check and the connection (DNS rebinding) therefore cannot redirect the request.
Redirects are not followed, and proxies from the environment are not used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiosmtplib
import httpx

from terrapod.config import NotificationSettings

# What is kept of a destination's answer (body characters).
MAX_RESPONSE_BODY = 4096


class DestinationRefused(Exception):
    """The destination may not be used (its address is not allowed, or the URL is bad)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery. ``code`` is None when no answer came at all (``body``
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
        raise ValueError("url must not contain a user name or password (use token for signing)")
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


def _refuse(host: str, addresses: list[IPAddress]) -> None:
    bad = [a for a in addresses if not address_allowed(a)]
    if bad:
        which = host if str(bad[0]) == host else f"{host} ({bad[0]})"
        raise DestinationRefused(
            f"{which} is a private, loopback, link-local or reserved address; the server "
            "administrator can allow such destinations with notifications.allow_private_addresses"
        )


async def check_url(url: str, settings: NotificationSettings) -> None:
    """When saving a configuration: ValueError for a malformed URL, DestinationRefused for a
    host that resolves to an address not allowed. A host that does not resolve (yet) is
    accepted; every delivery checks it again."""
    _, host, port = split_url(url)
    if settings.allow_private_addresses:
        return
    try:
        addresses = await resolve(host, port, settings.timeout_seconds)
    except (OSError, TimeoutError, UnicodeError):
        return
    _refuse(host, addresses)


async def _pinned_address(
    url: str, settings: NotificationSettings
) -> tuple[str, str, int, IPAddress]:
    scheme, host, port = split_url(url)
    try:
        addresses = await resolve(host, port, settings.timeout_seconds)
    except TimeoutError:
        raise DestinationRefused(f"resolving {host} timed out") from None
    except (OSError, UnicodeError) as exc:
        raise DestinationRefused(f"{host} does not resolve: {exc}") from None
    if not addresses:
        raise DestinationRefused(f"{host} does not resolve")
    if not settings.allow_private_addresses:
        _refuse(host, addresses)
    return scheme, host, port, addresses[0]


async def post(
    url: str, body: bytes, headers: dict[str, str], settings: NotificationSettings
) -> Outcome:
    """POST ``body`` to ``url`` at the address that was checked; never raises for the
    destination's faults (they become an unsuccessful Outcome)."""
    try:
        scheme, host, port, address = await _pinned_address(url, settings)
    except (ValueError, DestinationRefused) as exc:
        return Outcome(url, successful=False, code=None, body=f"not sent: {exc}")
    parts = urlsplit(url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    target = urlunsplit((scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    request_headers = {**headers, "Host": parts.netloc, "User-Agent": "Terrapod-Notifications"}
    extensions: dict[str, Any] = {}
    if scheme == "https":
        extensions["sni_hostname"] = host
    try:
        async with httpx.AsyncClient(
            timeout=settings.timeout_seconds, follow_redirects=False, trust_env=False
        ) as client:
            response = await client.post(
                target, content=body, headers=request_headers, extensions=extensions
            )
    except httpx.TimeoutException:
        return Outcome(
            url,
            successful=False,
            code=None,
            body=f"no answer within {settings.timeout_seconds:g} s",
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


def smtp_configured(settings: NotificationSettings) -> bool:
    return bool(settings.smtp.host)


async def send_email(message: EmailMessage, settings: NotificationSettings) -> Outcome:
    """Send ``message`` through the configured SMTP server; never raises for its faults."""
    smtp = settings.smtp
    where = f"smtp://{smtp.host}:{smtp.port}"
    if not smtp.host:
        return Outcome(
            where, successful=False, code=None, body="not sent: notifications.smtp.host is not set"
        )
    password = smtp.password.get_secret_value() if smtp.password else None
    try:
        errors, reply = await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            use_tls=smtp.security == "ssl",
            start_tls=smtp.security == "starttls",
            username=smtp.username,
            password=password,
            timeout=settings.timeout_seconds,
        )
    except aiosmtplib.SMTPResponseException as exc:
        return Outcome(where, successful=False, code=exc.code, body=exc.message[:MAX_RESPONSE_BODY])
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Outcome(
            where,
            successful=False,
            code=None,
            body=f"could not deliver: {type(exc).__name__}: {exc}",
        )
    if errors:
        refused = ", ".join(f"{who}: {code} {text}" for who, (code, text) in errors.items())
        return Outcome(
            where,
            successful=False,
            code=550,
            body=f"some recipients were refused: {refused}"[:4096],
        )
    return Outcome(where, successful=True, code=250, body=reply[:MAX_RESPONSE_BODY])
