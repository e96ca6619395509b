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
