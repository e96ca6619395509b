"""Configuration version rules.

A configuration version is one snapshot of a Terraform configuration: a gzip-compressed tar
(go-slug's format) that a client uploads once, without a token, to the signed ``upload-url``
it got when it created the version. Its status follows TFE's "Configuration Version States":

    pending --upload accepted--> uploaded --archive--> archived
    pending --upload refused---> errored

Uploads are untrusted. A tarball is validated as a stream with
:func:`terrapod.archives.check_tarball` (no absolute or ``..`` member names, no devices, no
links leaving the root, size and member-count limits) and never unpacked on the server. A
refused upload leaves an ``errored`` version whose message names the problem, and no stored
object. Validation runs before any database write lock is taken, so a large tarball never
stalls other writers.

"Used" (seed 001, "Create a Run": a run without a configuration version takes the workspace's
most recently used one, and a version is used "when it is created or used for a run in this
workspace"): an uploaded version's ``updated_at`` is when it was uploaded or last used, since
nothing else changes an uploaded version but archiving, which ends its use. :func:`latest`
reads it and :func:`mark_used` moves it.

Functions that act for a caller authorize first and work inside the caller's transaction. The
upload functions are called by the upload handler in :mod:`.api`, which owns its transaction.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import anyio.to_thread
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize
from terrapod.access.principal import Principal
from terrapod.archives import ArchiveLimits, UnsafeArchive, check_tarball
from terrapod.config import RunSettings
from terrapod.configversions.models import (
    ARCHIVED,
    ERRORED,
    PENDING,
    UPLOADED,
    ConfigurationVersion,
)
from terrapod.db.hooks import Hook, after_commit, fire
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Conflict, Forbidden, Invalid, NotFound
from terrapod.observability.logging import get_logger
from terrapod.organizations.models import Organization
from terrapod.storage import ObjectInfo, ObjectNotFound, ObjectStore, ObjectStream, keys
from terrapod.workspaces.models import Workspace

log = get_logger("terrapod.configversions")

SOURCE_API = "tfe-api"
GZIP_MAGIC = b"\x1f\x8b"
# Members (files, directories, links) one configuration may hold. A constant rather than a
# setting until someone needs another value; tests lower it.
MAX_CONFIGURATION_FILES = ArchiveLimits().max_files
# Where a run's configuration-version relationship points, for errors about it.
CV_POINTER = "/data/relationships/configuration-version/data/id"


class TarballRefused(Invalid):
    """The uploaded tarball broke a rule and the version is now ``errored``. That status must
    be committed although the upload request fails."""


@dataclass(frozen=True)
class CreateRequest:
    auto_queue_runs: bool = True
    speculative: bool = False
    provisional: bool = False


@dataclass(frozen=True)
class Inspection:
    """What :func:`inspect_upload` found in a stored tarball.

    ``md5`` is that of the bytes inspected (None when the object was already gone): when it
    differs from the upload's own MD5, another upload replaced the object first and the
    verdict is about someone else's bytes. ``problem`` is None for an acceptable tarball.
    """

    md5: str | None
    file_count: int = 0
    problem: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(cv: ConfigurationVersion, status: str, when: datetime) -> None:
    """Move ``cv`` to ``status`` and record ``<status>-at`` as an ISO 8601 string (in a new
    dict: the JSON column only notices assignment)."""
    cv.status = status
    cv.status_timestamps = {**(cv.status_timestamps or {}), f"{status}-at": when.isoformat()}
    cv.updated_at = when


def _authorize(
    principal: Principal, action: Action, ws: Workspace, org: Organization, what: str
) -> None:
    authorize(
        principal,
        action,
        organization_id=org.id,
        workspace_id=ws.id,
        workspace_creator=ws.created_by_id,
        what=what,
    )


def archive_limits(runs: RunSettings) -> ArchiveLimits:
    """The limits a configuration must keep to: checked on upload, and the ones a runner
    should extract with, so nothing accepted here is refused there."""
    return ArchiveLimits(
        max_total_bytes=runs.max_configuration_bytes, max_files=MAX_CONFIGURATION_FILES
    )


# -- reads ---------------------------------------------------------------------------------


async def get(
    session: AsyncSession,
    principal: Principal,
    cv_id: str,
    action: Action = Action.WS_READ,
    *,
    for_update: bool = False,
) -> tuple[ConfigurationVersion, Workspace, Organization]:
    """The version with its workspace and organization, once the principal may read that
    workspace and do ``action`` on it. NotFound for a malformed id, a missing version or one
    the principal may not see; Forbidden when it may see it but not do ``action``.
    ``for_update`` locks the version's row (PostgreSQL; SQLite writers are serialized)."""
    row = None
    if looks_like_id(cv_id, "cv"):
        query = (
            select(ConfigurationVersion, Workspace, Organization)
            .join(Workspace, Workspace.id == ConfigurationVersion.workspace_id)
            .join(Organization, Organization.id == Workspace.organization_id)
            .where(ConfigurationVersion.id == cv_id)
        )
        if for_update:
            query = query.with_for_update(of=ConfigurationVersion)
        row = (await session.execute(query)).first()
    if row is None:
        raise NotFound("configuration version not found")
    cv, ws, org = row
    _authorize(principal, Action.WS_READ, ws, org, "configuration version")
    if action is not Action.WS_READ:
        _authorize(principal, action, ws, org, "workspace")
    return cv, ws, org


async def list_for_workspace(
    session: AsyncSession,
    principal: Principal,
    ws: Workspace,
    org: Organization,
    *,
    offset: int,
    limit: int,
) -> tuple[Sequence[ConfigurationVersion], int]:
    """The workspace's versions in every status, newest first, and how many there are."""
    _authorize(principal, Action.WS_READ, ws, org, "workspace")
    where = ConfigurationVersion.workspace_id == ws.id
    total = (
        await session.execute(select(func.count()).select_from(ConfigurationVersion).where(where))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(ConfigurationVersion)
                .where(where)
                .order_by(ConfigurationVersion.created_at.desc(), ConfigurationVersion.id.desc())
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, total


async def latest(session: AsyncSession, workspace_id: str) -> ConfigurationVersion | None:
    """The workspace's most recently used uploaded version (see the module docstring): the
    one a run created without a configuration version uses. None when it has none.
    No authorization: the caller has checked the workspace already."""
    return (
        await session.execute(
            select(ConfigurationVersion)
            .where(
                ConfigurationVersion.workspace_id == workspace_id,
                ConfigurationVersion.status == UPLOADED,
                # Speculative versions are never current; provisional ones only once a run
                # that used them was applied (promote()).
                ConfigurationVersion.speculative.is_(False),
                ConfigurationVersion.provisional.is_(False),
            )
            .order_by(
                ConfigurationVersion.updated_at.desc(),
                ConfigurationVersion.created_at.desc(),
                ConfigurationVersion.id.desc(),
            )
            .limit(1)
        )
    ).scalar_one_or_none()


async def get_usable(
    session: AsyncSession, principal: Principal, cv_id: str
) -> tuple[ConfigurationVersion, Workspace, Organization]:
    """A version a run may use: one the principal may read, of any workspace (TFE lets a run
    promote another workspace's configuration), whose tarball is uploaded. NotFound when
    invisible; Invalid when pending, errored or archived. Both point at a run's
    configuration-version relationship."""
    try:
        cv, ws, org = await get(session, principal, cv_id)
    except NotFound as exc:
        raise NotFound(exc.detail, pointer=CV_POINTER) from exc
    if cv.status != UPLOADED:
        why = {
            PENDING: "has no configuration uploaded yet",
            ERRORED: f"errored: {cv.error_message}",
            ARCHIVED: "is archived; its configuration was discarded",
        }.get(cv.status, f"is {cv.status}")
        raise Invalid(f"configuration version {cv.id} {why}", pointer=CV_POINTER)
    return cv, ws, org


async def mark_used(session: AsyncSession, cv: ConfigurationVersion, workspace_id: str) -> None:
    """Record that a run of workspace ``workspace_id`` uses ``cv``, which makes it that
    workspace's :func:`latest` if it is one of the workspace's own versions. A version
    promoted from another workspace is left alone: it belongs to its own workspace, and the
    run records which version it used."""
    if cv.workspace_id == workspace_id and cv.status == UPLOADED:
        cv.updated_at = _now()
        await session.flush()


async def promote(session: AsyncSession, cv: ConfigurationVersion, workspace_id: str) -> None:
    """A run that used ``cv`` was applied: a provisional version becomes an ordinary one and
    the workspace's latest (TFE: "if the associated run is applied, it then becomes the
    current configuration version")."""
    if cv.provisional:
        cv.provisional = False
    await mark_used(session, cv, workspace_id)


async def open_tarball(
    session: AsyncSession, principal: Principal, store: ObjectStore, cv_id: str
) -> tuple[ConfigurationVersion, ObjectStream]:
    """Open an uploaded version's tarball for streaming to the caller. NotFound for a version
    that is not uploaded (as TFE answers)."""
    cv, _, _ = await get(session, principal, cv_id)
    missing = NotFound(f"configuration version {cv.id} has no uploaded configuration")
    if cv.status != UPLOADED:
        raise missing
    try:
        return cv, await store.open(keys.configuration_version(cv.id))
    except ObjectNotFound as exc:
        raise missing from exc


# -- writes --------------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    principal: Principal,
    ws: Workspace,
    org: Organization,
    req: CreateRequest,
) -> ConfigurationVersion:
    """A pending version waiting for its tarball. Needs plan access ("queue plans" in TFE);
    organization tokens are refused, as in TFE (an upload may queue a run, and runs are
    queued by people or teams)."""
    _authorize(principal, Action.WS_QUEUE_RUN, ws, org, "workspace")
    if principal.kind == "organization":
        raise Forbidden(
            "organization tokens cannot create configuration versions; use a user or team token"
        )
    now = _now()
    cv = ConfigurationVersion(
        id=new_id("cv"),
        workspace_id=ws.id,
        status=PENDING,
        source=SOURCE_API,
        auto_queue_runs=req.auto_queue_runs,
        speculative=req.speculative,
        provisional=req.provisional,
        status_timestamps={"queued-at": now.isoformat()},
        created_by_id=principal.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(cv)
    await session.flush()
    return cv


async def archive(
    session: AsyncSession, principal: Principal, store: ObjectStore, cv_id: str
) -> ConfigurationVersion:
    """Discard an uploaded version's tarball. Refused (Conflict) unless the version is uploaded
    and is not its workspace's :func:`latest`, the one new runs would use. The object is
    deleted once the change is committed, so a failed commit leaves the version whole."""
    cv, _, _ = await get(session, principal, cv_id, Action.WS_QUEUE_RUN, for_update=True)
    if cv.status != UPLOADED:
        raise Conflict(
            f"only an uploaded configuration version can be archived; this one is {cv.status}"
        )
    newest = await latest(session, cv.workspace_id)
    if newest is not None and newest.id == cv.id:
        raise Conflict(
            "this is the workspace's latest configuration version, the one new runs use; "
            "it cannot be archived"
        )
    _stamp(cv, ARCHIVED, _now())
    await session.flush()
    key = keys.configuration_version(cv.id)

    async def delete_tarball() -> None:
        await store.delete(key)

    after_commit(session, delete_tarball)
    return cv


# -- uploads (called by the PUT /objects/<token> handler) ------------------------------------


def parse_key(key: str) -> str | None:
    """The configuration version id a tarball key belongs to; None for any other key."""
    folder, _, name = key.partition("/")
    cv_id = name.removesuffix(".tar.gz")
    if folder != "configuration-versions" or not looks_like_id(cv_id, "cv"):
        return None
    return cv_id if keys.configuration_version(cv_id) == key else None


async def may_upload(session: AsyncSession, key: str) -> bool:
    """Upload guard: a tarball is accepted only for a version still waiting for one."""
    cv_id = parse_key(key)
    cv = await session.get(ConfigurationVersion, cv_id) if cv_id else None
    return cv is not None and cv.status == PENDING


def _write(out: IO[bytes], hasher: Any, chunk: bytes) -> None:
    out.write(chunk)
    hasher.update(chunk)


async def _copy(store: ObjectStore, key: str, dest: Path) -> str:
    """Stream the object to ``dest`` (whatever the back-end) and return the MD5 of what was
    copied."""
    hasher = hashlib.md5()
    stream = await store.open(key)
    try:
        out = await anyio.to_thread.run_sync(dest.open, "wb")
        try:
            async for chunk in stream:
                await anyio.to_thread.run_sync(_write, out, hasher, chunk)
        finally:
            await anyio.to_thread.run_sync(out.close)
    finally:
        await stream.aclose()
    return hasher.hexdigest()


def _check(path: Path, limits: ArchiveLimits) -> tuple[str | None, int]:
    """(problem or None, member count) for the tarball at ``path``."""
    with path.open("rb") as f:
        magic = f.read(len(GZIP_MAGIC))
    if magic != GZIP_MAGIC:
        # check_tarball also reads plain tar; go-slug and TFE only ever use .tar.gz.
        return "the configuration is not a gzip-compressed tar archive (.tar.gz)", 0
    try:
        return None, check_tarball(path, limits)
    except UnsafeArchive as exc:
        return f"the configuration archive was refused: {exc}", 0


async def inspect_upload(store: ObjectStore, info: ObjectInfo, limits: ArchiveLimits) -> Inspection:
    """Validate a stored tarball without unpacking it, before any database lock is taken.
    The object is copied to a private temporary file first (check_tarball reads a file, and
    an S3 object is not one)."""
    tmp = await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="terrapod-cv-"))
    try:
        path = Path(tmp) / "configuration.tar.gz"
        try:
            md5 = await _copy(store, info.key, path)
        except ObjectNotFound:
            return Inspection(md5=None)
        if md5 != info.md5:
            return Inspection(md5=md5)
        problem, count = await anyio.to_thread.run_sync(_check, path, limits)
        return Inspection(md5=md5, file_count=count, problem=problem)
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(tmp, ignore_errors=True))


async def tarball_uploaded(
    session: AsyncSession, store: ObjectStore, info: ObjectInfo, inspection: Inspection
) -> ConfigurationVersion:
    """Settle a version after a tarball was stored under its key, given the tarball's
    :func:`inspect_upload` result. The caller holds a write transaction.

    Acceptable: the version becomes ``uploaded`` (size, file count, ``uploaded-at``) and the
    ``configuration_uploaded`` hook fires. Refused: ``errored`` with the problem as its
    message, the object deleted, and :class:`TarballRefused` raised (commit anyway).

    The signed URL stays valid until it expires, so two uploads can race past the guard.
    Only the upload whose bytes are stored when the row is locked settles the version; the
    other gets Conflict and changes nothing. An upload that lands after the version was
    settled makes the records describe the bytes now stored (or deletes them).
    """
    cv_id = parse_key(info.key)
    if cv_id is None:
        raise NotFound("not a configuration version object")
    cv = await session.get(ConfigurationVersion, cv_id, with_for_update=True)
    replaced = Conflict(
        "another upload to this configuration version replaced this one while it was checked"
    )
    if inspection.md5 != info.md5:
        raise replaced
    stored = await store.head(info.key)
    mine = (
        stored is not None
        and stored.size == info.size
        and (stored.md5 is None or stored.md5 == info.md5)
    )
    if cv is None:  # its workspace was deleted meanwhile
        if mine:
            await store.delete(info.key)
        raise NotFound("configuration version not found")
    if not mine:
        raise replaced
    if cv.status in (ERRORED, ARCHIVED):
        await store.delete(info.key)
        raise Conflict(f"this configuration version is {cv.status} and accepts no configuration")
    if inspection.problem is not None:
        cv.error_message = inspection.problem
        cv.size = None
        cv.file_count = None
        _stamp(cv, ERRORED, _now())
        await session.flush()
        await store.delete(info.key)
        raise TarballRefused(inspection.problem)
    cv.size = info.size
    cv.file_count = inspection.file_count
    if cv.status == UPLOADED:
        # Stored after another upload had been accepted: those bytes are gone.
        log.warning("configuration replaced after it was accepted", configuration_version=cv.id)
        await session.flush()
        return cv
    _stamp(cv, UPLOADED, _now())
    await session.flush()
    await fire(session, "configuration_uploaded", cv)
    return cv


# -- reactions to lower domains (wired in terrapod.app) ------------------------------------


def delete_tarballs_of_deleted_workspaces(store: ObjectStore) -> tuple[Hook, Hook]:
    """Hooks removing a deleted workspace's configuration tarballs once the deletion is
    committed. Tarballs are keyed by version, not under the workspace's prefix, so deleting
    the workspace's objects does not reach them."""

    async def forget(session: AsyncSession, where: Any) -> None:
        cv_ids = (
            (
                await session.execute(
                    select(ConfigurationVersion.id).where(
                        where, ConfigurationVersion.status.in_((PENDING, UPLOADED))
                    )
                )
            )
            .scalars()
            .all()
        )
        if not cv_ids:
            return

        async def delete_tarballs() -> None:
            for cv_id in cv_ids:
                try:
                    await store.delete(keys.configuration_version(cv_id))
                except Exception:
                    log.exception("deleting a configuration tarball failed", cv=cv_id)

        after_commit(session, delete_tarballs)

    async def on_workspace(session: AsyncSession, workspace: Workspace) -> None:
        await forget(session, ConfigurationVersion.workspace_id == workspace.id)

    async def on_organization(session: AsyncSession, org: Organization) -> None:
        in_org = select(Workspace.id).where(Workspace.organization_id == org.id)
        await forget(session, ConfigurationVersion.workspace_id.in_(in_org))

    return on_workspace, on_organization
