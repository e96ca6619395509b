"""``terraform init`` with a ``cloud {}`` block, by the real CLI over TLS.

A successful init proves that discovery, ping and the entitlement set satisfy Terraform, and
that a workspace named in the ``cloud {}`` block is created when it does not exist yet (the
CLI looks it up, creates it with ``POST``, then ``PATCH``es its ``terraform-version``). A wrong
organization or a bad token fail where and how Terraform users expect.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from tests.e2e.harness import (
    RequestCounts,
    ServerInfo,
    Terraform,
    describe,
    output_of,
    write_cloud_config,
)
from tests.e2e.test_state_backend import settled_counts

DISCOVERY = "/.well-known/terraform.json"
PING = "/api/v2/ping"
ENTITLEMENTS = "/api/v2/organizations/{name}/entitlement-set"
WORKSPACE_BY_NAME = "/api/v2/organizations/{org_name}/workspaces/{name}"
WORKSPACES = "/api/v2/organizations/{org_name}/workspaces"
WORKSPACE = "/api/v2/workspaces/{workspace_id}"
CURRENT_STATE = "/api/v2/workspaces/{workspace_id}/current-state-version"

TERRAFORM_VERSION = "1.15.5"


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def init(
    terraform: Terraform,
    server: ServerInfo,
    workdir: Path,
    organization: str,
    workspace: str | None = None,
) -> tuple[subprocess.CompletedProcess[str], RequestCounts]:
    """Run ``terraform init`` on a cloud config for ``workspace`` (a fresh name by default);
    return it and the requests it made."""
    write_cloud_config(
        workdir,
        hostname=server.hostname,
        organization=organization,
        workspace=workspace or unique("ws-init"),
    )
    before = settled_counts(server)
    result = terraform.run(["init", "-no-color"], workdir)
    return result, settled_counts(server) - before


def assert_handshake_succeeded(
    result: subprocess.CompletedProcess[str], hits: RequestCounts
) -> None:
    context = f"{describe(result)}\n--- requests ---\n{hits}"
    assert hits.get("GET", DISCOVERY, 200) >= 1, context
    assert hits.get("GET", PING, 200) >= 1, context
    assert hits.get("GET", ENTITLEMENTS, 200) >= 1, context
    assert not [k for k in hits.counts if k[2].startswith("5")], context


def read_workspace(server: ServerInfo, organization: str, name: str) -> dict[str, object]:
    with server.http(server.admin_token) as client:
        response = client.get(f"/api/v2/organizations/{organization}/workspaces/{name}")
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


def test_init_creates_the_missing_workspace(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    name = unique("ws-created")
    with server.http(server.admin_token) as client:
        assert client.get(f"/api/v2/organizations/default/workspaces/{name}").status_code == 404

    result, hits = init(terraform, server, tmp_path / "cfg", "default", name)

    context = f"{describe(result)}\n--- requests ---\n{hits}"
    assert_handshake_succeeded(result, hits)
    assert result.returncode == 0, context
    text = output_of(result)
    assert "Initializing HCP Terraform..." in text, context
    assert "HCP Terraform has been successfully initialized!" in text, context
    # Look up (404), create, then set the workspace's Terraform version to the CLI's own.
    assert hits.get("GET", WORKSPACE_BY_NAME, 404) == 1, context
    assert hits.get("POST", WORKSPACES, 201) == 1, context
    assert hits.get("PATCH", WORKSPACE, 200) == 1, context
    # A brand-new workspace has no state yet.
    assert hits.get("GET", CURRENT_STATE, 404) == 1, context
    assert hits.for_route(WORKSPACES).keys() == {("POST", "201")}, context

    workspace = read_workspace(server, "default", name)
    attributes = workspace["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["name"] == name
    assert attributes["terraform-version"] == TERRAFORM_VERSION
    assert attributes["locked"] is False
    assert attributes["resource-count"] == 0
    relationships = workspace["relationships"]
    assert isinstance(relationships, dict)
    assert relationships["current-state-version"] == {"data": None}
    assert relationships["organization"] == {"data": {"type": "organizations", "id": "default"}}


def test_second_init_finds_the_workspace_instead_of_creating_it(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    name = unique("ws-reinit")
    first, _ = init(terraform, server, tmp_path / "first", "default", name)
    assert first.returncode == 0, describe(first)
    created = read_workspace(server, "default", name)

    # Another checkout of the same configuration (its own .terraform directory).
    second, hits = init(terraform, server, tmp_path / "second", "default", name)

    context = f"{describe(second)}\n--- requests ---\n{hits}"
    assert_handshake_succeeded(second, hits)
    assert second.returncode == 0, context
    assert hits.get("GET", WORKSPACE_BY_NAME, 200) >= 1, context
    assert hits.get("GET", WORKSPACE_BY_NAME, 404) == 0, context
    assert hits.get("POST", WORKSPACES, 201) == 0, context
    assert hits.for_route(WORKSPACE) == {}, context
    assert read_workspace(server, "default", name)["id"] == created["id"]


def test_token_from_environment_works_like_the_credentials_file(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    from_file, file_hits = init(terraform, server, tmp_path / "file", "default")
    via_env = terraform.with_token(server.admin_token, via="env")
    assert "credentials" not in via_env.cli_config.read_text()
    from_env, env_hits = init(via_env, server, tmp_path / "env", "default")

    assert_handshake_succeeded(from_env, env_hits)
    assert from_env.returncode == from_file.returncode == 0, describe(from_env)
    assert output_of(from_env) == output_of(from_file)
    # Each created its own workspace the same way.
    assert env_hits == file_hits, f"file:\n{file_hits}\nenv:\n{env_hits}"


def test_init_against_unknown_organization_fails_on_the_organization(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    organization = f"no-such-org-{secrets.token_hex(3)}"
    workspace = unique("ws-nowhere")
    result, hits = init(terraform, server, tmp_path / "cfg", organization, workspace)

    assert result.returncode == 1, describe(result)
    assert hits.get("GET", PING, 200) >= 1, hits
    assert hits.get("GET", ENTITLEMENTS, 404) >= 1, hits
    assert hits.for_route(WORKSPACES) == {}, hits
    assert hits.for_route(WORKSPACE_BY_NAME) == {}, hits
    text = output_of(result)
    assert f'organization "{organization}" at host {server.hostname} not found' in text, describe(
        result
    )
    assert workspace not in text, describe(result)


def test_init_with_bad_token_fails_as_unauthorized(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    impostor = terraform.with_token("tpod.not-a-real-token-" + secrets.token_hex(16))
    result, hits = init(impostor, server, tmp_path / "cfg", "default")

    assert result.returncode == 1, describe(result)
    assert hits.get("GET", ENTITLEMENTS, 401) >= 1, hits
    assert hits.get("GET", ENTITLEMENTS, 200) == 0, hits
    assert hits.for_route(WORKSPACES) == {}, hits
    text = output_of(result)
    assert f'Failed to read organization "default" at host {server.hostname}' in text, describe(
        result
    )
    assert "unauthorized" in text, describe(result)


def test_init_without_token_asks_for_login_before_calling_the_api(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    anonymous = terraform.with_token(None)
    result, hits = init(anonymous, server, tmp_path / "cfg", "default")

    assert result.returncode == 1, describe(result)
    text = output_of(result)
    assert "Required token could not be found" in text, describe(result)
    assert f"terraform login {server.hostname}" in text, describe(result)
    assert hits.get("GET", ENTITLEMENTS, 200) == 0, hits
