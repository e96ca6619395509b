"""What the runner is given, what it may call, and what it returns.

The runner executes one job — the plan or the apply phase of a run — and knows nothing of the
database or HTTP: everything it needs arrives in a :class:`JobSpec`, everything it produces
goes out through the caller's :class:`JobIO`, and the caller steers it with a
:class:`JobControl`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol


@dataclass(frozen=True)
class Variable:
    """A workspace variable, already decrypted.

    ``terraform`` ones become input variables (``hcl`` values are written as HCL, the others
    as strings); ``env`` ones become environment variables of the engine. ``sensitive``
    values are masked wherever they would appear in the log. ``enforced`` ones (from a
    priority variable set) win even over the run's own variables.
    """

    key: str
    value: str
    category: Literal["terraform", "env"]
    hcl: bool
    sensitive: bool
    enforced: bool = False


@dataclass(frozen=True)
class JobSpec:
    """One phase of one run, as the engine should execute it."""

    job_id: str
    run_id: str
    phase: Literal["plan", "apply"]
    organization_name: str
    workspace_name: str
    terraform_version: str
    """The workspace's setting: ``latest``, an exact version or a constraint (``~> 1.15``)."""
    working_directory: str | None
    """The directory inside the configuration that holds the root module."""
    is_destroy: bool = False
    refresh: bool = True
    refresh_only: bool = False
    target_addrs: tuple[str, ...] = ()
    replace_addrs: tuple[str, ...] = ()
    allow_config_generation: bool = False
    debugging_mode: bool = False
    plan_only: bool = False
    """A speculative plan: nothing is kept for an apply, which can never follow."""
    allow_empty_apply: bool = False
    structured_output: bool = True
    """The workspace's structured-run-output setting: the log is Terraform's JSON lines."""
    variables: tuple[Variable, ...] = ()
    run_variables: tuple[tuple[str, str], ...] = ()
    """``(key, HCL literal)`` pairs given with the run; they win over workspace variables."""
    timeout_seconds: int = 3600
    max_configuration_bytes: int = 512 * 1024**2
    """The most the configuration may unpack to (the server checked the upload against the
    same setting)."""
    invoke_action_addrs: tuple[str, ...] = ()
    """``terraform apply -invoke=<address>``: the plan invokes these actions and nothing else."""
    workspace_id: str = ""
    resource_cpu: str | None = None
    """The workspace's ``resource-cpu`` and ``resource-memory``: what a Kubernetes Job asks for
    (the in-process runner ignores them)."""
    resource_memory: str | None = None
    provider_mirror: str | None = None
    """A filesystem mirror of providers (``runs.provider_mirror``): the engine installs the
    providers found there from it, and every other provider as usual."""


class JobIO(Protocol):
    """The runner's only way to the outside; the caller implements it for one job."""

    async def fetch_configuration(self, dest: Path) -> None:
        """Write the configuration version's tarball to ``dest``."""

    async def fetch_state(self) -> bytes | None:
        """The workspace's current raw state, or ``None`` when it has none yet."""

    async def fetch_plan_file(self, dest: Path) -> None:
        """Apply phase: write the binary plan file the plan phase stored to ``dest``."""

    async def write_log(self, data: bytes) -> None:
        """Append ``data`` (already masked) to this phase's log."""

    async def persist_state(self, raw: bytes) -> None:
        """Save a new state file the engine wrote; called during and after an apply."""

    async def store_plan(self, plan_file: Path, plan_json: bytes, redacted_json: bytes) -> None:
        """Plan phase: keep the binary plan, its JSON form (``terraform show -json``, sensitive
        variable values removed) and the redacted form ``GET /plans/:id/json-output-redacted``
        serves to the terraform CLI."""


@dataclass
class JobControl:
    """Set from another task to stop a running job."""

    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    """Stop gracefully: the engine gets SIGINT, as from Ctrl-C, and still saves state."""
    force: asyncio.Event = field(default_factory=asyncio.Event)
    """Stop now: the engine and everything it started get SIGKILL."""


@dataclass(frozen=True)
class DeclaredAction:
    """An ``action`` block of the configuration (Terraform 1.14+), from the plan."""

    module_address: str
    """``""`` for the root module, else ``module.a`` or ``module.a.module.b``."""
    address: str
    """``action.<type>.<name>``, inside its module, without an instance key."""
    provider: str
    """The provider's type (``aws``, ``pinger``)."""
    instance_type: Literal["single", "count", "for_each"] = "single"
    count_value: int | None = None
    """The action's ``count`` when the configuration sets it to a constant."""


@dataclass(frozen=True)
class ActionInvocationReport:
    """One invocation of an action the engine planned, and how it went in the apply.

    Plan jobs report every planned invocation (``status`` ``planned``); apply jobs report
    those the engine started, ``successful`` or ``failed``. ``match_key`` is the same for an
    invocation in both phases' reports.
    """

    match_key: str
    module_address: str
    address: str
    action_key: str | int | None
    provider: str
    method: Literal["direct", "lifecycle"]
    status: Literal["planned", "successful", "failed"] = "planned"
    triggering_resource_address: str | None = None
    trigger_event: str | None = None
    """As Terraform names it: ``BeforeCreate``, ``AfterCreate``, ``BeforeUpdate``,
    ``AfterUpdate``."""
    trigger_block_index: int | None = None
    actions_list_index: int | None = None
    order: int = 0
    """The engine's order: of the plan's list in a plan, of the starts in an apply."""
    started_at: str | None = None
    """The engine's timestamps (RFC 3339, UTC)."""
    completed_at: str | None = None
    messages: tuple[str, ...] = ()
    """The action's progress messages, in order."""
    error: str | None = None


@dataclass
class JobResult:
    """How a job ended. ``error`` is a short reason for ``errored`` and ``canceled``."""

    outcome: Literal["finished", "errored", "canceled"]
    error: str | None = None
    has_changes: bool | None = None
    """Plan phase: whether applying the plan would change anything (``None`` otherwise)."""
    additions: int = 0
    changes: int = 0
    destructions: int = 0
    imports: int = 0
    # What the engine reported about actions; not part of how the job ended (== ignores it).
    actions: tuple[DeclaredAction, ...] = field(default=(), compare=False)
    """Plan phase: the configuration's actions."""
    action_invocations: tuple[ActionInvocationReport, ...] | None = field(
        default=None, compare=False
    )
    """The action invocations the engine planned (plan phase) or started (apply phase, when
    its output was Terraform's JSON lines); ``None`` when the job could not tell."""
