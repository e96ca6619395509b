"""Remote plans and applies: real Terraform 1.15.5 with a ``cloud {}`` block runs ``plan`` and
``apply`` on Terrapod's built-in agent (the entitlement ``operations`` is true and the
``default`` organization creates workspaces in ``remote`` execution mode).

Every scenario drives the real CLI over TLS, as a user would, and then checks what the API
says about the run (its status, its logs, the JSON plan) and about the workspace's state.
Interactive prompts are answered through a pseudo-terminal (``pty_driver``); a Ctrl-C is a
SIGINT to the terraform process. Waits poll with a deadline; nothing sleeps blindly and
nothing asserts on durations.

What the CLI does in each step is in CLIENT_FACTS.md, "Remote execution". Only the built-in
``terraform_data`` resource is used (no provider can be downloaded here); each test has its
own working directory and workspace on the shared server.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import (
    TERRAFORM_BIN,
    ServerInfo,
    Terraform,
    describe,
    output_of,
    write_cloud_config,
)
from tests.e2e.pty_driver import PtyProcess
from tests.e2e.test_state_backend import settled_counts

ORG = "default"

# How long a run may take to reach a status the test waits for. Generous: a busy CI machine
# runs two engines per run phase (init, then plan or apply); the deadline only bounds a hang.
RUN_DEADLINE_SECONDS = 90.0
POLL_SECONDS = 0.1
FINAL_STATUSES = frozenset(
    {"applied", "planned_and_finished", "discarded", "errored", "canceled", "force_canceled"}
)
STX, ETX = b"\x02", b"\x03"
# Route templates as the server's request counters name them.
CANCEL = "/api/v2/runs/{run_id}/actions/cancel"
FORCE_CANCEL = "/api/v2/runs/{run_id}/actions/force-cancel"

ONE_RESOURCE = """
resource "terraform_data" "example" {
  input = "hello"
}

output "greeting" {
  value = terraform_data.example.output
}
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------------------------
# Terraform
# --------------------------------------------------------------------------------------------


def tf(
    terraform: Terraform,
    cwd: Path,
    *args: str,
    code: int = 0,
    env_extra: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``terraform ARGS`` (non-interactive) and insist on exit code ``code``."""
    result = terraform.run(list(args), cwd, env_extra=env_extra)
    assert result.returncode == code, describe(result)
    return result


def remote_config(
    terraform: Terraform, server: ServerInfo, cwd: Path, resources: str, prefix: str = "remote"
) -> str:
    """Write a ``cloud {}`` configuration for a new workspace, ``terraform init`` it, and
    return the workspace's name (init creates it, in the organization's default mode)."""
    name = unique(prefix)
    write_cloud_config(
        cwd, hostname=server.hostname, organization=ORG, workspace=name, resources=resources
    )
    tf(terraform, cwd, "init", "-no-color")
    return name


def run_id_in(text: str) -> str:
    """The run the CLI started, from the URL it prints ("To view this run in a browser")."""
    found = re.findall(r"/runs/(run-[A-Za-z0-9]+)", text)
    assert found, f"no run URL in the output:\n{text}"
    return str(found[-1])


def interactive(terraform: Terraform, cwd: Path, *args: str) -> PtyProcess:
    """``terraform ARGS`` on a pseudo-terminal, with input allowed (it may prompt)."""
    return PtyProcess([str(TERRAFORM_BIN), *args], env=terraform.env(interactive=True), cwd=cwd)


# --------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------


@pytest.fixture
def api(server: ServerInfo) -> Iterator[httpx.Client]:
    """Raw JSON:API client authenticated as the bootstrap admin."""
    with server.http(server.admin_token) as client:
        yield client


def get(api: httpx.Client, path: str) -> dict[str, Any]:
    response = api.get(path)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    body: dict[str, Any] = response.json()
    return body


def workspace_of(api: httpx.Client, name: str) -> dict[str, Any]:
    data: dict[str, Any] = get(api, f"/api/v2/organizations/{ORG}/workspaces/{name}")["data"]
    return data


def run_of(api: httpx.Client, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = get(api, f"/api/v2/runs/{run_id}")["data"]
    return data


def wait_for_run(
    api: httpx.Client,
    run_id: str,
    statuses: frozenset[str] | set[str] = FINAL_STATUSES,
    timeout: float = RUN_DEADLINE_SECONDS,
) -> dict[str, Any]:
    """Poll the run until its status is one of ``statuses``; return its attributes."""
    deadline = time.monotonic() + timeout
    while True:
        attributes: dict[str, Any] = run_of(api, run_id)["attributes"]
        if attributes["status"] in statuses:
            return attributes
        assert time.monotonic() < deadline, (
            f"run {run_id} is {attributes['status']} after {timeout:g}s, "
            f"not one of {sorted(statuses)}"
        )
        time.sleep(POLL_SECONDS)


def phase_of(api: httpx.Client, run_id: str, phase: str) -> dict[str, Any]:
    """``GET /runs/:id/plan`` or ``/runs/:id/apply``: the phase resource."""
    data: dict[str, Any] = get(api, f"/api/v2/runs/{run_id}/{phase}")["data"]
    return data


def read_log(server: ServerInfo, url: str) -> str:
    """A finished phase's whole log through its ``log-read-url``, as go-tfe reads it: no
    Authorization header, ``offset``/``limit`` in the query; STX and ETX stripped."""
    data = b""
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    with httpx.Client(verify=server.ssl_context(), timeout=30.0, trust_env=False) as client:
        while not data.endswith(ETX):
            response = client.get(url, params={"offset": len(data), "limit": 65536})
            assert response.status_code == 200, response.text
            data += response.content
            if not response.content:
                assert time.monotonic() < deadline, f"the log never ended:\n{data[-500:]!r}"
                time.sleep(POLL_SECONDS)
    assert data.startswith(STX), data[:200]
    return data[1:-1].decode()


def log_of(server: ServerInfo, api: httpx.Client, run_id: str, phase: str) -> str:
    url = phase_of(api, run_id, phase)["attributes"]["log-read-url"]
    assert url, f"run {run_id} has no {phase} log URL"
    return read_log(server, url)


def state_of(api: httpx.Client, workspace_id: str) -> dict[str, Any] | None:
    """The workspace's current state file, decoded (``None`` when it has no state)."""
    current = api.get(f"/api/v2/workspaces/{workspace_id}/current-state-version")
    if current.status_code == 404:
        return None
    assert current.status_code == 200, current.text
    version_id = current.json()["data"]["id"]
    content = api.get(f"/api/v2/state-versions/{version_id}/download", headers={"Accept": "*/*"})
    assert content.status_code == 200, content.text
    state: dict[str, Any] = content.json()
    return state


def instances(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{address: instance}`` of the managed resources in ``state`` (no count/for_each)."""
    if state is None:
        return {}
    return {
        f"{r['type']}.{r['name']}": r["instances"][0]
        for r in state["resources"]
        if r["mode"] == "managed" and r["instances"]
    }


def input_of(instance: dict[str, Any]) -> Any:
    """A ``terraform_data`` instance's ``input`` (stored as a dynamic value with its type)."""
    return instance["attributes"]["input"]["value"]


def outputs_of(api: httpx.Client, workspace_id: str) -> dict[str, Any]:
    """``{name: value}`` of the current state version's outputs (sensitive ones are None)."""
    body = get(api, f"/api/v2/workspaces/{workspace_id}/current-state-version-outputs")
    return {o["attributes"]["name"]: o["attributes"]["value"] for o in body["data"]}


# --------------------------------------------------------------------------------------------
# plan and apply
# --------------------------------------------------------------------------------------------


def test_plan_streams_the_remote_plan_and_detailed_exitcode_reports_changes(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "cfg"
    name = remote_config(terraform, server, cwd, ONE_RESOURCE, "plan")
    workspace = workspace_of(api, name)
    assert workspace["attributes"]["execution-mode"] == "remote", workspace

    planned = tf(terraform, cwd, "plan", "-no-color")
    text = output_of(planned)
    assert "Running plan in HCP Terraform. Output will stream here." in text, describe(planned)
    assert "# terraform_data.example will be created" in text, describe(planned)
    assert 'input = "hello"' in text, describe(planned)
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in text, describe(planned)

    # The API's record of the same (speculative) run.
    run_id = run_id_in(planned.stdout)
    run = wait_for_run(api, run_id)
    assert run["status"] == "planned_and_finished", run
    assert (run["plan-only"], run["has-changes"]) == (True, True), run
    plan = phase_of(api, run_id, "plan")["attributes"]
    assert plan["status"] == "finished", plan
    assert (plan["resource-additions"], plan["resource-changes"]) == (1, 0), plan
    assert "terraform_data.example" in read_log(server, plan["log-read-url"])
    # A plan writes no state and leaves the workspace unlocked.
    assert state_of(api, workspace["id"]) is None
    assert workspace_of(api, name)["attributes"]["locked"] is False

    detailed = tf(terraform, cwd, "plan", "-no-color", "-detailed-exitcode", code=2)
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in output_of(detailed), describe(detailed)


def test_apply_auto_approve_applies_and_a_second_plan_has_no_changes(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "cfg"
    name = remote_config(terraform, server, cwd, ONE_RESOURCE, "apply")
    workspace_id = workspace_of(api, name)["id"]

    applied = tf(terraform, cwd, "apply", "-auto-approve", "-no-color")
    text = output_of(applied)
    assert "Running apply in HCP Terraform." in text, describe(applied)
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in text, describe(applied)
    assert "terraform_data.example: Creation complete" in text, describe(applied)
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in text, describe(applied)

    run_id = run_id_in(applied.stdout)
    run = run_of(api, run_id)["attributes"]
    assert run["status"] == "applied", run
    assert (run["plan-only"], run["auto-apply"], run["has-changes"]) == (False, True, True), run
    apply = phase_of(api, run_id, "apply")["attributes"]
    assert (apply["status"], apply["resource-additions"]) == ("finished", 1), apply
    assert "Apply complete!" in read_log(server, apply["log-read-url"])

    # The state the agent wrote is the workspace's current state, read by the CLI too.
    listed = tf(terraform, cwd, "state", "list")
    assert listed.stdout.split() == ["terraform_data.example"], describe(listed)
    assert outputs_of(api, workspace_id) == {"greeting": "hello"}
    assert input_of(instances(state_of(api, workspace_id))["terraform_data.example"]) == "hello"
    assert workspace_of(api, name)["attributes"]["locked"] is False

    again = tf(terraform, cwd, "plan", "-no-color", "-detailed-exitcode", code=0)
    assert "No changes. Your infrastructure matches the configuration." in output_of(again), (
        describe(again)
    )
    assert run_of(api, run_id_in(again.stdout))["attributes"]["has-changes"] is False


# --------------------------------------------------------------------------------------------
# The confirmation prompt, on a terminal
# --------------------------------------------------------------------------------------------


def test_typing_yes_at_the_prompt_applies(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "cfg"
    name = remote_config(terraform, server, cwd, ONE_RESOURCE, "yes")

    with interactive(terraform, cwd, "apply", "-no-color") as apply:
        apply.expect(r"Do you want to perform these actions in workspace \"" + name)
        apply.expect(r"Enter a value:")
        run_id = run_id_in(apply.output)
        run = wait_for_run(api, run_id, {"planned"})
        assert run["actions"]["is-confirmable"] is True, run
        apply.send_line("yes")
        assert apply.wait() == 0, apply.output
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in apply.output

    assert run_of(api, run_id)["attributes"]["status"] == "applied"
    assert outputs_of(api, workspace_of(api, name)["id"]) == {"greeting": "hello"}


def test_typing_no_at_the_prompt_discards_the_run(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "cfg"
    name = remote_config(terraform, server, cwd, ONE_RESOURCE, "no")

    with interactive(terraform, cwd, "apply", "-no-color") as apply:
        apply.expect(r"Enter a value:")
        apply.send_line("no")
        code = apply.wait()
    assert code == 1, apply.output
    assert "Apply discarded." in apply.output, apply.output

    run = run_of(api, run_id_in(apply.output))["attributes"]
    assert run["status"] == "discarded", run
    assert "discarded-at" in run["status-timestamps"], run
    workspace = workspace_of(api, name)
    assert state_of(api, workspace["id"]) is None
    assert workspace["attributes"]["locked"] is False


# --------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------

SLOW_APPLY = """
resource "terraform_data" "slow" {
  input = "slow"

  provisioner "local-exec" {
    command = "sleep 30"
  }
}
"""


def test_ctrl_c_during_an_apply_cancels_the_remote_run(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    """With -auto-approve the CLI asks nothing: on SIGINT it reads the run and, as it is
    cancelable, sends ``POST /runs/:id/actions/cancel``. The agent stops the engine (SIGINT,
    so Terraform kills the provisioner and saves its state) and the run ends ``canceled``."""
    cwd = tmp_path / "cfg"
    name = remote_config(terraform, server, cwd, SLOW_APPLY, "cancel")
    # Started now, the sleep would end 30 s from here; the run must be over well before.
    sleep_would_end = time.monotonic() + 30

    with interactive(terraform, cwd, "apply", "-auto-approve", "-no-color") as apply:
        run_id = run_id_in(apply.expect(r"/runs/run-[A-Za-z0-9]+").group(0))
        wait_for_run(api, run_id, {"applying"})
        # The engine is inside the provisioner once the apply log says so.
        log_url = phase_of(api, run_id, "apply")["attributes"]["log-read-url"]
        deadline = time.monotonic() + RUN_DEADLINE_SECONDS
        with httpx.Client(verify=server.ssl_context(), trust_env=False) as anonymous:
            while "sleep 30" not in anonymous.get(log_url).text:
                assert time.monotonic() < deadline, "the provisioner never started"
                time.sleep(POLL_SECONDS)
        # The CLI polls and can be seconds behind the server (still rendering the plan): the
        # interrupt must reach it in its apply phase, once it is streaming the apply log.
        apply.expect(r"sleep 30")
        before = settled_counts(server)
        apply.interrupt()
        code = apply.wait()
        hits = settled_counts(server) - before
    assert "Interrupt received." in apply.output, apply.output
    assert "The remote operation was successfully cancelled." in apply.output, apply.output
    assert hits.get("POST", CANCEL, 202) == 1, hits
    assert hits.for_route(FORCE_CANCEL) == {}, hits  # the CLI never force-cancels
    assert code == 0, apply.output  # what Terraform 1.15.5 does after a successful cancel

    run = wait_for_run(api, run_id, timeout=max(sleep_would_end - time.monotonic(), 1.0))
    assert run["status"] == "canceled", run
    assert run["canceled-at"] is not None, run
    log = log_of(server, api, run_id, "apply")
    assert "Interrupt received." in log, log
    assert "signal: killed" in log, log  # the sleep did not run to its end
    # Terraform saved what it had: the resource, tainted by its failed provisioner.
    workspace = workspace_of(api, name)
    state = state_of(api, workspace["id"])
    assert instances(state)["terraform_data.slow"]["status"] == "tainted", state
    assert workspace["attributes"]["locked"] is False


# --------------------------------------------------------------------------------------------
# Flags: variables, -target, -replace, -refresh-only, -destroy
# --------------------------------------------------------------------------------------------

VARIABLES = """
variable "from_flag" {
  type = string
}

variable "from_file" {
  type = object({ name = string, sizes = list(number) })
}

variable "from_env" {
  type    = string
  default = "unset"
}

resource "terraform_data" "config" {
  input = "${var.from_flag}/${var.from_file.name}/${var.from_env}"
}

output "flag" {
  value = var.from_flag
}

output "file" {
  value = var.from_file
}

output "env" {
  value = var.from_env
}

output "combined" {
  value = terraform_data.config.output
}
"""


def test_var_var_file_and_tf_var_values_reach_the_remote_run(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "cfg"
    name = remote_config(terraform, server, cwd, VARIABLES, "vars")
    (cwd / "custom.tfvars").write_text('from_file = {\n  name  = "filed"\n  sizes = [1, 2]\n}\n')

    applied = tf(
        terraform, cwd,
        "apply", "-auto-approve", "-no-color",
        "-var", "from_flag=flagged value", "-var-file=custom.tfvars",
        env_extra={"TF_VAR_from_env": "environ"},
    )  # fmt: skip
    text = output_of(applied)
    assert 'input = "flagged value/filed/environ"' in text, describe(applied)
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in text, describe(applied)

    # The CLI sent each as an HCL literal with the run.
    run = run_of(api, run_id_in(applied.stdout))["attributes"]
    sent = {v["key"]: v["value"] for v in run["variables"]}
    assert set(sent) == {"from_flag", "from_file", "from_env"}, run["variables"]
    assert sent["from_flag"] == '"flagged value"', sent

    assert outputs_of(api, workspace_of(api, name)["id"]) == {
        "flag": "flagged value",
        "file": {"name": "filed", "sizes": [1, 2]},
        "env": "environ",
        "combined": "flagged value/filed/environ",
    }

    # Without the values the remote plan fails as a local one would.
    missing = tf(terraform, cwd, "plan", "-no-color", "-var-file=custom.tfvars", code=1)
    assert "No value for required variable" in output_of(missing), describe(missing)
    assert 'variable "from_flag"' in output_of(missing), describe(missing)


TWO_RESOURCES = """
variable "a" {
  default = "one"
}

variable "b" {
  default = "one"
}

resource "terraform_data" "a" {
  input = var.a
}

resource "terraform_data" "b" {
  input = var.b
}
"""


def test_target_replace_refresh_only_and_destroy_behave_as_they_do_locally(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "cfg"
    name = remote_config(terraform, server, cwd, TWO_RESOURCES, "flags")
    workspace_id = workspace_of(api, name)["id"]
    tf(terraform, cwd, "apply", "-auto-approve", "-no-color")
    created = instances(state_of(api, workspace_id))
    assert set(created) == {"terraform_data.a", "terraform_data.b"}, created

    def apply(*args: str) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]]:
        result = tf(terraform, cwd, "apply", "-auto-approve", "-no-color", *args)
        run = run_of(api, run_id_in(result.stdout))["attributes"]
        assert run["status"] == "applied", run
        return output_of(result), run, instances(state_of(api, workspace_id))

    # -target: both variables change, only the targeted resource is updated.
    text, run, targeted = apply("-target=terraform_data.a", "-var", "a=two", "-var", "b=two")
    assert "Resource targeting is in effect" in text, text
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in text, text
    assert run["target-addrs"] == ["terraform_data.a"], run
    assert input_of(targeted["terraform_data.a"]) == "two"
    assert input_of(targeted["terraform_data.b"]) == "one"

    # -replace: b is destroyed and created again (a new id); a is untouched.
    text, run, replaced = apply("-replace=terraform_data.b", "-var", "a=two")
    assert "# terraform_data.b will be replaced, as requested" in text, text
    assert "Apply complete! Resources: 1 added, 0 changed, 1 destroyed." in text, text
    assert run["replace-addrs"] == ["terraform_data.b"], run
    assert (
        replaced["terraform_data.b"]["attributes"]["id"]
        != (targeted["terraform_data.b"]["attributes"]["id"])
    )
    assert replaced["terraform_data.a"] == targeted["terraform_data.a"]

    # -refresh-only: a new output is saved, the changed variable changes no resource.
    (cwd / "outputs.tf").write_text('output "added" {\n  value = "by refresh"\n}\n')
    text, run, refreshed = apply("-refresh-only", "-var", "a=three")
    assert 'Changes to Outputs: + added = "by refresh"' in text, text
    assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed." in text, text
    assert run["refresh-only"] is True, run
    assert refreshed == replaced
    assert outputs_of(api, workspace_id) == {"added": "by refresh"}

    # -destroy: everything goes; the workspace's state is empty. A local `apply -destroy`
    # ends "Destroy complete! Resources: 2 destroyed."; the remote apply runs the saved
    # destroy plan (as TFE does), for which Terraform prints the apply summary instead.
    text, run, destroyed = apply("-destroy", "-var", "a=two")
    assert "Plan: 0 to add, 0 to change, 2 to destroy." in text, text
    assert "Apply complete! Resources: 0 added, 0 changed, 2 destroyed." in text, text
    assert run["is-destroy"] is True, run
    assert destroyed == {}
    assert tf(terraform, cwd, "state", "list").stdout.split() == []


# --------------------------------------------------------------------------------------------
# The workspace queue
# --------------------------------------------------------------------------------------------


def test_a_second_apply_waits_for_the_run_holding_the_workspace(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    """Speculative plans never wait for the workspace (DESIGN.md, "Runs"): the waiting run
    here is a second ``apply``, started while the first waits at its prompt."""
    cwd = tmp_path / "cfg"
    name = remote_config(
        terraform, server, cwd,
        'variable "v" {\n  default = "first"\n}\n\n'
        'resource "terraform_data" "x" {\n  input = var.v\n}\n',
        "queue",
    )  # fmt: skip
    workspace_id = workspace_of(api, name)["id"]

    with interactive(terraform, cwd, "apply", "-no-color") as first:
        first.expect(r"Enter a value:")
        first_id = run_id_in(first.output)
        with PtyProcess(
            [str(TERRAFORM_BIN), "apply", "-auto-approve", "-no-color", "-var", "v=second"],
            env=terraform.env(),
            cwd=cwd,
        ) as second:
            second.expect(r"Waiting for 1 run\(s\) to finish before being queued\.\.\.")
            second_id = run_id_in(second.output)
            assert second_id != first_id
            # While it waits: the first holds the workspace, the second is pending.
            assert run_of(api, second_id)["attributes"]["status"] == "pending"
            holder = workspace_of(api, name)["relationships"]["current-run"]["data"]
            assert holder == {"type": "runs", "id": first_id}, holder

            first.send_line("yes")
            assert first.wait() == 0, first.output
            assert second.wait() == 0, second.output

    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in first.output
    # The second planned against the state the first wrote.
    assert "# terraform_data.x will be updated in-place" in second.output, second.output
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in second.output
    first_run, second_run = run_of(api, first_id), run_of(api, second_id)
    assert first_run["attributes"]["status"] == second_run["attributes"]["status"] == "applied"
    first_applied = first_run["attributes"]["status-timestamps"]["applied-at"]
    second_planning = second_run["attributes"]["status-timestamps"]["planning-at"]
    assert datetime.fromisoformat(first_applied) <= datetime.fromisoformat(second_planning)
    state = instances(state_of(api, workspace_id))
    assert input_of(state["terraform_data.x"]) == "second"


def test_an_apply_waits_for_a_workspace_locked_by_a_person(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "cfg"
    name = remote_config(
        terraform, server, cwd, 'resource "terraform_data" "x" {\n  input = "x"\n}\n', "manual"
    )
    workspace_id = workspace_of(api, name)["id"]
    assert api.post(f"/api/v2/workspaces/{workspace_id}/actions/lock").status_code == 200
    with PtyProcess(
        [str(TERRAFORM_BIN), "apply", "-auto-approve", "-no-color"],
        env=terraform.env(),
        cwd=cwd,
    ) as waiting:
        waiting.expect(r"Waiting for the manually locked workspace to be unlocked\.\.\.")
        run_id = run_id_in(waiting.output)
        assert run_of(api, run_id)["attributes"]["status"] == "pending"
        assert api.post(f"/api/v2/workspaces/{workspace_id}/actions/unlock").status_code == 200
        assert waiting.wait() == 0, waiting.output
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in waiting.output
    assert run_of(api, run_id)["attributes"]["status"] == "applied"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_a_broken_configuration_errors_with_terraforms_message(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "cfg"
    name = remote_config(
        terraform, server, cwd, 'output "x" {\n  value = terraform_data.missing.id\n}\n', "broken"
    )

    failed = tf(terraform, cwd, "apply", "-auto-approve", "-no-color", code=1)
    text = output_of(failed)
    assert "Error: Reference to undeclared resource" in text, describe(failed)
    assert 'A managed resource "terraform_data" "missing" has not been declared' in text, describe(
        failed
    )

    run_id = run_id_in(failed.stdout)
    run = run_of(api, run_id)["attributes"]
    assert run["status"] == "errored", run
    assert phase_of(api, run_id, "plan")["attributes"]["status"] == "errored"
    assert "Reference to undeclared resource" in log_of(server, api, run_id, "plan")
    workspace = workspace_of(api, name)
    assert state_of(api, workspace["id"]) is None
    assert workspace["attributes"]["locked"] is False


# --------------------------------------------------------------------------------------------
# Sensitive workspace variables
# --------------------------------------------------------------------------------------------

# The variable is not declared sensitive: Terraform itself would print it; Terrapod must not.
SENSITIVE = """
variable "secret" {
  type = string
}

resource "terraform_data" "uses" {
  input = sha256(var.secret)

  provisioner "local-exec" {
    command = "echo tf=${var.secret} env=$TP_SECRET_ENV; printf %s \\"$TP_SECRET_ENV\\" | sha256sum"
  }
}

output "secret_sha256" {
  value = terraform_data.uses.output
}
"""


def test_sensitive_workspace_variables_are_used_but_never_shown(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "cfg"
    name = remote_config(terraform, server, cwd, SENSITIVE, "secret")
    workspace_id = workspace_of(api, name)["id"]
    tf_secret = f"tf-secret-{secrets.token_hex(12)}"
    env_secret = f"env-secret-{secrets.token_hex(12)}"
    seen: dict[str, str] = {}  # where -> text, every place a secret must not be

    for key, value, category in (
        ("secret", tf_secret, "terraform"),
        ("TP_SECRET_ENV", env_secret, "env"),
    ):
        created = api.post(
            f"/api/v2/workspaces/{workspace_id}/vars",
            json={"data": {"type": "vars", "attributes": {
                "key": key, "value": value, "category": category, "sensitive": True,
            }}},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        assert created.json()["data"]["attributes"]["value"] is None
        seen[f"POST vars {key}"] = created.text

    # A speculative plan with one more resource that takes the value as it is: the CLI renders
    # its diff from the redacted JSON plan, where the value is masked.
    raw = cwd / "raw.tf"
    raw.write_text('resource "terraform_data" "raw" {\n  input = var.secret\n}\n')
    planned = tf(terraform, cwd, "plan", "-no-color")
    assert "# terraform_data.raw will be created" in planned.stdout, describe(planned)
    assert 'input = "***"' in output_of(planned), describe(planned)
    raw.unlink()
    applied = tf(terraform, cwd, "apply", "-auto-approve", "-no-color")
    seen["CLI plan"] = f"{planned.stdout}\n{planned.stderr}"
    seen["CLI apply"] = f"{applied.stdout}\n{applied.stderr}"
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in output_of(applied)

    # The run used both values: the output holds the hash of the Terraform variable, and the
    # provisioner printed the hash of the environment variable.
    tf_digest = hashlib.sha256(tf_secret.encode()).hexdigest()
    env_digest = hashlib.sha256(env_secret.encode()).hexdigest()
    assert outputs_of(api, workspace_id) == {"secret_sha256": tf_digest}
    assert env_digest in applied.stdout, describe(applied)
    # Where Terraform printed the values, the log shows the mask instead.
    assert "tf=*** env=***" in applied.stdout, describe(applied)

    for run_id, kind in ((run_id_in(planned.stdout), "plan"), (run_id_in(applied.stdout), "apply")):
        seen[f"{kind} run"] = api.get(f"/api/v2/runs/{run_id}").text
        seen[f"{kind} run events"] = api.get(f"/api/v2/runs/{run_id}/run-events").text
        plan = phase_of(api, run_id, "plan")
        seen[f"{kind}: plan"] = json.dumps(plan)
        seen[f"{kind}: plan log"] = read_log(server, plan["attributes"]["log-read-url"])
        for path in (
            f"/api/v2/plans/{plan['id']}/json-output",
            f"/api/v2/plans/{plan['id']}/json-output-redacted",
            f"/api/v2/runs/{run_id}/plan/json-output",
        ):
            response = api.get(path)
            assert response.status_code == 200, f"{path}: {response.text}"
            seen[f"{kind}: {path}"] = response.text
        # The JSON plan keeps the variable, without its value.
        json_plan = api.get(f"/api/v2/plans/{plan['id']}/json-output").json()
        assert "value" not in json_plan["variables"]["secret"], json_plan["variables"]
    apply_phase = phase_of(api, run_id_in(applied.stdout), "apply")
    seen["apply"] = json.dumps(apply_phase)
    seen["apply log"] = read_log(server, apply_phase["attributes"]["log-read-url"])
    assert env_digest in seen["apply log"]

    seen["vars"] = api.get(f"/api/v2/workspaces/{workspace_id}/vars").text
    seen["workspace"] = api.get(f"/api/v2/workspaces/{workspace_id}").text
    seen["runs"] = api.get(f"/api/v2/workspaces/{workspace_id}/runs").text
    seen["outputs"] = api.get(
        f"/api/v2/workspaces/{workspace_id}/current-state-version-outputs"
    ).text
    seen["state"] = json.dumps(state_of(api, workspace_id))
    seen["server log"] = server.log_path.read_text(errors="replace")

    for where, text in seen.items():
        for secret in (tf_secret, env_secret):
            assert secret not in text, f"{secret!r} appears in {where}:\n{text}"
