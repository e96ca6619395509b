"""Notification configuration rules, the run hook that queues deliveries, and what the
deliverer needs from the database.

Reading a workspace's configurations needs read access to it (``WS_READ``); creating,
changing, deleting and verifying need admin access (``WS_MANAGE_NOTIFICATIONS``), as in TFE.
Every function authorizes first and checks every attribute before anything is written.

The token of a generic destination is write-only: it is stored only as SecretBox ciphertext
bound to the configuration's id, never returned (the API shows ``has-token``), and decrypted
only to sign a delivery.

Deliveries are an outbox: :func:`on_run_changed` writes one row per subscribed configuration
in the transaction that changed the run, with one INSERT ... SELECT, so a rolled-back change
notifies nobody and a committed one is never forgotten. The deliverer (deliverer.py) claims
due rows (:func:`claim_due`), sends them with no transaction open, and records what happened
(:func:`record_outcome`): a failure is retried with exponential back-off until
``notifications.max_attempts``; the row is deleted once it is sent or given up, and the
destination's answer is kept on the configuration (``delivery-responses``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from sqlalchemy import Integer, String, delete, func, insert, literal, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from terrapod.access.permissions import Action, authorize
from terrapod.access.principal import Principal
from terrapod.config import NotificationSettings
from terrapod.crypto import SecretBox
from terrapod.db.base import UTCDateTime, utcnow
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Invalid, NotFound
from terrapod.events.bus import publish_after_commit
from terrapod.notifications import destinations, payloads
from terrapod.notifications.models import (
    DESTINATION_TYPES,
    EMAIL,
    GENERIC,
    PENDING,
    SENDING,
    NotificationConfiguration,
    NotificationDelivery,
)
from terrapod.organizations.models import Organization
from terrapod.runs.models import Run
from terrapod.timefmt import iso
from terrapod.users.models import User
from terrapod.workspaces.models import Workspace

# TFE: "Each workspace can have up to 20 notification configurations".
MAX_PER_WORKSPACE = 20
MAX_NAME_LENGTH = 255
MAX_URL_LENGTH = 2048
MAX_TOKEN_LENGTH = 1024
MAX_EMAIL_ADDRESSES = 100
MAX_EMAIL_LENGTH = 254
# Delivery responses kept per configuration, newest first.
KEEP_RESPONSES = 10
# A claimed delivery is another deliverer's to retry once this much longer than a send may
# take has passed (its deliverer died).
LEASE_MARGIN_SECONDS = 60.0
# The longest wait between two tries.
MAX_BACKOFF_SECONDS = 3600.0
# The event-bus topic that wakes the deliverer.
TOPIC = "notifications"

# Deliberately simple: one @, no whitespace or control characters (no header injection),
# a dot in the domain. Whether the mailbox exists only the mail server can tell.
EMAIL_RE = re.compile(
    r"^[^@\s\x00-\x1f\x7f,;<>\"]+@[^@\s\x00-\x1f\x7f,;<>\"]+\.[^@\s\x00-\x1f\x7f,;<>\"]+$"
)

SETTABLE = ("name", "destination_type", "url", "token", "enabled", "triggers", "email_addresses")
NOT_NULL = ("name", "destination_type", "enabled", "triggers", "email_addresses")


def _pointer(attribute: str) -> str:
    return "/data/attributes/" + attribute.replace("_", "-")


def _context(configuration_id: str) -> str:
    """The associated data binding a token's ciphertext to its configuration (crypto.py)."""
    return f"notification-configuration:{configuration_id}"


def _authorize(principal: Principal, action: Action, ws: Workspace, org: Organization) -> None:
    authorize(
        principal,
        action,
        organization_id=org.id,
        workspace_id=ws.id,
        workspace_creator=ws.created_by_id,
        what="workspace",
    )


# -- validation --------------------------------------------------------------------------


def _validate(values: dict[str, Any]) -> None:
    """Checks of single attributes, before they are merged with the configuration's others."""
    for name in NOT_NULL:
        if name in values and values[name] is None:
            raise Invalid(f"{name.replace('_', '-')} cannot be null", pointer=_pointer(name))
    if "name" in values:
        name = values["name"]
        if not name.strip():
            raise Invalid("name cannot be blank", pointer=_pointer("name"))
        if len(name) > MAX_NAME_LENGTH:
            raise Invalid(
                f"name must be at most {MAX_NAME_LENGTH} characters", pointer=_pointer("name")
            )
    kind = values.get("destination_type")
    if kind is not None and kind not in DESTINATION_TYPES:
        raise Invalid(
            f"destination-type must be one of {', '.join(DESTINATION_TYPES)}, got {kind!r} "
            "(microsoft-teams is not supported)",
            pointer=_pointer("destination_type"),
        )
    _validate_lists(values)
    token = values.get("token")
    if token is not None and len(token) > MAX_TOKEN_LENGTH:
        raise Invalid(
            f"token must be at most {MAX_TOKEN_LENGTH} characters", pointer=_pointer("token")
        )


def _validate_lists(values: dict[str, Any]) -> None:
    triggers = values.get("triggers")
    if triggers is not None:
        for index, trigger in enumerate(triggers):
            if trigger not in payloads.TRIGGERS:
                raise Invalid(
                    f"triggers: {trigger!r} is not a trigger; use {', '.join(payloads.TRIGGERS)}",
                    pointer=f"{_pointer('triggers')}/{index}",
                )
    addresses = values.get("email_addresses")
    if addresses is not None:
        if len(addresses) > MAX_EMAIL_ADDRESSES:
            raise Invalid(
                f"email-addresses may hold at most {MAX_EMAIL_ADDRESSES} addresses",
                pointer=_pointer("email_addresses"),
            )
        for index, address in enumerate(addresses):
            if len(address) > MAX_EMAIL_LENGTH or not EMAIL_RE.match(address):
                raise Invalid(
                    f"email-addresses: {address[:80]!r} is not an email address",
                    pointer=f"{_pointer('email_addresses')}/{index}",
                )


async def _check_destination(
    nc: NotificationConfiguration, values: dict[str, Any], settings: NotificationSettings
) -> None:
    """The merged configuration can be delivered: a URL for webhooks (absolute http(s), and
    not leading to a refused address), addresses and a mail server for email."""
    if nc.destination_type == EMAIL:
        if not nc.email_addresses:
            raise Invalid(
                "email-addresses: an email destination needs at least one address",
                pointer=_pointer("email_addresses"),
            )
        if not destinations.smtp_configured(settings):
            raise Invalid(
                "email notifications are not available: the server has no mail server "
                "(notifications.smtp.host)",
                pointer=_pointer("destination_type"),
            )
        if values.get("token"):
            raise Invalid("token is only used by generic destinations", pointer=_pointer("token"))
        return
    if not nc.url:
        raise Invalid(
            f"url is required for a {nc.destination_type} destination", pointer=_pointer("url")
        )
    if len(nc.url) > MAX_URL_LENGTH:
        raise Invalid(f"url must be at most {MAX_URL_LENGTH} characters", pointer=_pointer("url"))
    if nc.destination_type != GENERIC and "token" in values and values["token"]:
        raise Invalid("token is only used by generic destinations", pointer=_pointer("token"))
    if "url" in values or "destination_type" in values:
        try:
            await destinations.check_url(nc.url, settings)
        except ValueError as exc:
            raise Invalid(str(exc), pointer=_pointer("url")) from None
        except destinations.AddressRefused as exc:
            raise Invalid(f"url: {exc}", pointer=_pointer("url")) from None


def _apply(box: SecretBox, nc: NotificationConfiguration, values: dict[str, Any]) -> None:
    for name in ("name", "destination_type", "url", "enabled", "email_addresses"):
        if name in values:
            setattr(nc, name, values[name])
    if "triggers" in values:
        # In the order of TRIGGERS, without repeats.
        nc.triggers = [t for t in payloads.TRIGGERS if t in values["triggers"]]
    if "token" in values:
        token = values["token"]
        nc.token_encrypted = box.encrypt(token.encode(), context=_context(nc.id)) if token else None


def token_of(box: SecretBox, nc: NotificationConfiguration) -> str | None:
    """The configuration's token in plain text, to sign with; None when it has none or it can
    no longer be decrypted (the server's secret key changed: deliveries go unsigned, and a
    warning says so)."""
    if nc.token_encrypted is None:
        return None
    try:
        return box.decrypt(nc.token_encrypted, context=_context(nc.id)).decode()
    except (InvalidTag, ValueError):
        return None


# -- reads -------------------------------------------------------------------------------


async def list_for_workspace(
    session: AsyncSession,
    principal: Principal,
    ws: Workspace,
    org: Organization,
    *,
    offset: int,
    limit: int,
) -> tuple[Sequence[NotificationConfiguration], int]:
    """One page of the workspace's configurations, oldest first, and how many there are."""
    _authorize(principal, Action.WS_READ, ws, org)
    where = NotificationConfiguration.workspace_id == ws.id
    total = (
        await session.execute(
            select(func.count()).select_from(NotificationConfiguration).where(where)
        )
    ).scalar_one()
    rows = (
        await session.execute(
            select(NotificationConfiguration)
            .where(where)
            .order_by(NotificationConfiguration.created_at, NotificationConfiguration.id)
            .offset(offset)
            .limit(limit)
        )
    ).scalars()
    return rows.all(), total


async def get(
    session: AsyncSession,
    principal: Principal,
    configuration_id: str,
    action: Action = Action.WS_READ,
) -> tuple[NotificationConfiguration, Workspace, Organization]:
    """The configuration with its workspace and organization, once the principal may read
    that workspace and do ``action`` on it (NotFound / Forbidden otherwise)."""
    row = None
    if looks_like_id(configuration_id, "nc"):
        row = (
            await session.execute(
                select(NotificationConfiguration, Workspace, Organization)
                .join(Workspace, Workspace.id == NotificationConfiguration.workspace_id)
                .join(Organization, Organization.id == Workspace.organization_id)
                .where(NotificationConfiguration.id == configuration_id)
            )
        ).first()
    if row is None:
        raise NotFound("notification configuration not found")
    nc, ws, org = row
    try:
        _authorize(principal, Action.WS_READ, ws, org)
    except NotFound:
        raise NotFound("notification configuration not found") from None
    if action is not Action.WS_READ:
        _authorize(principal, action, ws, org)
    return nc, ws, org


# -- writes ------------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    settings: NotificationSettings,
    ws: Workspace,
    org: Organization,
    values: dict[str, Any],
    *,
    base_url: str | None = None,
) -> NotificationConfiguration:
    """Create a configuration from the attributes sent (domain names). ``name`` and
    ``destination-type`` are required; ``enabled`` defaults to false and ``triggers`` to
    none, as in TFE."""
    _authorize(principal, Action.WS_MANAGE_NOTIFICATIONS, ws, org)
    _validate(values)
    for required in ("name", "destination_type"):
        if required not in values:
            raise Invalid(f"{required.replace('_', '-')} is required", pointer=_pointer(required))
    count = (
        await session.execute(
            select(func.count())
            .select_from(NotificationConfiguration)
            .where(NotificationConfiguration.workspace_id == ws.id)
        )
    ).scalar_one()
    if count >= MAX_PER_WORKSPACE:
        raise Invalid(
            f"a workspace can have at most {MAX_PER_WORKSPACE} notification configurations"
        )
    nc = NotificationConfiguration(
        id=new_id("nc"),
        workspace_id=ws.id,
        enabled=False,
        email_addresses=[],
        delivery_responses=[],
        base_url=base_url,
    )
    nc.triggers = []
    _apply(box, nc, values)
    await _check_destination(nc, values, settings)
    session.add(nc)
    await session.flush()
    return nc


async def update(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    settings: NotificationSettings,
    nc: NotificationConfiguration,
    ws: Workspace,
    org: Organization,
    values: dict[str, Any],
    *,
    base_url: str | None = None,
) -> NotificationConfiguration:
    """Change the attributes sent. An absent token keeps the current one; null or "" removes
    it. The result is checked as a whole, so a change of destination type needs what the new
    type needs."""
    _authorize(principal, Action.WS_MANAGE_NOTIFICATIONS, ws, org)
    _validate(values)
    # Check on a detached copy first: a refused change must leave the row as it was.
    draft = NotificationConfiguration(
        id=nc.id,
        destination_type=nc.destination_type,
        url=nc.url,
        email_addresses=list(nc.email_addresses),
        triggers_text=nc.triggers_text,
    )
    _apply(box, draft, {k: v for k, v in values.items() if k != "token"})
    await _check_destination(draft, values, settings)
    _apply(box, nc, values)
    if base_url is not None:
        nc.base_url = base_url
    nc.updated_at = utcnow()
    await session.flush()
    return nc


async def delete_(
    session: AsyncSession,
    principal: Principal,
    nc: NotificationConfiguration,
    ws: Workspace,
    org: Organization,
) -> None:
    """Delete the configuration; its undelivered notifications go with it."""
    _authorize(principal, Action.WS_MANAGE_NOTIFICATIONS, ws, org)
    await session.execute(
        delete(NotificationDelivery).where(NotificationDelivery.configuration_id == nc.id)
    )
    await session.delete(nc)
    await session.flush()


async def verify(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    settings: NotificationSettings,
    nc: NotificationConfiguration,
    ws: Workspace,
    org: Organization,
) -> NotificationConfiguration:
    """Send a test notification now and record the destination's answer (or why there was
    none) as the newest delivery response, which the caller reads from the result. Sent even
    when the configuration is disabled, as TFE does."""
    _authorize(principal, Action.WS_MANAGE_NOTIFICATIONS, ws, org)
    subject = payloads.verification(_subject_base(nc, ws, org))
    outcome = await send(nc, subject, box, settings)
    remember_response(nc, outcome, utcnow())
    await session.flush()
    return nc


# -- sending -----------------------------------------------------------------------------


def _subject_base(
    nc: NotificationConfiguration, ws: Workspace, org: Organization
) -> payloads.Subject:
    return payloads.Subject(
        configuration_id=nc.id,
        configuration_name=nc.name,
        workspace_id=ws.id,
        workspace_name=ws.name,
        organization_name=org.name,
        run=None,
        notification=payloads.Notification(message="", trigger=""),
    )


async def send(
    nc: NotificationConfiguration,
    subject: payloads.Subject,
    box: SecretBox,
    settings: NotificationSettings,
) -> destinations.Outcome:
    """Deliver ``subject`` to the configuration's destination; never raises for the
    destination's faults."""
    if nc.destination_type == EMAIL:
        message = payloads.email_message(
            subject, settings.smtp.from_address, list(nc.email_addresses)
        )
        return await destinations.send_email(message, settings)
    url = nc.url or ""
    if nc.destination_type == GENERIC:
        body, headers = payloads.generic_body(subject, token_of(box, nc))
    else:
        body = orjson.dumps(payloads.slack_message(subject))
        headers = {"Content-Type": "application/json"}
    return await destinations.post(url, body, headers, settings)


def remember_response(
    nc: NotificationConfiguration, outcome: destinations.Outcome, sent_at: datetime
) -> None:
    """Keep ``outcome`` as the newest of the configuration's delivery responses."""
    entry = {
        "url": outcome.url,
        "body": outcome.body,
        "code": outcome.code,
        "headers": outcome.headers,
        "sent_at": iso(sent_at),
        "successful": outcome.successful,
    }
    nc.delivery_responses = [entry, *(nc.delivery_responses or [])][:KEEP_RESPONSES]


# -- the run hook: the outbox --------------------------------------------------------------


async def on_run_changed(session: AsyncSession, run: Run) -> None:
    """The ``run_changed`` hook (wired in terrapod.app): queue a delivery for every enabled
    configuration of the run's workspace subscribed to a trigger the new status fires, in
    this transaction, with one statement. Speculative (plan-only) runs notify nobody, as in
    TFE. The deliverer is woken once the transaction has committed."""
    if run.plan_only:
        return
    triggers = payloads.triggers_for(
        run.status, auto_apply=run.auto_apply, confirmed=run.confirmed_by_id is not None
    )
    if not triggers:
        return
    now = utcnow()
    nc = NotificationConfiguration
    subscribed = or_(*(nc.triggers_text.contains(f",{t},", autoescape=True) for t in triggers))
    rows = select(
        nc.id,
        literal(run.id, String()),
        literal("," + "".join(t + "," for t in triggers), String()),
        literal(run.status, String()),
        literal(now, UTCDateTime()),
        literal(PENDING, String()),
        literal(0, Integer()),
        literal(now, UTCDateTime()),
    ).where(nc.workspace_id == run.workspace_id, nc.enabled.is_(True), subscribed)
    d = NotificationDelivery
    result = await session.execute(
        insert(d).from_select(
            [
                d.configuration_id,
                d.run_id,
                d.triggers_text,
                d.run_status,
                d.run_updated_at,
                d.status,
                d.attempts,
                d.next_attempt_at,
            ],
            rows,
        )
    )
    if getattr(result, "rowcount", 0):
        publish_after_commit(session, TOPIC, {"run_id": run.id})


# -- for the deliverer ---------------------------------------------------------------------


@dataclass
class Claimed:
    """A delivery the caller now holds, with what its notification says."""

    delivery_id: int
    attempts: int
    configuration: NotificationConfiguration
    subject: payloads.Subject


def lease_seconds(settings: NotificationSettings) -> float:
    return settings.timeout_seconds * 3 + LEASE_MARGIN_SECONDS


async def claim_due(
    session: AsyncSession,
    settings: NotificationSettings,
    *,
    limit: int,
    external_url: str | None,
    now: datetime | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` deliveries that are due (waiting and their time has come, or
    claimed by a deliverer whose lease ran out) and load what they say.

    Exclusive on both databases: PostgreSQL selects with ``FOR UPDATE SKIP LOCKED``, so
    concurrent claimers take different rows; SQLite serializes writers (BEGIN IMMEDIATE), and
    the UPDATE is conditional on the row still being due either way."""
    now = now or utcnow()
    d = NotificationDelivery
    query = select(d.id).where(d.next_attempt_at <= now).order_by(d.next_attempt_at, d.id)
    # FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite leaves it out (its writers are serialized).
    query = query.limit(limit).with_for_update(skip_locked=True)
    ids = list((await session.execute(query)).scalars())
    if not ids:
        return []
    lease_end = now + timedelta(seconds=lease_seconds(settings))
    claimed = (
        await session.execute(
            sql_update(d)
            .where(d.id.in_(ids), d.next_attempt_at <= now)
            .values(status=SENDING, attempts=d.attempts + 1, next_attempt_at=lease_end)
            .returning(d.id)
            .execution_options(synchronize_session=False)
        )
    ).scalars()
    claimed_ids = list(claimed)
    if not claimed_ids:
        return []
    creator = aliased(User)
    confirmer = aliased(User)
    rows = await session.execute(
        select(d, NotificationConfiguration, Run, Workspace, Organization, creator, confirmer)
        .join(NotificationConfiguration, NotificationConfiguration.id == d.configuration_id)
        .join(Run, Run.id == d.run_id)
        .join(Workspace, Workspace.id == Run.workspace_id)
        .join(Organization, Organization.id == Workspace.organization_id)
        .outerjoin(creator, creator.id == Run.created_by_id)
        .outerjoin(confirmer, confirmer.id == Run.confirmed_by_id)
        .where(d.id.in_(claimed_ids))
        .order_by(d.id)
    )
    out: list[Claimed] = []
    for delivery, nc, run, ws, org, made_by, confirmed_by in rows.all():
        base = external_url or nc.base_url or ""
        subscribed = [t for t in delivery.triggers_text.split(",") if t and t in nc.triggers]
        trigger = subscribed[0] if subscribed else delivery.triggers_text.strip(",").split(",")[0]
        updated_by = None
        if delivery.run_status == "pending":
            updated_by = made_by.username if made_by else None
        elif confirmed_by is not None and delivery.run_status in ("applying", "applied"):
            updated_by = confirmed_by.username
        subject = payloads.Subject(
            configuration_id=nc.id,
            configuration_name=nc.name,
            workspace_id=ws.id,
            workspace_name=ws.name,
            organization_name=org.name,
            run=payloads.RunFacts(
                id=run.id,
                url=payloads.run_url(base, org.name, ws.name, run.id),
                message=run.message,
                created_at=run.created_at,
                created_by=made_by.username if made_by else None,
            ),
            notification=payloads.Notification(
                message=payloads.message_for(delivery.run_status),
                trigger=trigger,
                run_status=delivery.run_status,
                run_updated_at=delivery.run_updated_at,
                run_updated_by=updated_by,
            ),
        )
        out.append(Claimed(delivery.id, delivery.attempts, nc, subject))
    return out


def backoff(settings: NotificationSettings, attempts: int) -> float:
    """Seconds before the try after ``attempts`` failed ones: base, 2 x base, 4 x base, …"""
    delay: float = settings.retry_base_seconds * 2.0 ** max(attempts - 1, 0)
    return min(delay, MAX_BACKOFF_SECONDS)


async def record_outcome(
    session: AsyncSession,
    settings: NotificationSettings,
    claimed: Claimed,
    outcome: destinations.Outcome,
    *,
    sent_at: datetime,
) -> str:
    """Record one try: ``delivered``, ``retry`` (another try is scheduled) or ``given-up``
    (the attempts are spent). Nothing changes when the claim was lost meanwhile (``lost``)."""
    d = NotificationDelivery
    held = (d.id == claimed.delivery_id, d.status == SENDING, d.attempts == claimed.attempts)
    if outcome.successful or claimed.attempts >= settings.max_attempts:
        result = await session.execute(delete(d).where(*held))
        verdict = "delivered" if outcome.successful else "given-up"
    else:
        retry_at = sent_at + timedelta(seconds=backoff(settings, claimed.attempts))
        result = await session.execute(
            sql_update(d)
            .where(*held)
            .values(status=PENDING, next_attempt_at=retry_at, last_error=outcome.body[:2000])
            .execution_options(synchronize_session=False)
        )
        verdict = "retry"
    if not getattr(result, "rowcount", 0):
        return "lost"
    # Locked (PostgreSQL), so concurrent deliveries to one configuration keep every response.
    nc = (
        await session.execute(
            select(NotificationConfiguration)
            .where(NotificationConfiguration.id == claimed.configuration.id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if nc is not None:
        remember_response(nc, outcome, sent_at)
    await session.flush()
    return verdict
