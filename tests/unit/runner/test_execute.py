"""The runner with real Terraform (the embedded ``terrapod-terraform``) and an in-memory JobIO.

Configurations use only the built-in ``terraform_data`` resource: no provider can be
downloaded here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import platform
import re
import tarfile

import pytest

from terrapod.runner.execute import discard_workdir
from terrapod.runner.spec import JobControl, JobResult
from tests.unit.runner.conftest import FakeJobIO, Jobs, variable

RESOURCES = """
resource "terraform_data" "a" { input = "a" }
resource "terraform_data" "b" { input = "b" }
output "b" { value = terraform_data.b.input }
"""
CLOUD_BLOCK = """
terraform {
  cloud {
    organization = "acme"
    workspaces { name = "web" }
  }
}
"""
BASE = {"main.tf": CLOUD_BLOCK + RESOURCES}
SLOW = {
    "main.tf": """
resource "terraform_data" "a" { input = "a" }
resource "terraform_data" "slow" {
  depends_on = [terraform_data.a]
  provisioner "local-exec" { command = "sleep 30" }
}
"""
}
VARIABLES = {
    "main.tf": """
variable "greeting" { type = string }
variable "literal" {
  type    = string
  default = ""
}
variable "settings" {
  type    = any
  default = null
}
variable "from_env" {
  type    = string
  default = ""
}
resource "terraform_data" "a" { input = var.greeting }
""",
    # The configuration's own variable files lose to the workspace's.
    "terraform.tfvars": 'greeting = "from terraform.tfvars"\n',
    "zzz.auto.tfvars": 'greeting = "from zzz.auto.tfvars"\n',
}


@dataclasses.dataclass
class Done:
    io: FakeJobIO
    result: JobResult
    run_id: str


@pytest.fixture(scope="module")
async def first_plan(jobs: Jobs) -> Done:
    """A structured-output plan of :data:`BASE` with no state yet."""
    job_io = FakeJobIO(BASE)
    spec = jobs.spec()
    return Done(job_io, await jobs.run(spec, job_io), spec.run_id)


@pytest.fixture(scope="module")
async def applied(jobs: Jobs) -> Done:
    """:data:`BASE` planned and applied; ``io.state`` is the resulting state."""
    job_io = FakeJobIO(BASE)
    plan = jobs.spec()
    assert (await jobs.run(plan, job_io)).outcome == "finished", job_io.text
    job_io.log.clear()
    result = await jobs.run(dataclasses.replace(plan, phase="apply", job_id="job-a"), job_io)
    return Done(job_io, result, plan.run_id)


def _lines(job_io: FakeJobIO) -> list[str]:
    return job_io.text.splitlines()


def _without_colors(text: str) -> str:
    """Terraform's human output, which keeps its ANSI colors in the log, as plain text."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# --- plan -----------------------------------------------------------------------------------


def test_log_starts_with_the_three_tfe_header_lines(first_plan: Done) -> None:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    assert _lines(first_plan.io)[:3] == [
        "Terraform v1.15.5",
        f"on linux_{arch}",
        "Initializing plugins and modules...",
    ]


def test_structured_plan_log_is_terraform_json_lines_without_init_output(
    first_plan: Done,
) -> None:
    messages = [json.loads(line) for line in _lines(first_plan.io)[3:] if line]
    assert messages[0]["type"] == "version"
    assert {"planned_change", "change_summary"} <= {m["type"] for m in messages}
    assert "Initializing the backend" not in first_plan.io.text


def test_plan_with_changes_counts_them(first_plan: Done) -> None:
    assert first_plan.result == JobResult(outcome="finished", has_changes=True, additions=2)


def test_plan_stores_plan_file_json_and_the_redacted_plan_the_cli_renders(
    first_plan: Done,
) -> None:
    job_io = first_plan.io
    assert job_io.plan_file is not None and job_io.plan_file.startswith(b"PK")  # a zip
    assert {rc["address"] for rc in job_io.plan_json["resource_changes"]} == {
        "terraform_data.a",
        "terraform_data.b",
    }
    redacted = job_io.redacted_json
    assert set(redacted) == {
        "plan_format_version",
        "provider_format_version",
        "provider_schemas",
        "resource_changes",
        "resource_drift",
        "relevant_attributes",
        "output_changes",
    }
    builtin = redacted["provider_schemas"]["terraform.io/builtin/terraform"]
    assert "terraform_data" in builtin["resource_schemas"]
    assert redacted["output_changes"]["b"]["actions"] == ["create"]


def test_applicable_plan_keeps_its_directory_for_the_apply(first_plan: Done, jobs: Jobs) -> None:
    kept = jobs.workdir_root / first_plan.run_id
    assert (kept / "ready").exists()
    assert kept.stat().st_mode & 0o777 == 0o700

    discard_workdir(jobs.workdir_root, first_plan.run_id)

    assert not kept.exists()


async def test_text_log_when_structured_output_is_off(jobs: Jobs) -> None:
    job_io = FakeJobIO(BASE)

    result = await jobs.run(jobs.spec(structured_output=False), job_io)

    assert result.outcome == "finished"
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in _without_colors(job_io.text)
    assert not any(line.startswith("{") for line in _lines(job_io))


async def test_plan_against_current_state_has_no_changes_and_keeps_nothing(
    applied: Done, jobs: Jobs
) -> None:
    job_io = FakeJobIO(BASE, state=applied.io.state)
    spec = jobs.spec()

    result = await jobs.run(spec, job_io)

    assert result == JobResult(outcome="finished", has_changes=False)
    assert not (jobs.workdir_root / spec.run_id).exists()


async def test_destroy_plan_counts_destructions(applied: Done, jobs: Jobs) -> None:
    job_io = FakeJobIO(BASE, state=applied.io.state)

    result = await jobs.run(jobs.spec(is_destroy=True), job_io)

    assert result == JobResult(outcome="finished", has_changes=True, destructions=2)


async def test_replace_counts_one_addition_and_one_destruction(applied: Done, jobs: Jobs) -> None:
    job_io = FakeJobIO(BASE, state=applied.io.state)

    result = await jobs.run(jobs.spec(replace_addrs=("terraform_data.a",)), job_io)

    assert result == JobResult(outcome="finished", has_changes=True, additions=1, destructions=1)


async def test_target_limits_the_plan_to_the_addressed_resource(jobs: Jobs) -> None:
    job_io = FakeJobIO(BASE)

    result = await jobs.run(jobs.spec(target_addrs=("terraform_data.a",)), job_io)

    assert result == JobResult(outcome="finished", has_changes=True, additions=1)
    assert [rc["address"] for rc in job_io.plan_json["resource_changes"]] == ["terraform_data.a"]


async def test_refresh_only_plan_ignores_configuration_changes(applied: Done, jobs: Jobs) -> None:
    grown = {"main.tf": BASE["main.tf"] + 'resource "terraform_data" "c" {}\n'}
    job_io = FakeJobIO(grown, state=applied.io.state)

    result = await jobs.run(jobs.spec(refresh_only=True), job_io)

    assert result == JobResult(outcome="finished", has_changes=False)


async def test_refresh_only_plan_has_changes_when_outputs_drifted(
    applied: Done, jobs: Jobs
) -> None:
    assert applied.io.state is not None
    state = json.loads(applied.io.state)
    state["outputs"]["b"]["value"] = "changed behind terraform's back"
    job_io = FakeJobIO(BASE, state=json.dumps(state).encode())

    result = await jobs.run(jobs.spec(refresh_only=True), job_io)

    assert result.outcome == "finished" and result.has_changes is True
    assert result.additions == result.changes == result.destructions == 0


async def test_run_variables_win_over_workspace_variables_which_win_over_the_configurations(
    jobs: Jobs,
) -> None:
    tricky = 'quote " backslash \\ ${not.interpolated} %{ not a directive }\nsecond line'
    job_io = FakeJobIO(VARIABLES)
    spec = jobs.spec(
        variables=(
            variable("greeting", "from the workspace"),
            variable("literal", tricky),
            variable("settings", '{ size = 3, tags = ["x"] }', hcl=True),
        ),
        run_variables=(("greeting", '"from the run"'),),
    )

    result = await jobs.run(spec, job_io)

    assert result.outcome == "finished", job_io.text
    values = {k: v.get("value") for k, v in job_io.plan_json["variables"].items()}
    assert values["greeting"] == "from the run"
    assert values["literal"] == tricky
    assert values["settings"] == {"size": 3, "tags": ["x"]}


async def test_workspace_variable_wins_over_the_configurations_variable_files(
    jobs: Jobs,
) -> None:
    job_io = FakeJobIO(VARIABLES)

    await jobs.run(jobs.spec(variables=(variable("greeting", "from the workspace"),)), job_io)

    assert job_io.plan_json["variables"]["greeting"]["value"] == "from the workspace"


async def test_env_variables_reach_the_engine(jobs: Jobs) -> None:
    job_io = FakeJobIO(VARIABLES)
    spec = jobs.spec(
        variables=(
            variable("greeting", "hi"),
            variable("TF_VAR_from_env", "set in the environment", category="env"),
        )
    )

    await jobs.run(spec, job_io)

    assert job_io.plan_json["variables"]["from_env"]["value"] == "set in the environment"


async def test_sensitive_values_never_reach_the_log_or_the_stored_json(jobs: Jobs) -> None:
    # Neither variable is declared sensitive, so Terraform prints both values in the plan.
    files = {
        "main.tf": """
variable "password" { type = string }
variable "token" { type = string }
resource "terraform_data" "a" { input = "${var.password}/${var.token}" }
"""
    }
    job_io = FakeJobIO(files)
    spec = jobs.spec(
        structured_output=False,
        variables=(
            variable("password", "tf-secret-value-1", sensitive=True),
            variable("TF_VAR_token", "env-secret-value-2", category="env", sensitive=True),
        ),
    )

    result = await jobs.run(spec, job_io)

    assert result.outcome == "finished", job_io.text
    assert 'input  = "***/***"' in _without_colors(job_io.text)
    for stored in (bytes(job_io.log), job_io.raw_plan_json, job_io.raw_redacted_json):
        assert b"tf-secret-value-1" not in stored
        assert b"env-secret-value-2" not in stored
    assert "value" not in job_io.plan_json["variables"]["password"]


async def test_configuration_that_does_not_parse_errors_with_terraforms_message(
    jobs: Jobs,
) -> None:
    job_io = FakeJobIO({"main.tf": 'resource "terraform_data" "a" {\n'})

    result = await jobs.run(jobs.spec(), job_io)

    assert result == JobResult(outcome="errored", error="terraform init exited 1")
    assert "Unclosed configuration block" in job_io.text


async def test_plan_error_errors_with_terraforms_message(jobs: Jobs) -> None:
    job_io = FakeJobIO({"main.tf": 'resource "terraform_data" "a" { input = var.nope }\n'})
    spec = jobs.spec()

    result = await jobs.run(spec, job_io)

    assert result == JobResult(outcome="errored", error="terraform plan exited 1")
    assert "Reference to undeclared input variable" in job_io.text
    assert job_io.plan_file is None
    assert not (jobs.workdir_root / spec.run_id).exists()


async def test_speculative_plan_keeps_no_directory(jobs: Jobs) -> None:
    spec = jobs.spec(plan_only=True)
    job_io = FakeJobIO(BASE)

    result = await jobs.run(spec, job_io)

    assert result.has_changes is True
    assert job_io.plan_file is not None
    assert not (jobs.workdir_root / spec.run_id).exists()


async def test_working_directory_is_the_root_module_and_sees_the_whole_configuration(
    jobs: Jobs,
) -> None:
    files = {
        "infra/prod/main.tf": 'module "x" { source = "../../modules/x" }\n',
        "modules/x/main.tf": 'resource "terraform_data" "m" {}\n',
    }
    job_io = FakeJobIO(files)

    result = await jobs.run(jobs.spec(working_directory="infra/prod"), job_io)

    assert result == JobResult(outcome="finished", has_changes=True, additions=1), job_io.text


@pytest.mark.parametrize(
    ("working_directory", "error"),
    [
        ("../elsewhere", "working directory '../elsewhere' is outside the configuration"),
        ("missing", "working directory 'missing' does not exist in the configuration"),
    ],
)
async def test_unusable_working_directory_errors(
    jobs: Jobs, working_directory: str, error: str
) -> None:
    job_io = FakeJobIO(BASE)

    result = await jobs.run(jobs.spec(working_directory=working_directory), job_io)

    assert result == JobResult(outcome="errored", error=error)
    assert error in job_io.text


async def test_unsafe_configuration_archive_errors(jobs: Jobs) -> None:
    job_io = FakeJobIO({})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(tarfile.TarInfo("../escape.tf"), io.BytesIO(b""))
    job_io.tarball = buffer.getvalue()

    result = await jobs.run(jobs.spec(), job_io)

    assert result.outcome == "errored"
    assert result.error == (
        "the configuration cannot be used: member '../escape.tf' escapes the archive root"
    )


async def test_invalid_variable_name_errors(jobs: Jobs) -> None:
    job_io = FakeJobIO(BASE)

    result = await jobs.run(jobs.spec(variables=(variable("not valid", "x"),)), job_io)

    assert result == JobResult(
        outcome="errored", error="variable name 'not valid' is not a valid Terraform identifier"
    )


async def test_unavailable_engine_errors_with_the_reason_in_the_log(jobs: Jobs) -> None:
    job_io = FakeJobIO(BASE)

    result = await jobs.run(jobs.spec(terraform_version="1.2.3"), job_io)

    assert result.outcome == "errored"
    assert result.error is not None
    assert result.error.startswith("Terraform 1.2.3 is not available on this agent")
    assert job_io.text == result.error + "\n"


@pytest.mark.parametrize(
    "settings",
    [
        CLOUD_BLOCK,
        'terraform {\n  backend "remote" {\n    organization = "acme"\n'
        '    workspaces { name = "web" }\n  }\n}\n',
        'terraform {\n  backend "s3" {\n    bucket = "b"\n    key = "k"\n'
        '    region = "us-east-1"\n  }\n}\n',
        "",
    ],
    ids=["cloud block", "remote backend", "s3 backend", "no terraform block"],
)
async def test_state_goes_to_the_runner_whatever_backend_the_configuration_names(
    jobs: Jobs, settings: str
) -> None:
    job_io = FakeJobIO({"main.tf": settings + RESOURCES})

    result = await jobs.plan_and_apply(job_io)

    assert result.outcome == "finished", job_io.text
    assert job_io.state_resources() == ["terraform_data.a", "terraform_data.b"]


# --- apply ----------------------------------------------------------------------------------


def test_apply_persists_state_and_counts_changes(applied: Done, jobs: Jobs) -> None:
    assert applied.result == JobResult(outcome="finished", additions=2)
    assert applied.io.persisted
    assert applied.io.state_resources() == ["terraform_data.a", "terraform_data.b"]
    assert not (jobs.workdir_root / applied.run_id).exists()


def test_apply_log_has_the_header_then_terraform_output(applied: Done) -> None:
    lines = _lines(applied.io)
    assert lines[0] == "Terraform v1.15.5"
    summaries = [json.loads(line) for line in lines[3:] if '"change_summary"' in line]
    assert summaries[-1]["changes"]["add"] == 2


async def test_apply_without_the_kept_directory_prepares_one(jobs: Jobs) -> None:
    job_io = FakeJobIO(BASE)
    plan = jobs.spec()
    await jobs.run(plan, job_io)
    discard_workdir(jobs.workdir_root, plan.run_id)

    result = await jobs.run(dataclasses.replace(plan, phase="apply"), job_io)

    assert result == JobResult(outcome="finished", additions=2), job_io.text
    assert job_io.state_resources() == ["terraform_data.a", "terraform_data.b"]


async def _slow_apply(
    jobs: Jobs,
) -> tuple[FakeJobIO, asyncio.Task[JobResult], JobControl]:
    """Start applying :data:`SLOW`; return once its provisioner is running and the state
    Terraform saved before it has been persisted."""
    job_io = FakeJobIO(SLOW)
    plan = jobs.spec()
    assert (await jobs.run(plan, job_io)).outcome == "finished", job_io.text
    control = JobControl()
    task = asyncio.create_task(jobs.run(dataclasses.replace(plan, phase="apply"), job_io, control))
    provisioning = asyncio.ensure_future(
        job_io.wait_until(
            lambda: (
                b"Provisioning with 'local-exec'" in job_io.log
                and job_io.state is not None
                and "terraform_data.a" in job_io.state_resources()
            )
        )
    )
    await asyncio.wait({provisioning, task}, return_when=asyncio.FIRST_COMPLETED)
    assert provisioning.done(), job_io.text
    return job_io, task, control


async def test_cancel_interrupts_the_apply_gracefully_and_keeps_the_state_it_wrote(
    jobs: Jobs,
) -> None:
    job_io, task, control = await _slow_apply(jobs)

    control.cancel.set()
    result = await task

    assert result == JobResult(outcome="canceled", error="canceled")
    assert "Interrupt received" in job_io.text  # Terraform's own graceful-stop message
    # After the interrupt Terraform saved the halted resource too (tainted).
    assert job_io.state_resources() == ["terraform_data.a", "terraform_data.slow"]


async def test_force_cancel_kills_the_engine_and_the_commands_it_started(jobs: Jobs) -> None:
    job_io, task, control = await _slow_apply(jobs)

    control.force.set()
    result = await task

    assert result == JobResult(outcome="canceled", error="force-canceled")
    assert "force-canceled" in job_io.text


async def test_timeout_interrupts_the_engine_and_errors(jobs: Jobs) -> None:
    job_io = FakeJobIO(SLOW)
    plan = jobs.spec()
    assert (await jobs.run(plan, job_io)).outcome == "finished", job_io.text

    result = await jobs.run(dataclasses.replace(plan, phase="apply", timeout_seconds=1), job_io)

    assert result == JobResult(outcome="errored", error="timed out after 1 s")
    assert "timed out after 1 s" in job_io.text
