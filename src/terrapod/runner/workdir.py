"""A job's private directory and the files the runner adds to the user's configuration.

Layout of ``<workdir_root>/<run_id>/`` (mode 0700)::

    config/                 the configuration version, extracted
    config/<working dir>/   the root module, where the engine runs; the runner adds
        ~terrapod_override.tf              the local backend, with the state file below
        ~terrapod_1_workspace.auto.tfvars  workspace variables (category terraform)
        ~terrapod_2_run.auto.tfvars        run variables
        ~terrapod_3_enforced.auto.tfvars   priority variable sets' terraform variables
    home/                   the engine's HOME
    terraformrc             the CLI configuration (TF_CLI_CONFIG_FILE): empty, or naming the
                            operator's provider mirror (runs.provider_mirror)
    terraform.tfstate       the workspace's state
    plan.tfplan             the binary plan
    ready                   written when a plan leaves the directory ready for its apply

Terraform merges override files and loads ``*.auto.tfvars`` files in lexical order of their
names, later ones winning; ``~`` sorts after letters, digits and ``_``, so the runner's
backend and variables win over anything the configuration brings.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from terrapod.runner.spec import JobSpec

OVERRIDE_FILE = "~terrapod_override.tf"
WORKSPACE_VARIABLES_FILE = "~terrapod_1_workspace.auto.tfvars"
RUN_VARIABLES_FILE = "~terrapod_2_run.auto.tfvars"
ENFORCED_VARIABLES_FILE = "~terrapod_3_enforced.auto.tfvars"

# Terraform's rule for variable names (and HCL's for attribute names in a tfvars file).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_HCL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class InvalidJob(Exception):
    """The job cannot run as specified; the message tells the user why."""


class JobDirectory:
    """The paths of one run's directory under ``workdir_root``."""

    def __init__(self, workdir_root: Path, run_id: str) -> None:
        if not run_id or run_id in {".", ".."} or "/" in run_id or "\0" in run_id:
            raise ValueError(f"run id {run_id!r} cannot name a directory")
        self.root = workdir_root / run_id
        self.config = self.root / "config"
        self.home = self.root / "home"
        self.cli_config = self.root / "terraformrc"
        self.state = self.root / "terraform.tfstate"
        self.plan = self.root / "plan.tfplan"
        self.ready = self.root / "ready"

    def create(self) -> None:
        """Start empty: whatever an earlier attempt left is removed."""
        self.discard()
        self.root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.mkdir(mode=0o700)
        self.home.mkdir()
        self.cli_config.touch()

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def module_dir(self, working_directory: str | None) -> Path:
        """The root module: ``working_directory`` inside the configuration, which must exist
        and stay inside it."""
        config = self.config.resolve()
        relative = (working_directory or "").strip("/")
        module = (config / relative).resolve()
        if not module.is_relative_to(config):
            raise InvalidJob(f"working directory {relative!r} is outside the configuration")
        if not module.is_dir():
            raise InvalidJob(f"working directory {relative!r} does not exist in the configuration")
        return module

    def write_state(self, raw: bytes | None) -> None:
        """Make ``raw`` the state the engine starts from (``None``: no state yet)."""
        if raw is None:
            self.state.unlink(missing_ok=True)
        else:
            _write_private(self.state, raw)


def write_backend_override(module: Path, state_path: Path) -> None:
    """Point the configuration at a local state file, whatever backend or ``cloud`` block
    it declares (or none): an override file's backend replaces the configuration's."""
    # Relative to the module: the plan file records the backend's path, and an apply on
    # another agent (another work dir) must write its own state file, not the planner's.
    relative = os.path.relpath(state_path.resolve(), module)
    text = f'terraform {{\n  backend "local" {{\n    path = {hcl_string(relative)}\n  }}\n}}\n'
    _write_private(module / OVERRIDE_FILE, text.encode())


def write_cli_config(directory: JobDirectory, provider_mirror: str | None) -> None:
    """The engine's CLI configuration: empty, or installing the providers found in
    ``provider_mirror`` (an operator's filesystem mirror of private providers, Terraform's
    packed or unpacked layout) from there only, and every other one from its registry."""
    sources = mirrored_providers(Path(provider_mirror)) if provider_mirror else []
    if not sources:
        return
    listed = ", ".join(hcl_string(s) for s in sources)
    text = (
        "provider_installation {\n"
        f"  filesystem_mirror {{\n    path    = {hcl_string(str(provider_mirror))}\n"
        f"    include = [{listed}]\n  }}\n"
        f"  direct {{\n    exclude = [{listed}]\n  }}\n"
        "}\n"
    )
    _write_private(directory.cli_config, text.encode())


def mirrored_providers(mirror: Path) -> list[str]:
    """``hostname/namespace/type`` of every provider in a filesystem mirror, sorted."""
    if not mirror.is_dir():
        return []
    return sorted(
        "/".join(p.relative_to(mirror).parts)
        for p in mirror.glob("*/*/*")
        if p.is_dir() and not any(part.startswith(".") for part in p.relative_to(mirror).parts)
    )


def write_variable_files(module: Path, spec: JobSpec) -> None:
    """Workspace variables of category terraform, then the run's variables, then the
    enforced ones (priority variable sets), as tfvars files that sort after the
    configuration's own: the enforced win, then the run's, then the workspace's."""

    def assignments(*, enforced: bool) -> list[tuple[str, str]]:
        return [
            (v.key, v.value if v.hcl else hcl_string(v.value))
            for v in spec.variables
            if v.category == "terraform" and v.enforced is enforced
        ]

    for path, pairs in (
        (module / WORKSPACE_VARIABLES_FILE, assignments(enforced=False)),
        (module / RUN_VARIABLES_FILE, list(spec.run_variables)),
        (module / ENFORCED_VARIABLES_FILE, assignments(enforced=True)),
    ):
        if pairs:
            _write_private(path, _tfvars(pairs).encode())


def engine_environment(spec: JobSpec, directory: JobDirectory) -> dict[str, str]:
    """The engine's whole environment: nothing of this machine's but PATH and LANG, a
    private HOME and CLI configuration, then the workspace's env variables (which may
    override any of it)."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(directory.home),
        "TF_CLI_CONFIG_FILE": str(directory.cli_config),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "TFC_RUN_ID": spec.run_id,
        "TFC_WORKSPACE_NAME": spec.workspace_name,
    }
    if spec.debugging_mode:
        env["TF_LOG"] = "TRACE"
    for v in spec.variables:
        if v.category != "env":
            continue
        if not v.key or "=" in v.key or "\0" in v.key or "\0" in v.value:
            raise InvalidJob(f"environment variable {v.key!r} cannot be passed to a process")
        env[v.key] = v.value
    return env


def hcl_string(value: str) -> str:
    """``value`` as a quoted HCL string literal that evaluates to exactly ``value``."""
    escaped = "".join(
        _HCL_ESCAPES.get(c, f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
        for c in value
    )
    # A quoted HCL string is a template: "${" and "%{" start interpolations unless doubled.
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


def _tfvars(assignments: Iterable[tuple[str, str]]) -> str:
    lines = []
    for key, literal in assignments:
        if not _IDENTIFIER.fullmatch(key):
            raise InvalidJob(f"variable name {key!r} is not a valid Terraform identifier")
        lines.append(f"{key} = {literal}\n")
    return "".join(lines)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
