"""State version rules.

A state version is created while the caller holds the workspace lock (as TFE requires). Its
content arrives either inline (base64 ``state``, Terraform 1.0) or later through a signed
upload URL (Terraform 1.15); until the content is stored and verified against the declared
MD5 the version is ``pending`` and can never become current. Only the newest finalized version
is a workspace's current state, so an interrupted or corrupted upload changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize
from terrapod.access.principal import Principal
from terrapod.crypto import SecretBox
from terrapod.db.hooks import Hook, after_commit
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from terrapod.organizations.models import Organization
from terrapod.state.models import (
    DISCARDED,
    FINALIZED,
    PENDING,
    StateVersion,
    StateVersionOutput,
)
from terrapod.state.summary import StateSummary, summarize
from terrapod.storage import ObjectInfo, ObjectStore, keys
from terrapod.workspaces import service as workspaces
from terrapod.workspaces.models import Workspace

MD5_RE = re.compile(r"^[0-9a-f]{32}$")


class Superseded(Conflict):
    """The version was discarded: a newer one became current first. The discard must be
    committed even though the request fails."""


class UndecryptableOutput(Unavailable):
    default_detail = (
        "a sensitive value cannot be decrypted: the server's secret key changed since it was "
        "stored (restore the previous TERRAPOD_SECRET_KEY or <data_dir>/secret.key)"
    )


@dataclass(frozen=True)
class StateContext:
    """What the state service needs besides the session: where objects live and the key
    that encrypts sensitive outputs."""

    store: ObjectStore
    box: SecretBox


@dataclass(frozen=True)
class CreateRequest:
    serial: int
    md5: str
    lineage: str | None = None
    force: bool = False
    state: str | None = None  # base64
    json_state: str | None = None  # base64
    json_state_outputs: str | None = None  # base64 of {"name": {"value", "type", "sensitive"}}
    run_id: str | None = None


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid(f"{field} is not valid base64", pointer=f"/data/attributes/{field}") from exc


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


# -- reads -------------------------------------------------------------------------------


async def get(
    session: AsyncSession, principal: Principal, sv_id: str
) -> tuple[StateVersion, Workspace, Organization]:
    query = (
        select(StateVersion, Workspace, Organization)
        .join(Workspace, Workspace.id == StateVersion.workspace_id)
        .join(Organization, Organization.id == Workspace.organization_id)
        .where(StateVersion.id == sv_id)
    )
    sv, ws, org = await _load_readable(
        session, principal, query, looks_like_id(sv_id, "sv"), "state version"
    )
    return sv, ws, org


async def _load_readable(
    session: AsyncSession, principal: Principal, query: Any, well_formed: bool, what: str
) -> Any:
    """The row ``query`` selects (ending in its workspace and organization), once the
    principal may read that workspace's state; NotFound otherwise, malformed ids included."""
    row = (await session.execute(query)).first() if well_formed else None
    if row is None:
        raise NotFound(f"{what} not found")
    await _authorize_read(session, principal, row[-2], row[-1], what)
    return row


async def _authorize_read(
    session: AsyncSession, principal: Principal, ws: Workspace, org: Organization, what: str
) -> None:
    if not await workspaces.may_read_state(session, principal, ws, org):
        raise NotFound(f"{what} not found")


async def current(
    session: AsyncSession, principal: Principal, ws: Workspace, org: Organization
) -> StateVersion:
    await _authorize_read(session, principal, ws, org, "state version")
    if ws.current_state_version_id is None:
        raise NotFound("workspace has no current state version")
    sv = await session.get(StateVersion, ws.current_state_version_id)
    if sv is None:
        raise NotFound("workspace has no current state version")
    return sv


async def list_for_workspace(
    session: AsyncSession,
    principal: Principal,
    ws: Workspace,
    org: Organization,
    *,
    offset: int,
    limit: int,
) -> tuple[Sequence[StateVersion], int]:
    """Finalized versions, newest first (pending uploads are not history yet)."""
    await _authorize_read(session, principal, ws, org, "workspace")
    where = (StateVersion.workspace_id == ws.id, StateVersion.status == FINALIZED)
    total = (
        await session.execute(select(func.count()).select_from(StateVersion).where(*where))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(StateVersion)
                .where(*where)
                .order_by(StateVersion.created_at.desc(), StateVersion.id.desc())
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, total


async def outputs_of(
    session: AsyncSession, sv_ids: Sequence[str]
) -> dict[str, list[StateVersionOutput]]:
    out: dict[str, list[StateVersionOutput]] = {i: [] for i in sv_ids}
    if not sv_ids:
        return out
    rows = (
        await session.execute(
            select(StateVersionOutput)
            .where(StateVersionOutput.state_version_id.in_(list(sv_ids)))
            .order_by(StateVersionOutput.name)
        )
    ).scalars()
    for row in rows:
        out[row.state_version_id].append(row)
    return out


async def get_output(
    session: AsyncSession, principal: Principal, output_id: str
) -> StateVersionOutput:
    query = (
        select(StateVersionOutput, Workspace, Organization)
        .join(StateVersion, StateVersion.id == StateVersionOutput.state_version_id)
        .join(Workspace, Workspace.id == StateVersion.workspace_id)
        .join(Organization, Organization.id == Workspace.organization_id)
        .where(StateVersionOutput.id == output_id)
    )
    row = await _load_readable(
        session, principal, query, looks_like_id(output_id, "wsout"), "state version output"
    )
    output: StateVersionOutput = row[0]
    return output


def output_value(box: SecretBox, output: StateVersionOutput, *, reveal: bool) -> Any:
    """The output's value; sensitive values only when ``reveal`` (else None, as TFE does)."""
    if output.sensitive:
        if not reveal:
            return None
        try:
            plain = box.decrypt(output.value, context=f"state-version-output:{output.id}")
        except InvalidTag as exc:
            raise UndecryptableOutput() from exc
        return orjson.loads(plain)
    return orjson.loads(output.value)


async def open_content(
    session: AsyncSession,
    principal: Principal,
    ctx: StateContext,
    sv_id: str,
    *,
    json: bool = False,
) -> tuple[StateVersion, Any]:
    """Open the stored state (or JSON state) of a version for streaming to the caller."""
    sv, ws, _ = await get(session, principal, sv_id)
    if sv.status != FINALIZED and not json:
        raise NotFound("state version content has not been uploaded")
    key = keys.state_version_json(ws.id, sv.id) if json else keys.state_version(ws.id, sv.id)
    if json and not sv.json_state_uploaded:
        raise NotFound("state version has no JSON state")
    return sv, await ctx.store.open(key)


# -- writes ------------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    principal: Principal,
    ctx: StateContext,
    ws: Workspace,
    org: Organization,
    req: CreateRequest,
) -> StateVersion:
    authorize(
        principal,
        Action.WS_CREATE_STATE,
        organization_id=org.id,
        workspace_id=ws.id,
        what="workspace",
    )
    if principal.kind == "run" and principal.job_phase != "apply":
        # Only an apply persists state; a plan's token (in a pod running untrusted
        # configuration, perhaps a pull request's speculative plan) must not.
        raise Forbidden("a plan's run token may read this workspace's state but not write it")
    if not workspaces.holds_lock(principal, ws):
        raise Conflict("the workspace must be locked by you before you create a state version")
    if req.serial < 0:
        raise Invalid("serial must not be negative", pointer="/data/attributes/serial")
    if not MD5_RE.match(req.md5):
        raise Invalid("md5 must be 32 lowercase hex digits", pointer="/data/attributes/md5")
    again = await _same_as_current(session, principal, ws, req)
    if again is not None:
        return again
    await _check_succession(session, ws, req.serial, req.lineage, force=req.force)
    sv = StateVersion(
        id=new_id("sv"),
        workspace_id=ws.id,
        serial=req.serial,
        lineage=req.lineage,
        md5=req.md5,
        status=PENDING,
        created_by_id=principal.user_id,
        run_id=req.run_id,
        created_at=datetime.now(UTC),
    )
    session.add(sv)
    await session.flush()
    if req.json_state_outputs is not None:
        try:
            outputs = orjson.loads(_b64(req.json_state_outputs, "json-state-outputs"))
        except orjson.JSONDecodeError as exc:
            raise Invalid(
                "json-state-outputs is not JSON", pointer="/data/attributes/json-state-outputs"
            ) from exc
        if not isinstance(outputs, dict):
            raise Invalid(
                "json-state-outputs must be an object of outputs",
                pointer="/data/attributes/json-state-outputs",
            )
        await _store_outputs(session, ctx.box, sv, outputs)
        sv.outputs_from_request = True
    if req.json_state is not None:
        await ctx.store.put_bytes(
            keys.state_version_json(ws.id, sv.id), _b64(req.json_state, "json-state")
        )
        sv.json_state_uploaded = True
    if req.state is not None:
        raw = _b64(req.state, "state")
        if hashlib.md5(raw).hexdigest() != req.md5:
            raise Invalid("md5 does not match the state content", pointer="/data/attributes/md5")
        key = keys.state_version(ws.id, sv.id)
        info = await ctx.store.put_bytes(key, raw)
        try:
            await _finalize(session, ctx, sv, ws, info, await summarize(_one_chunk(raw)))
        except Invalid:
            await ctx.store.delete(key)  # the transaction rolls back; leave no orphan
            raise
    return sv


async def _same_as_current(
    session: AsyncSession, principal: Principal, ws: Workspace, req: CreateRequest
) -> StateVersion | None:
    """A run sending again the state version it already created (same serial and md5 as
    the current version, which the run made): the agent retries after a lost answer or a
    server restart, and gets that version back instead of a conflict."""
    if principal.run_id is None or ws.current_state_version_id is None:
        return None
    current = await session.get(StateVersion, ws.current_state_version_id)
    if (
        current is not None
        and current.run_id == principal.run_id
        and current.serial == req.serial
        and current.md5 == req.md5
        and current.status == FINALIZED
    ):
        return current
    return None


async def _check_succession(
    session: AsyncSession, ws: Workspace, serial: int, lineage: str | None, *, force: bool
) -> None:
    if force or ws.current_state_version_id is None:
        return
    # Only the two columns compared: the row's resource summary can be megabytes.
    row = (
        await session.execute(
            select(StateVersion.serial, StateVersion.lineage).where(
                StateVersion.id == ws.current_state_version_id
            )
        )
    ).first()
    if row is None:
        return
    current_serial, current_lineage = row
    if lineage and current_lineage and lineage != current_lineage:
        raise Conflict(
            f"lineage {lineage} does not match the current state's lineage "
            f"{current_lineage}; use force to replace it"
        )
    if serial <= current_serial:
        raise Conflict(
            f"serial {serial} is not greater than the current state's serial "
            f"{current_serial}; use force to replace it"
        )


async def _store_outputs(
    session: AsyncSession, box: SecretBox, sv: StateVersion, outputs: dict[str, Any]
) -> None:
    for name, spec in sorted(outputs.items()):
        if not isinstance(spec, dict) or "value" not in spec:
            raise Invalid(f"output {name!r} has no value")
        value, sensitive = spec["value"], bool(spec.get("sensitive", False))
        output = StateVersionOutput(
            id=new_id("wsout"),
            state_version_id=sv.id,
            name=str(name)[:255],
            sensitive=sensitive,
            type=_json_type(value),
            detailed_type=spec.get("type"),
            value="",
        )
        encoded = orjson.dumps(value)
        output.value = (
            box.encrypt(encoded, context=f"state-version-output:{output.id}")
            if sensitive
            else encoded.decode()
        )
        session.add(output)
    await session.flush()


async def _finalize(
    session: AsyncSession,
    ctx: StateContext,
    sv: StateVersion,
    ws: Workspace,
    info: ObjectInfo,
    summary: StateSummary,
) -> None:
    """Check the content's summary against the declaration, record it and make it current."""
    if summary.serial != sv.serial:
        raise Invalid(f"the state's serial {summary.serial} differs from the declared {sv.serial}")
    if sv.lineage and summary.lineage and sv.lineage != summary.lineage:
        raise Invalid("the state's lineage differs from the declared lineage")
    sv.size = info.size
    sv.lineage = sv.lineage or summary.lineage
    sv.terraform_version = summary.terraform_version
    sv.resources = summary.resources
    sv.modules = summary.modules
    sv.providers = summary.providers
    sv.resource_count = summary.resource_count
    if not sv.outputs_from_request:
        await _store_outputs(session, ctx.box, sv, summary.outputs)
    sv.status = FINALIZED
    sv.finalized_at = datetime.now(UTC)
    await _make_current(session, sv, ws)


async def _make_current(session: AsyncSession, sv: StateVersion, ws: Workspace) -> None:
    # Guarded by the previous value so two finalizations racing cannot both win.
    await session.execute(
        update(Workspace)
        .where(Workspace.id == ws.id)
        .values(
            current_state_version_id=sv.id,
            resource_count=sv.resource_count,
            latest_change_at=datetime.now(UTC),
        )
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    await session.refresh(ws)


def parse_key(key: str) -> tuple[str, str, bool] | None:
    """(workspace id, state version id, is JSON state) for a state object key."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "workspaces" or parts[2] != "state-versions":
        return None
    name, _, ext = parts[3].rpartition(".")
    if ext not in ("tfstate", "json") or not looks_like_id(name, "sv"):
        return None
    return parts[1], name, ext == "json"


async def may_upload(session: AsyncSession, key: str) -> bool:
    """Upload guard: content may only be sent for a version still waiting for it."""
    parsed = parse_key(key)
    if parsed is None:
        return False
    ws_id, sv_id, is_json = parsed
    sv = await session.get(StateVersion, sv_id)
    ws = await session.get(Workspace, ws_id)
    if sv is None or ws is None or sv.workspace_id != ws_id:
        return False
    if is_json:
        return not sv.json_state_uploaded
    return sv.status == PENDING and not await _superseded(session, sv, ws)


async def _superseded(session: AsyncSession, sv: StateVersion, ws: Workspace) -> bool:
    """True when the workspace's current version was created after ``sv``."""
    if ws.current_state_version_id is None:
        return False
    created = (
        await session.execute(
            select(StateVersion.created_at).where(StateVersion.id == ws.current_state_version_id)
        )
    ).scalar_one_or_none()
    return created is not None and created > sv.created_at


async def summarize_upload(ctx: StateContext, key: str) -> StateSummary | Invalid:
    """Read an uploaded state object once, streaming, before any database lock is taken
    (a large state takes seconds to parse; on SQLite a write transaction would stall every
    other writer meanwhile). Returns the problem instead of raising: whether a bad upload
    is refused depends on the version it was sent for."""
    parsed = parse_key(key)
    if parsed is None or parsed[2]:
        return Invalid("not a state file upload")
    stream = await ctx.store.open(key)
    try:
        return await summarize(stream.__aiter__())
    except Invalid as exc:
        return exc
    finally:
        await stream.aclose()


async def content_uploaded(
    session: AsyncSession,
    ctx: StateContext,
    key: str,
    info: ObjectInfo,
    summary: StateSummary | Invalid | None = None,
) -> StateVersion:
    """Finish a version whose content arrived through its signed upload URL. ``summary`` is
    :func:`summarize_upload`'s result for state files (read now when not given)."""
    parsed = parse_key(key)
    if parsed is None:
        raise NotFound("not a state object")
    ws_id, sv_id, is_json = parsed
    sv = await session.get(StateVersion, sv_id, with_for_update=True)
    ws = await session.get(Workspace, ws_id)
    if sv is None or ws is None or sv.workspace_id != ws_id:
        raise NotFound("state version not found")
    if is_json:
        sv.json_state_uploaded = True
        return sv
    if sv.status != PENDING:
        raise Conflict("this state version already has its content")
    if await _superseded(session, sv, ws):
        # A newer version became current while this one waited for its content: accepting
        # it now would roll the workspace's state back behind the caller's back.
        sv.status = DISCARDED
        await ctx.store.delete(key)
        raise Superseded(
            "a newer state version became current while this one waited for its content; "
            "this upload is discarded"
        )
    if info.md5 != sv.md5:
        await ctx.store.delete(key)
        raise Invalid(f"uploaded state has md5 {info.md5}, the state version declared {sv.md5}")
    if summary is None:
        summary = await summarize_upload(ctx, key)
    try:
        if isinstance(summary, Invalid):
            raise summary
        await _finalize(session, ctx, sv, ws, info, summary)
    except Invalid:
        await ctx.store.delete(key)
        raise
    return sv


async def rollback(
    session: AsyncSession,
    principal: Principal,
    ctx: StateContext,
    ws: Workspace,
    org: Organization,
    target_id: str,
) -> StateVersion:
    """Make a copy of an earlier version the current state (a new version, history kept)."""
    authorize(
        principal,
        Action.WS_CREATE_STATE,
        organization_id=org.id,
        workspace_id=ws.id,
        what="workspace",
    )
    if not workspaces.holds_lock(principal, ws):
        raise Conflict("the workspace must be locked by you before rolling back its state")
    target = await session.get(StateVersion, target_id) if looks_like_id(target_id, "sv") else None
    if target is None or target.workspace_id != ws.id or target.status != FINALIZED:
        raise NotFound("state version to roll back to not found in this workspace")
    if target.id == ws.current_state_version_id:
        raise Conflict("that state version is already the current state")
    sv = StateVersion(
        id=new_id("sv"),
        workspace_id=ws.id,
        serial=target.serial,
        lineage=target.lineage,
        md5=target.md5,
        size=target.size,
        status=FINALIZED,
        terraform_version=target.terraform_version,
        resources=target.resources,
        modules=target.modules,
        providers=target.providers,
        resource_count=target.resource_count,
        created_by_id=principal.user_id,
        rolled_back_from_id=target.id,
        created_at=datetime.now(UTC),
        finalized_at=datetime.now(UTC),
    )
    session.add(sv)
    await session.flush()
    source = await ctx.store.open(keys.state_version(ws.id, target.id))
    try:
        await ctx.store.put(keys.state_version(ws.id, sv.id), source.__aiter__())
    finally:
        await source.aclose()
    old = (await outputs_of(session, [target.id]))[target.id]
    await _store_outputs(
        session,
        ctx.box,
        sv,
        {
            o.name: {
                "value": output_value(ctx.box, o, reveal=True),
                "sensitive": o.sensitive,
                "type": o.detailed_type,
            }
            for o in old
        },
    )
    await _make_current(session, sv, ws)
    return sv


# -- reactions to lower domains (wired in terrapod.app) ------------------------------------


def delete_objects_of_deleted_workspaces(store: ObjectStore) -> tuple[Hook, Hook]:
    """Hooks removing a deleted workspace's state objects once the deletion is committed."""

    def forget(session: AsyncSession, workspace_ids: Sequence[str]) -> None:
        async def delete_objects() -> None:
            for workspace_id in workspace_ids:
                await store.delete_prefix(keys.workspace_prefix(workspace_id))

        after_commit(session, delete_objects)

    async def on_workspace(session: AsyncSession, workspace: Workspace) -> None:
        forget(session, [workspace.id])

    async def on_organization(session: AsyncSession, org: Organization) -> None:
        ids = (
            (await session.execute(select(Workspace.id).where(Workspace.organization_id == org.id)))
            .scalars()
            .all()
        )
        forget(session, ids)

    return on_workspace, on_organization
