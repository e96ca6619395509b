"""Variable set rules: sets, their variables, where they apply, and what a run receives.

Reading a set (and its non-sensitive values) needs membership of its organization
(``ORG_READ``); creating, changing and deleting sets, their variables and their assignments
needs ``ORG_MANAGE_VARSETS`` (organization owners, organization tokens, platform admins).
Every function authorizes first and works inside the caller's transaction; every check runs
before anything is written, so a refused request changes nothing.

A set's variables follow the workspace variables' rules (``terrapod.variables.service``: key
syntax, categories, HCL, write-only sensitive values). A sensitive value is stored only as
SecretBox ciphertext bound to the variable's id and is decrypted only by
:func:`values_for_run`. As in HCP Terraform, two global sets may not hold a variable of the
same category and key (422): they would have no order between them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize
from terrapod.access.principal import Principal
from terrapod.crypto import SecretBox
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Conflict, Invalid, NotFound
from terrapod.organizations import service as organizations
from terrapod.organizations.models import Organization
from terrapod.variables import service as variables
from terrapod.variables.models import ENV, TERRAFORM, Variable
from terrapod.variables.service import VariableValue
from terrapod.varsets.models import VariableSet, VariableSetVariable, VariableSetWorkspace
from terrapod.workspaces import service as workspaces
from terrapod.workspaces.models import Workspace

MAX_NAME_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 1024
# Attributes a client may set on a set (domain names), and those that may not be null.
SET_NOT_NULL = ("name", "is_global", "priority")

T = TypeVar("T")


@dataclass(frozen=True)
class VarsetView:
    """A set with what its resource shows: its organization, workspaces and variables."""

    varset: VariableSet
    org: Organization
    workspace_ids: list[str]
    variables: list[VariableSetVariable]


@dataclass(frozen=True)
class Effective:
    """One variable that reaches a workspace's runs, and where it comes from (``varset`` is
    None for a workspace variable)."""

    variable: Variable | VariableSetVariable
    varset: VariableSet | None


def _pointer(attribute: str) -> str:
    return "/data/attributes/" + attribute


def _context(variable_id: str) -> str:
    """The associated data binding a ciphertext to its variable (crypto.py)."""
    return f"varset-variable:{variable_id}"


def _new_version() -> str:
    return secrets.token_hex(16)


def _manage(principal: Principal, org_id: str) -> None:
    authorize(principal, Action.ORG_MANAGE_VARSETS, organization_id=org_id, what="organization")


@contextmanager
def _nested(pointer: str) -> Iterator[None]:
    """Errors about one element of a relationship list point at that element."""
    try:
        yield
    except Invalid as exc:
        inner = (exc.pointer or "").removeprefix("/data")
        raise Invalid(exc.detail, pointer=pointer + inner) from exc


# -- lookups -----------------------------------------------------------------------------


async def _load(session: AsyncSession, varset_id: str) -> tuple[VariableSet, Organization]:
    row = None
    if looks_like_id(varset_id, "varset"):
        row = (
            await session.execute(
                select(VariableSet, Organization)
                .join(Organization, Organization.id == VariableSet.organization_id)
                .where(VariableSet.id == varset_id)
            )
        ).first()
    if row is None:
        raise NotFound("variable set not found")
    return row[0], row[1]


async def get(
    session: AsyncSession, principal: Principal, varset_id: str, action: Action = Action.ORG_READ
) -> tuple[VariableSet, Organization]:
    """The set and its organization, after checking ``action`` (404 for non-members)."""
    varset, org = await _load(session, varset_id)
    try:
        authorize(principal, Action.ORG_READ, organization_id=org.id, what="variable set")
    except NotFound:
        raise NotFound("variable set not found") from None
    if action is not Action.ORG_READ:
        _manage(principal, org.id)
    return varset, org


async def views(
    session: AsyncSession, varsets: Sequence[VariableSet], org: Organization
) -> list[VarsetView]:
    """Views of a page of sets: two queries whatever its size."""
    ids = [v.id for v in varsets]
    assigned: dict[str, list[str]] = {i: [] for i in ids}
    held: dict[str, list[VariableSetVariable]] = {i: [] for i in ids}
    if ids:
        rows = await session.execute(
            select(VariableSetWorkspace.varset_id, VariableSetWorkspace.workspace_id)
            .where(VariableSetWorkspace.varset_id.in_(ids))
            .order_by(VariableSetWorkspace.workspace_id)
        )
        for varset_id, workspace_id in rows:
            assigned[varset_id].append(workspace_id)
        for variable in (
            await session.execute(
                select(VariableSetVariable)
                .where(VariableSetVariable.varset_id.in_(ids))
                .order_by(VariableSetVariable.category.desc(), VariableSetVariable.key)
            )
        ).scalars():
            held[variable.varset_id].append(variable)
    return [VarsetView(v, org, assigned[v.id], held[v.id]) for v in varsets]


async def view(session: AsyncSession, varset: VariableSet, org: Organization) -> VarsetView:
    return (await views(session, [varset], org))[0]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _page(
    session: AsyncSession, where: Any, *, offset: int, limit: int
) -> tuple[Sequence[VariableSet], int]:
    total = (
        await session.execute(select(func.count()).select_from(VariableSet).where(where))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(VariableSet)
                .where(where)
                .order_by(VariableSet.name, VariableSet.id)
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, total


async def list_in_org(
    session: AsyncSession,
    principal: Principal,
    org_name: str,
    *,
    query: str | None,
    offset: int,
    limit: int,
) -> tuple[list[VarsetView], int]:
    """One page of the organization's sets by name; ``query`` matches part of the name."""
    org = await organizations.get_by_name(session, principal, org_name)
    where: Any = VariableSet.organization_id == org.id
    if query:
        pattern = f"%{_like_escape(query.lower())}%"
        where = where & func.lower(VariableSet.name).like(pattern, escape="\\")
    rows, total = await _page(session, where, offset=offset, limit=limit)
    return await views(session, rows, org), total


def _applying_to(workspace: Workspace) -> Any:
    """The sets that apply to ``workspace``: its organization's global ones and its own."""
    assigned = (
        select(VariableSetWorkspace.varset_id)
        .where(
            VariableSetWorkspace.varset_id == VariableSet.id,
            VariableSetWorkspace.workspace_id == workspace.id,
        )
        .exists()
    )
    return (VariableSet.organization_id == workspace.organization_id) & or_(
        VariableSet.is_global.is_(True), assigned
    )


async def list_for_workspace(
    session: AsyncSession,
    principal: Principal,
    workspace_id: str,
    *,
    query: str | None,
    offset: int,
    limit: int,
) -> tuple[list[VarsetView], int]:
    """One page of the sets applied to the workspace, global ones included."""
    workspace, org = await workspaces.get(session, principal, workspace_id)
    where = _applying_to(workspace)
    if query:
        pattern = f"%{_like_escape(query.lower())}%"
        where = where & func.lower(VariableSet.name).like(pattern, escape="\\")
    rows, total = await _page(session, where, offset=offset, limit=limit)
    return await views(session, rows, org), total


# -- sets ----------------------------------------------------------------------------------


def _validate_set(values: dict[str, Any]) -> None:
    for name in SET_NOT_NULL:
        if name in values and values[name] is None:
            attribute = "global" if name == "is_global" else name
            raise Invalid(f"{attribute} cannot be null", pointer=_pointer(attribute))
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name.strip():
            raise Invalid("name is required", pointer=_pointer("name"))
        if len(name) > MAX_NAME_LENGTH:
            raise Invalid(
                f"name must be at most {MAX_NAME_LENGTH} characters", pointer=_pointer("name")
            )
    description = values.get("description")
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        raise Invalid(
            f"description must be at most {MAX_DESCRIPTION_LENGTH} characters",
            pointer=_pointer("description"),
        )


async def _ensure_name_free(
    session: AsyncSession, org_id: str, name: str, *, except_id: str | None = None
) -> None:
    query = (
        select(func.count())
        .select_from(VariableSet)
        .where(
            VariableSet.organization_id == org_id,
            func.lower(VariableSet.name) == name.lower(),
        )
    )
    if except_id is not None:
        query = query.where(VariableSet.id != except_id)
    if (await session.execute(query)).scalar_one():
        raise _name_taken(name)


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"a variable set named {name!r} already exists in this organization",
        pointer=_pointer("name"),
    )


async def _flush_set(session: AsyncSession, name: str) -> None:
    """Flush; the unique constraint closes the race between two creates of one name."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _name_taken(name) from exc


async def _workspaces_in(session: AsyncSession, org: Organization, ids: Sequence[str]) -> list[str]:
    """``ids`` without repeats, each a workspace of ``org`` (404 naming the first that is
    not)."""
    wanted = list(dict.fromkeys(ids))
    missing = await workspaces.not_in_organization(session, org.id, wanted)
    if missing:
        raise NotFound(
            f"workspace {missing[0]} not found in organization {org.name}",
            pointer=f"/data/relationships/workspaces/data/{wanted.index(missing[0])}",
        )
    return wanted


async def create(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    org_name: str,
    values: dict[str, Any],
    *,
    workspace_ids: Sequence[str] = (),
    new_variables: Sequence[dict[str, Any]] = (),
) -> VarsetView:
    """Create a set (``name`` required), with the workspaces it applies to and its first
    variables, as TFE's create accepts them in ``relationships``."""
    org = await organizations.get_by_name(session, principal, org_name)
    _manage(principal, org.id)
    if "name" not in values:
        raise Invalid("name is required", pointer=_pointer("name"))
    _validate_set(values)
    is_global = bool(values.get("is_global", False))
    if is_global and workspace_ids:
        raise _global_with_workspaces("/data/relationships/workspaces")
    await _ensure_name_free(session, org.id, values["name"])
    assigned = await _workspaces_in(session, org, workspace_ids)
    varset = VariableSet(
        id=new_id("varset"),
        organization_id=org.id,
        name=values["name"],
        description=values.get("description") or "",
        is_global=is_global,
        priority=bool(values.get("priority", False)),
    )
    session.add(varset)
    await _flush_set(session, varset.name)
    await _add_variables(session, box, varset, new_variables)
    if assigned:
        await _assign(session, varset.id, assigned)
    return await view(session, varset, org)


def _global_with_workspaces(pointer: str) -> Invalid:
    return Invalid(
        "a global variable set applies to every workspace of the organization; set global "
        "to false to apply it to chosen workspaces",
        pointer=pointer,
    )


async def update(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    varset_id: str,
    values: dict[str, Any],
    *,
    workspace_ids: Sequence[str] | None = None,
    new_variables: Sequence[dict[str, Any]] = (),
) -> VarsetView:
    """Change the attributes sent. ``workspace_ids`` (when given) replaces the set's
    workspaces, an empty list clearing them; ``new_variables`` are added. Making a set
    global clears its workspaces: it then applies to all of them."""
    varset, org = await get(session, principal, varset_id, Action.ORG_MANAGE_VARSETS)
    _validate_set(values)
    is_global = values.get("is_global", varset.is_global)
    if is_global and workspace_ids:
        raise _global_with_workspaces("/data/relationships/workspaces")
    name = values.get("name", varset.name)
    if name != varset.name:
        await _ensure_name_free(session, org.id, name, except_id=varset.id)
    assigned = None if workspace_ids is None else await _workspaces_in(session, org, workspace_ids)
    if is_global and not varset.is_global:
        held = (
            await session.execute(
                select(VariableSetVariable).where(VariableSetVariable.varset_id == varset.id)
            )
        ).scalars()
        for variable in held:
            await _ensure_no_global_conflict(session, varset, variable.category, variable.key)
    varset.name = name
    if "description" in values:
        varset.description = values["description"] or ""
    varset.is_global = is_global
    if "priority" in values:
        varset.priority = values["priority"]
    await _flush_set(session, name)
    if is_global or assigned is not None:
        await session.execute(
            delete(VariableSetWorkspace).where(VariableSetWorkspace.varset_id == varset.id)
        )
    if assigned:
        await _assign(session, varset.id, assigned)
    await _add_variables(session, box, varset, new_variables)
    return await view(session, varset, org)


async def delete_set(session: AsyncSession, principal: Principal, varset_id: str) -> None:
    """Delete the set; its variables and assignments go with it (ON DELETE CASCADE)."""
    varset, _ = await get(session, principal, varset_id, Action.ORG_MANAGE_VARSETS)
    await session.execute(delete(VariableSet).where(VariableSet.id == varset.id))


async def change_workspaces(
    session: AsyncSession,
    principal: Principal,
    varset_id: str,
    workspace_ids: Sequence[str],
    *,
    add: bool,
) -> None:
    """Apply the set to the workspaces (``add``; already applied ones are left alone) or
    remove it from them. A global set has no list of workspaces to change (422)."""
    varset, org = await get(session, principal, varset_id, Action.ORG_MANAGE_VARSETS)
    if varset.is_global:
        raise _global_with_workspaces("/data")
    ids = await _workspaces_in(session, org, workspace_ids)
    if not ids:
        return
    if not add:
        await session.execute(
            delete(VariableSetWorkspace).where(
                VariableSetWorkspace.varset_id == varset.id,
                VariableSetWorkspace.workspace_id.in_(ids),
            )
        )
        return
    await _assign(session, varset.id, ids)


async def _assign(session: AsyncSession, varset_id: str, workspace_ids: Sequence[str]) -> None:
    """Insert the assignments that do not exist yet, in one statement that a concurrent
    insert of the same pair cannot make fail (ON CONFLICT DO NOTHING, on both databases)."""
    if not workspace_ids:
        return
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(VariableSetWorkspace)
    await session.execute(
        statement.on_conflict_do_nothing(),
        [{"varset_id": varset_id, "workspace_id": i} for i in workspace_ids],
    )


# -- variables of a set --------------------------------------------------------------------


def _seal(box: SecretBox, variable: VariableSetVariable, value: str) -> None:
    variables.seal(box, variable, value, _context(variable.id))


def _open(box: SecretBox, variable: VariableSetVariable) -> str:
    return variables.unseal(box, variable, _context(variable.id), " of a variable set")


def _key_taken(category: str, key: str) -> Invalid:
    return Invalid(
        f"Key has already been taken: this variable set already has a {category} variable "
        f"named {key!r}",
        pointer=_pointer("key"),
    )


async def _ensure_key_free(
    session: AsyncSession,
    varset: VariableSet,
    category: str,
    key: str,
    *,
    except_id: str | None = None,
) -> None:
    query = (
        select(func.count())
        .select_from(VariableSetVariable)
        .where(
            VariableSetVariable.varset_id == varset.id,
            VariableSetVariable.category == category,
            VariableSetVariable.key == key,
        )
    )
    if except_id is not None:
        query = query.where(VariableSetVariable.id != except_id)
    if (await session.execute(query)).scalar_one():
        raise _key_taken(category, key)
    if varset.is_global:
        await _ensure_no_global_conflict(session, varset, category, key)


async def _ensure_no_global_conflict(
    session: AsyncSession, varset: VariableSet, category: str, key: str
) -> None:
    """HCP Terraform: different global sets may not hold a variable of the same category and
    key (nothing would order them)."""
    other = (
        await session.execute(
            select(VariableSet.name)
            .join(VariableSetVariable, VariableSetVariable.varset_id == VariableSet.id)
            .where(
                VariableSet.organization_id == varset.organization_id,
                VariableSet.is_global.is_(True),
                VariableSet.id != varset.id,
                VariableSetVariable.category == category,
                VariableSetVariable.key == key,
            )
            .limit(1)
        )
    ).scalar_one_or_none()
    if other is not None:
        raise Invalid(
            f"the global variable set {other!r} already has a {category} variable named "
            f"{key!r}; global variable sets cannot hold conflicting variables",
            pointer=_pointer("key"),
        )


async def _flush_variable(session: AsyncSession, category: str, key: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _key_taken(category, key) from exc


async def _new_variable(
    session: AsyncSession, box: SecretBox, varset: VariableSet, values: dict[str, Any]
) -> VariableSetVariable:
    variables.validate_values(values)
    category = values.get("category")
    if category is None:
        raise Invalid(f"category is required: {TERRAFORM} or {ENV}", pointer=_pointer("category"))
    key = variables.validate_key(values.get("key"), category)
    hcl = bool(values.get("hcl", False))
    variables.check_combination(category, hcl, values)
    await _ensure_key_free(session, varset, category, key)
    variable = VariableSetVariable(
        id=new_id("var"),
        varset_id=varset.id,
        key=key,
        category=category,
        hcl=hcl,
        sensitive=bool(values.get("sensitive", False)),
        description=values.get("description"),
        version_id=_new_version(),
    )
    _seal(box, variable, values.get("value") or "")
    session.add(variable)
    await _flush_variable(session, category, key)
    return variable


async def _add_variables(
    session: AsyncSession,
    box: SecretBox,
    varset: VariableSet,
    new_variables: Sequence[dict[str, Any]],
) -> None:
    for index, values in enumerate(new_variables):
        with _nested(f"/data/relationships/vars/data/{index}"):
            await _new_variable(session, box, varset, values)


async def list_variables(
    session: AsyncSession, principal: Principal, varset_id: str, *, offset: int, limit: int
) -> tuple[Sequence[VariableSetVariable], int]:
    """One page of the set's variables, terraform before env, by key."""
    varset, _ = await get(session, principal, varset_id)
    where = VariableSetVariable.varset_id == varset.id
    total = (
        await session.execute(select(func.count()).select_from(VariableSetVariable).where(where))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(VariableSetVariable)
                .where(where)
                .order_by(VariableSetVariable.category.desc(), VariableSetVariable.key)
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, total


async def _variable_of(
    session: AsyncSession, varset: VariableSet, variable_id: str
) -> VariableSetVariable:
    variable = None
    if looks_like_id(variable_id, "var"):
        variable = (
            await session.execute(
                select(VariableSetVariable).where(
                    VariableSetVariable.id == variable_id,
                    VariableSetVariable.varset_id == varset.id,
                )
            )
        ).scalar_one_or_none()
    if variable is None:
        raise NotFound("variable not found in this variable set")
    return variable


async def get_variable(
    session: AsyncSession, principal: Principal, varset_id: str, variable_id: str
) -> VariableSetVariable:
    varset, _ = await get(session, principal, varset_id)
    return await _variable_of(session, varset, variable_id)


async def create_variable(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    varset_id: str,
    values: dict[str, Any],
) -> VariableSetVariable:
    """Add a variable (``key`` and ``category`` required; ``value`` absent means "")."""
    varset, _ = await get(session, principal, varset_id, Action.ORG_MANAGE_VARSETS)
    return await _new_variable(session, box, varset, values)


async def update_variable(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    varset_id: str,
    variable_id: str,
    values: dict[str, Any],
) -> VariableSetVariable:
    """Change the attributes sent, with the workspace variables' rules: a sensitive variable
    keeps its value when none is sent and cannot become non-sensitive; ``version-id`` changes
    when what a run receives changes."""
    varset, _ = await get(session, principal, varset_id, Action.ORG_MANAGE_VARSETS)
    variable = await _variable_of(session, varset, variable_id)

    async def key_free(category: str, key: str) -> None:
        await _ensure_key_free(session, varset, category, key, except_id=variable.id)

    await variables.apply_update(
        box,
        variable,
        values,
        context=_context(variable.id),
        ensure_key_free=key_free,
        flush=lambda category, key: _flush_variable(session, category, key),
        whose=" of a variable set",
    )
    return variable


async def delete_variable(
    session: AsyncSession, principal: Principal, varset_id: str, variable_id: str
) -> None:
    varset, _ = await get(session, principal, varset_id, Action.ORG_MANAGE_VARSETS)
    variable = await _variable_of(session, varset, variable_id)
    await session.delete(variable)
    await session.flush()


# -- what reaches a workspace's runs ---------------------------------------------------------


# Levels of precedence (higher wins); see merge().
_GLOBAL, _ASSIGNED, _WORKSPACE, _PRIORITY_ASSIGNED, _PRIORITY_GLOBAL = range(1, 6)


def _level(varset: VariableSet) -> int:
    if varset.priority:
        return _PRIORITY_GLOBAL if varset.is_global else _PRIORITY_ASSIGNED
    return _GLOBAL if varset.is_global else _ASSIGNED


def merge(
    workspace_variables: Sequence[T],
    sets: Sequence[tuple[VariableSet, Sequence[T]]],
    key: Callable[[T], tuple[str, str]],
) -> list[tuple[T, VariableSet | None]]:
    """The variables that win, one per (category, key), each with the set it came from
    (None: the workspace's own), terraform before env and by key.

    Precedence, highest first (HCP Terraform, "Variables" > "Precedence" and "Precedence
    with priority variable sets",
    developer.hashicorp.com/terraform/cloud-docs/workspaces/variables#precedence; Terrapod
    has no projects, so only its organization-owned global and workspace-scoped levels
    exist):

    1. priority global sets;
    2. priority sets applied to the workspace;
    3. run variables (``-var``, the run's ``variables`` attribute): not in this list. The
       runner writes them to ``~terrapod_2_run.auto.tfvars`` and the winners from
       priority sets (``enforced``) to ``~terrapod_3_enforced.auto.tfvars``, which
       Terraform reads after it, so a priority set cannot be overridden by one run, which
       is what priority sets are for;
    4. the workspace's own variables;
    5. (non-priority) sets applied to the workspace;
    6. (non-priority) global sets.

    Between sets of the same level, the set whose name comes first in Unicode code point
    order wins, whichever was edited last (HCP: "lexical precedence"). Python compares
    strings by code point; SQL collations may not, so the order is made here. Two global
    sets cannot conflict: writes that would make them are refused.
    """
    ranked = sorted(sets, key=lambda pair: (pair[0].name, pair[0].id))
    layers: list[tuple[tuple[int, int], VariableSet | None, Sequence[T]]] = [
        ((_level(varset), -position), varset, held)
        for position, (varset, held) in enumerate(ranked)
    ]
    layers.append(((_WORKSPACE, 0), None, workspace_variables))
    winners: dict[tuple[str, str], tuple[T, VariableSet | None]] = {}
    # Lowest first, so each later layer overwrites: within a level the first name goes last.
    for _, varset, held in sorted(layers, key=lambda layer: layer[0]):
        for variable in held:
            winners[key(variable)] = (variable, varset)
    return sorted(
        winners.values(), key=lambda entry: (key(entry[0])[0] != TERRAFORM, key(entry[0])[1])
    )


async def _sets_with_variables(
    session: AsyncSession, workspace: Workspace
) -> list[tuple[VariableSet, list[VariableSetVariable]]]:
    """Every set applying to the workspace with its variables: two queries."""
    sets = (await session.execute(select(VariableSet).where(_applying_to(workspace)))).scalars()
    held: dict[str, tuple[VariableSet, list[VariableSetVariable]]] = {s.id: (s, []) for s in sets}
    if held:
        rows = (
            await session.execute(
                select(VariableSetVariable).where(VariableSetVariable.varset_id.in_(list(held)))
            )
        ).scalars()
        for variable in rows:
            held[variable.varset_id][1].append(variable)
    return list(held.values())


def _category_key(variable: Variable | VariableSetVariable | VariableValue) -> tuple[str, str]:
    return variable.category, variable.key


async def effective_for_workspace(
    session: AsyncSession, principal: Principal, workspace_id: str
) -> tuple[Workspace, list[Effective]]:
    """The variables a run in the workspace receives (before its own run variables), each
    with the set it came from: what ``/workspaces/{id}/all-vars`` lists."""
    workspace, org = await workspaces.get(session, principal, workspace_id)
    own = await variables.list_for_workspace(session, principal, workspace, org)
    sets = await _sets_with_variables(session, workspace)
    rows: list[Variable | VariableSetVariable] = list(own)
    winners = merge(rows, sets, _category_key)
    return workspace, [Effective(v, s) for v, s in winners]


async def values_for_run(
    session: AsyncSession, box: SecretBox, workspace_id: str
) -> list[VariableValue]:
    """Every variable a run in the workspace receives, decrypted, one per category and key:
    the workspace's own (``terrapod.variables.service.values_for_run``) merged with the
    variable sets that apply to it, by the precedence :func:`merge` documents. The run's
    own variables are applied on top by the runner.

    No authorization: only the run machinery calls this, for a run it is executing in that
    workspace, and it must never hand the result to an API caller. Raises
    UndecryptableVariable (naming the variable, never its value) when a sensitive value
    was sealed with another secret key.
    """
    own = await variables.values_for_run(session, box, workspace_id)
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound("workspace not found")
    sets = [
        (
            varset,
            [
                VariableValue(
                    key=v.key,
                    value=_open(box, v),
                    category=v.category,
                    hcl=v.hcl,
                    sensitive=v.sensitive,
                )
                for v in held
            ],
        )
        for varset, held in await _sets_with_variables(session, workspace)
    ]
    return [
        replace(value, enforced=True) if varset is not None and varset.priority else value
        for value, varset in merge(own, sets, _category_key)
    ]
