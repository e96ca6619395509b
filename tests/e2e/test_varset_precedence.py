"""Variable precedence in a real remote run: the real Terraform CLI (``cloud {}`` block)
plans on Terrapod's built-in agent in a workspace where one variable, ``size``, is set by a
run variable (``-var``), a priority variable set, the workspace itself, a variable set applied
to the workspace and a global variable set. The configuration outputs ``var.size``, so the
plan Terraform prints shows which value won; removing the winner one at a time proves each
step of HCP Terraform's order: priority set > run variable > workspace variable > applied
set > global set.

Each test has its own organization, so its global set reaches no other test's workspace.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.harness import (
    ServerInfo,
    Terraform,
    describe,
    ensure_organization,
    output_of,
    write_cloud_config,
)

CONFIGURATION = """
variable "size" {
  type = string
}

output "size" {
  value = var.size
}
"""
PLANNED_SIZE = re.compile(r'\+ size\s*=\s*"([^"]*)"')


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _size_set(api: httpx.Client, org: str, name: str, value: str, **kw: Any) -> dict[str, Any]:
    workspaces = kw.pop("workspaces", [])
    return _created(
        api.post(
            f"/api/v2/organizations/{org}/varsets",
            json={
                "data": {
                    "type": "varsets",
                    "attributes": {"name": name, **kw},
                    "relationships": {
                        "workspaces": {
                            "data": [{"type": "workspaces", "id": w} for w in workspaces]
                        },
                        "vars": {
                            "data": [
                                {
                                    "type": "vars",
                                    "attributes": {
                                        "key": "size",
                                        "value": value,
                                        "category": "terraform",
                                    },
                                }
                            ]
                        },
                    },
                }
            },
        )
    )


def planned_size(terraform: Terraform, cwd: Path, *args: str) -> str:
    """Run a remote ``terraform plan`` and return the value it plans for ``output.size``."""
    result = terraform.run(["plan", "-no-color", "-input=false", *args], cwd)
    assert result.returncode == 0, describe(result)
    found = PLANNED_SIZE.findall(output_of(result))
    assert len(found) == 1, describe(result)
    return str(found[0])


def test_priority_set_beats_run_variable_beats_workspace_beats_sets(
    server: ServerInfo, terraform: Terraform, tmp_path: Path
) -> None:
    org = f"varsets-{secrets.token_hex(4)}"
    ensure_organization(server, org)
    name = f"precedence-{secrets.token_hex(4)}"
    write_cloud_config(
        tmp_path,
        hostname=server.hostname,
        organization=org,
        workspace=name,
        resources=CONFIGURATION,
    )
    init = terraform.run(["init", "-no-color", "-input=false"], tmp_path)
    assert init.returncode == 0, describe(init)

    with server.http(server.admin_token) as api:
        ws = api.get(f"/api/v2/organizations/{org}/workspaces/{name}").json()["data"]
        assert ws["attributes"]["execution-mode"] == "remote"
        ws_id = ws["id"]
        _size_set(api, org, "everywhere", "global", **{"global": True})
        applied = _size_set(api, org, "applied", "applied", workspaces=[ws_id])
        workspace_var = _created(
            api.post(
                f"/api/v2/workspaces/{ws_id}/vars",
                json={
                    "data": {
                        "type": "vars",
                        "attributes": {
                            "key": "size",
                            "value": "workspace",
                            "category": "terraform",
                        },
                    }
                },
            )
        )
        priority = _size_set(api, org, "enforced", "priority", workspaces=[ws_id], priority=True)

        # 1. The priority set wins over everything, a run variable included.
        assert planned_size(terraform, tmp_path, "-var", "size=run") == "priority"
        assert planned_size(terraform, tmp_path) == "priority"
        # 2. Without the priority set, a run variable wins over the workspace's own.
        assert api.delete(f"/api/v2/varsets/{priority['id']}").status_code == 204
        assert planned_size(terraform, tmp_path, "-var", "size=run") == "run"
        # 3. Without one, the workspace variable wins over the sets.
        assert planned_size(terraform, tmp_path) == "workspace"
        # 4. Without it, the set applied to the workspace wins over the global set.
        response = api.delete(f"/api/v2/workspaces/{ws_id}/vars/{workspace_var['id']}")
        assert response.status_code == 204
        assert planned_size(terraform, tmp_path) == "applied"
        # 5. Removed from the workspace, the global set is what is left.
        response = api.request(
            "DELETE",
            f"/api/v2/varsets/{applied['id']}/relationships/workspaces",
            json={"data": [{"type": "workspaces", "id": ws_id}]},
        )
        assert response.status_code == 204
        assert planned_size(terraform, tmp_path) == "global"
