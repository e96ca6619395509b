"""Workspace variable rules: keys, categories, HCL, and sensitive values encrypted at rest.

Reading needs read access to the workspace (``WS_READ``); creating, changing and deleting
need write access (``WS_UPDATE_VARIABLES``). Every function authorizes first and then works
inside the caller's transaction; every check runs before anything is written, so a refused
request changes nothing.

A sensitive value is write-only: it is stored only as SecretBox ciphertext bound to the
variable's id (``value`` column None), is never returned by the API, and a sensitive variable
cannot become non-sensitive again (as in TFE). Only :func:`values_for_run` decrypts, for the
run machinery. No message raised here contains a value.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize
from terrapod.access.principal import Principal
from terrapod.crypto import SecretBox
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Invalid, NotFound, Unavailable
from terrapod.organizations.models import Organization
from terrapod.variables.models import CATEGORIES, ENV, TERRAFORM, Variable
from terrapod.workspaces.models import Workspace

# The width of the key column.
MAX_KEY_LENGTH = 128
# The width of the description column.
MAX_DESCRIPTION_LENGTH = 512
# A Terraform identifier (HCL): letters, digits, '_' and '-', not starting with a digit or
# '-'. \w is Unicode-aware, as HCL identifiers are.
TERRAFORM_KEY_RE = re.compile(r"^[^\W\d][\w-]*$")
# An environment variable name the runner can pass through execve and shells can at least
# print: no '=', no whitespace, no control characters. Anything else is allowed, because real
# names need it (TF_TOKEN_localhost:18443 has a colon, TF_TOKEN_app.example.com dots).
ENV_KEY_RE = re.compile(r"^[^=\s\x00-\x1f\x7f]+$")

# Attributes a client may set (domain names), and those that may not be null.
SETTABLE = ("key", "value", "description", "category", "hcl", "sensitive")
NOT_NULL = ("key", "category", "hcl", "sensitive")


class UndecryptableVariable(Unavailable):
    """A sensitive value cannot be decrypted: the server's secret key changed since it was
    stored. Names the variable, never its value."""


@dataclass(frozen=True)
class VariableValue:
    """One variable as a run receives it, with its value decrypted.

    ``category`` is ``terraform`` (an input variable; ``hcl`` says whether ``value`` is an
    HCL expression rather than a string) or ``env`` (an environment variable). ``repr()``
    masks sensitive values, so logging one of these never writes a secret. ``enforced``
    marks a value from a priority variable set, which wins even over the run's own
    variables (terrapod.varsets.service.merge).
    """

    key: str
    value: str
    category: str
    hcl: bool
    sensitive: bool
    enforced: bool = False

    def __repr__(self) -> str:
        shown = "<sensitive>" if self.sensitive else repr(self.value)
        return (
            f"VariableValue(key={self.key!r}, value={shown}, category={self.category!r}, "
            f"hcl={self.hcl!r}, sensitive={self.sensitive!r}, enforced={self.enforced!r})"
        )


def _pointer(attribute: str) -> str:
    return "/data/attributes/" + attribute


def _context(variable_id: str) -> str:
    """The associated data binding a ciphertext to its variable (crypto.py)."""
    return f"variable:{variable_id}"


def _new_version() -> str:
    return secrets.token_hex(16)


def _authorize(
    principal: Principal, action: Action, workspace: Workspace, org: Organization
) -> None:
    """``action`` on the variables' workspace (its creator counts as its administrator)."""
    authorize(
        principal,
        action,
        organization_id=org.id,
        workspace_id=workspace.id,
        workspace_creator=workspace.created_by_id,
        what="workspace",
    )


# -- validation --------------------------------------------------------------------------


def validate_key(key: Any, category: str) -> str:
    """The key, if it is valid for ``category``; Invalid naming the rule otherwise."""
    if not isinstance(key, str) or not key:
        raise Invalid("key is required", pointer=_pointer("key"))
    if len(key) > MAX_KEY_LENGTH:
        raise Invalid(f"key must be at most {MAX_KEY_LENGTH} characters", pointer=_pointer("key"))
    if category == TERRAFORM and not TERRAFORM_KEY_RE.match(key):
        raise Invalid(
            f"key {key!r} is not a valid Terraform variable name: use letters, digits, '_' "
            "and '-', starting with a letter or '_'",
            pointer=_pointer("key"),
        )
    if category == ENV and not ENV_KEY_RE.match(key):
        raise Invalid(
            f"key {key!r} is not a valid environment variable name: it must not contain "
            "'=', whitespace or control characters",
            pointer=_pointer("key"),
        )
    return key


def validate_values(values: dict[str, Any]) -> None:
    """Checks of single attributes, before they are merged with the variable's others
    (also used for the variables of variable sets)."""
    for name in NOT_NULL:
        if name in values and values[name] is None:
            raise Invalid(f"{name} cannot be null", pointer=_pointer(name))
    category = values.get("category")
    if category is not None and category not in CATEGORIES:
        raise Invalid(
            f"category must be {TERRAFORM} or {ENV}, got {category!r}",
            pointer=_pointer("category"),
        )
    description = values.get("description")
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        raise Invalid(
            f"description must be at most {MAX_DESCRIPTION_LENGTH} characters",
            pointer=_pointer("description"),
        )


def check_combination(category: str, hcl: bool, values: dict[str, Any]) -> None:
    """Refuse an environment variable marked HCL (blaming whichever attribute was sent)."""
    if category == ENV and hcl:
        # Point at whichever of the two the client sent (hcl first: the usual mistake).
        blame = "hcl" if "hcl" in values else "category"
        raise Invalid(
            "environment variables cannot be HCL: set hcl to false or use category terraform",
            pointer=_pointer(blame),
        )


async def _ensure_key_free(
    session: AsyncSession,
    workspace_id: str,
    category: str,
    key: str,
    *,
    except_id: str | None = None,
) -> None:
    query = (
        select(func.count())
        .select_from(Variable)
        .where(
            Variable.workspace_id == workspace_id,
            Variable.category == category,
            Variable.key == key,
        )
    )
    if except_id is not None:
        query = query.where(Variable.id != except_id)
    if (await session.execute(query)).scalar_one():
        raise _taken(category, key)


def _taken(category: str, key: str) -> Invalid:
    # TFE's own wording first, so scripts matching it keep working.
    return Invalid(
        f"Key has already been taken: this workspace already has a {category} variable "
        f"named {key!r}",
        pointer=_pointer("key"),
    )


async def _flush(session: AsyncSession, category: str, key: str) -> None:
    """Flush; the unique constraint closes the race between two creates of the same key."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _taken(category, key) from exc


class Sealable(Protocol):
    """A stored variable whose value may be sealed: a workspace's or a variable set's."""

    id: str
    key: str
    sensitive: bool
    value: str | None
    value_encrypted: str | None


def seal(box: SecretBox, variable: Sealable, value: str, context: str) -> None:
    """Store ``value`` as the variable's value, encrypted (bound to ``context``) when it is
    sensitive."""
    if variable.sensitive:
        variable.value = None
        variable.value_encrypted = box.encrypt(value.encode(), context=context)
    else:
        variable.value = value
        variable.value_encrypted = None


def unseal(box: SecretBox, variable: Sealable, context: str, whose: str = "") -> str:
    """The variable's plain value (decrypted when sensitive). ``whose`` names its owner in
    the error (" of a variable set")."""
    if not variable.sensitive:
        return variable.value or ""
    if variable.value_encrypted is None:
        return ""
    try:
        return box.decrypt(variable.value_encrypted, context=context).decode()
    except (InvalidTag, ValueError) as exc:
        raise UndecryptableVariable(
            f"the sensitive variable {variable.key!r} ({variable.id}){whose} cannot be "
            "decrypted: the server's secret key changed since it was stored (restore the "
            "previous TERRAPOD_SECRET_KEY or <data_dir>/secret.key, or set the variable again)"
        ) from exc


def _seal(box: SecretBox, variable: Variable, value: str) -> None:
    seal(box, variable, value, _context(variable.id))


def _open(box: SecretBox, variable: Variable) -> str:
    return unseal(box, variable, _context(variable.id))


# -- reads -------------------------------------------------------------------------------


async def list_for_workspace(
    session: AsyncSession, principal: Principal, workspace: Workspace, org: Organization
) -> Sequence[Variable]:
    """Every variable of the workspace, terraform before env, by key.

    Not paginated: TFE returns a workspace's variables in one response and its clients
    (pytfe, go-tfe) read exactly one.
    """
    _authorize(principal, Action.WS_READ, workspace, org)
    rows = await session.execute(
        select(Variable)
        .where(Variable.workspace_id == workspace.id)
        .order_by(Variable.category.desc(), Variable.key)
    )
    return rows.scalars().all()


async def get(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    variable_id: str,
) -> Variable:
    """The workspace's variable ``variable_id``; NotFound when it belongs to another one."""
    _authorize(principal, Action.WS_READ, workspace, org)
    variable = None
    if looks_like_id(variable_id, "var"):
        variable = (
            await session.execute(
                select(Variable).where(
                    Variable.id == variable_id, Variable.workspace_id == workspace.id
                )
            )
        ).scalar_one_or_none()
    if variable is None:
        raise NotFound("variable not found")
    return variable


async def get_by_id(
    session: AsyncSession, principal: Principal, variable_id: str
) -> tuple[Variable, Workspace, Organization]:
    """A variable found by its id alone (the deprecated ``/vars/{id}`` routes), with its
    workspace and organization; NotFound when the caller may not read that workspace."""
    row = None
    if looks_like_id(variable_id, "var"):
        row = (
            await session.execute(
                select(Variable, Workspace, Organization)
                .join(Workspace, Workspace.id == Variable.workspace_id)
                .join(Organization, Organization.id == Workspace.organization_id)
                .where(Variable.id == variable_id)
            )
        ).first()
    if row is None:
        raise NotFound("variable not found")
    variable, workspace, org = row
    try:
        _authorize(principal, Action.WS_READ, workspace, org)
    except NotFound:
        raise NotFound("variable not found") from None
    return variable, workspace, org


# -- writes ------------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    workspace: Workspace,
    org: Organization,
    values: dict[str, Any],
) -> Variable:
    """Create a variable from the attributes the client sent (domain names; ``value`` None
    or absent means the empty string). ``key`` and ``category`` are required."""
    _authorize(principal, Action.WS_UPDATE_VARIABLES, workspace, org)
    validate_values(values)
    category = values.get("category")
    if category is None:
        raise Invalid(f"category is required: {TERRAFORM} or {ENV}", pointer=_pointer("category"))
    key = validate_key(values.get("key"), category)
    hcl = bool(values.get("hcl", False))
    check_combination(category, hcl, values)
    await _ensure_key_free(session, workspace.id, category, key)
    variable = Variable(
        id=new_id("var"),
        workspace_id=workspace.id,
        key=key,
        category=category,
        hcl=hcl,
        sensitive=bool(values.get("sensitive", False)),
        description=values.get("description"),
        version_id=_new_version(),
    )
    _seal(box, variable, values.get("value") or "")
    session.add(variable)
    await _flush(session, category, key)
    return variable


async def update(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    workspace: Workspace,
    org: Organization,
    variable: Variable,
    values: dict[str, Any],
) -> Variable:
    """Change the attributes the client sent (see :func:`apply_update`)."""
    _authorize(principal, Action.WS_UPDATE_VARIABLES, workspace, org)

    async def key_free(category: str, key: str) -> None:
        await _ensure_key_free(session, workspace.id, category, key, except_id=variable.id)

    await apply_update(
        box,
        variable,
        values,
        context=_context(variable.id),
        ensure_key_free=key_free,
        flush=lambda category, key: _flush(session, category, key),
    )
    return variable


class Updatable(Sealable, Protocol):
    category: str
    hcl: bool
    description: str | None
    version_id: str


async def apply_update(
    box: SecretBox,
    variable: Updatable,
    values: dict[str, Any],
    *,
    context: str,
    ensure_key_free: Callable[[str, str], Awaitable[None]],
    flush: Callable[[str, str], Awaitable[None]],
    whose: str = "",
) -> None:
    """The update rules shared by workspace variables and variable set variables.

    A sensitive variable updated without a value (absent or null) keeps its value, and it
    cannot be made non-sensitive. ``version-id`` changes whenever what a run receives
    changes: the key, the value, the category or hcl. ``ensure_key_free(category, key)``
    refuses a key its owner already has; ``flush(category, key)`` writes the change."""
    validate_values(values)
    if variable.sensitive and values.get("sensitive") is False:
        raise Invalid(
            "a sensitive variable cannot be made non-sensitive; delete it and create it again",
            pointer=_pointer("sensitive"),
        )
    category = values.get("category", variable.category)
    key = variable.key
    if "key" in values or "category" in values:
        key = validate_key(values.get("key", variable.key), category)
    hcl = values.get("hcl", variable.hcl)
    check_combination(category, hcl, values)
    if (key, category) != (variable.key, variable.category):
        await ensure_key_free(category, key)

    new_value = values.get("value")
    changed = (key, category, hcl) != (variable.key, variable.category, variable.hcl)
    if new_value is not None:
        try:
            changed = changed or unseal(box, variable, context, whose) != new_value
        except UndecryptableVariable:
            changed = True  # the new value replaces one nobody can read any more
    else:
        new_value = None if variable.sensitive else variable.value or ""
    becomes_sensitive = values.get("sensitive") is True and not variable.sensitive

    variable.key, variable.category, variable.hcl = key, category, hcl
    if "description" in values:
        variable.description = values["description"]
    if becomes_sensitive:
        variable.sensitive = True
    if new_value is not None and (becomes_sensitive or values.get("value") is not None):
        # Re-sealed when the value changes or moves from plain text to ciphertext.
        seal(box, variable, new_value, context)
    if changed:
        variable.version_id = _new_version()
    await flush(category, key)


async def delete(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    variable: Variable,
) -> None:
    _authorize(principal, Action.WS_UPDATE_VARIABLES, workspace, org)
    await session.delete(variable)
    await session.flush()


# -- for the run machinery ---------------------------------------------------------------


async def values_for_run(
    session: AsyncSession, secret_box: SecretBox, workspace_id: str
) -> list[VariableValue]:
    """Every variable of the workspace with its value decrypted, for a run to use.

    No authorization: the run machinery calls this for a run it is executing in that
    workspace, never on behalf of an API caller, and must never hand the result to one.
    Sensitive values stay out of logs (``VariableValue`` masks them in ``repr``); where they
    go next (a tfvars file, the engine's environment) is the runner's to protect.

    Raises UndecryptableVariable when a sensitive value was encrypted with another secret
    key; the run should fail with that message rather than run without the variable.
    Workspace variables only: run variables, which take precedence, are the caller's to
    apply; terrapod.varsets.service.values_for_run merges in the variable sets.
    """
    rows = (
        await session.execute(
            select(Variable)
            .where(Variable.workspace_id == workspace_id)
            .order_by(Variable.category.desc(), Variable.key)
        )
    ).scalars()
    return [
        VariableValue(
            key=v.key,
            value=_open(secret_box, v),
            category=v.category,
            hcl=v.hcl,
            sensitive=v.sensitive,
        )
        for v in rows
    ]
