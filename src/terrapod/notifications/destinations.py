"""Sending to destinations: HTTP webhooks (generic, Slack) and SMTP (email).

Webhook URLs go through :mod:`terrapod.outbound`, which refuses private, loopback,
link-local and reserved addresses unless ``notifications.allow_private_addresses`` is set,
checks again at every delivery and connects to exactly the address it checked (its docstring
says why).
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from terrapod import outbound
from terrapod.config import NotificationSettings
from terrapod.outbound import MAX_RESPONSE_BODY, AddressRefused, Outcome

__all__ = ["AddressRefused", "Outcome", "check_url", "post", "send_email", "smtp_configured"]

ALLOWED_BY = "notifications.allow_private_addresses"
USER_AGENT = "Terrapod-Notifications"


async def check_url(url: str, settings: NotificationSettings) -> None:
    """When saving a configuration: ValueError for a malformed URL, AddressRefused for a host
    that resolves to an address not allowed (a host that does not resolve yet is accepted)."""
    await outbound.check_url(
        url,
        allow_private=settings.allow_private_addresses,
        allowed_by=ALLOWED_BY,
        timeout_seconds=settings.timeout_seconds,
    )


async def post(
    url: str, body: bytes, headers: dict[str, str], settings: NotificationSettings
) -> Outcome:
    """POST ``body`` to a webhook at the address that was checked; never raises for the
    destination's faults (they become an unsuccessful Outcome)."""
    return await outbound.post(
        url,
        body,
        {**headers, "User-Agent": USER_AGENT},
        allow_private=settings.allow_private_addresses,
        allowed_by=ALLOWED_BY,
        timeout_seconds=settings.timeout_seconds,
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
