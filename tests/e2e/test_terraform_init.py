"""``terraform init`` with a ``cloud {}`` block, by the real CLI over TLS.

Workspaces are not served yet, so a successful handshake ends at the workspace lookup: these
tests prove that discovery, ping and the entitlement set satisfy Terraform, and that a wrong
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
    request_counts,
    write_cloud_config,
)

DISCOVERY = "/.well-known/terraform.json"
PING = "/api/v2/ping"
ENTITLEMENTS = "/api/v2/organizations/{name}/entitlement-set"


def init(
    terraform: Terraform, server: ServerInfo, workdir: Path, organization: str
) -> tuple[subprocess.CompletedProcess[str], RequestCounts]:
    """Run ``terraform init`` on a cloud config for ``ws-missing``; return it and its requests."""
    write_cloud_config(
        workdir, hostname=server.hostname, organization=organization, workspace="ws-missing"
    )
    before = request_counts(server)
    result = terraform.run(["init", "-no-color"], workdir)
    return result, request_counts(server) - before


def assert_handshake_succeeded(
    result: subprocess.CompletedProcess[str], hits: RequestCounts
) -> None:
    context = f"{describe(result)}\n--- requests ---\n{hits}"
    assert hits.get("GET", DISCOVERY, 200) >= 1, context
    assert hits.get("GET", PING, 200) >= 1, context
    assert hits.get("GET", ENTITLEMENTS, 200) >= 1, context
    assert not [k for k in hits.counts if k[2].startswith("5")], context


def test_init_gets_past_ping_and_entitlements_to_the_missing_workspace(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    result, hits = init(terraform, server, tmp_path / "cfg", "default")

    assert_handshake_succeeded(result, hits)
    assert result.returncode != 0, describe(result)
    text = output_of(result)
    assert "Initializing HCP Terraform..." in text, describe(result)
    # Terraform looks the workspace up, then tries to create it; both 404 until workspaces
    # are served. Once they are, this init succeeds and this test moves to the workspace suite.
    assert (
        "Error: Error loading state: error creating workspace ws-missing: resource not found"
        in text
    ), describe(result)
    # Nothing about the organization or the token went wrong.
    assert "Failed to read organization" not in text, describe(result)
    assert "unauthorized" not in text.lower(), describe(result)


def test_token_from_environment_works_like_the_credentials_file(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    from_file, file_hits = init(terraform, server, tmp_path / "file", "default")
    via_env = terraform.with_token(server.admin_token, via="env")
    assert "credentials" not in via_env.cli_config.read_text()
    from_env, env_hits = init(via_env, server, tmp_path / "env", "default")

    assert_handshake_succeeded(from_env, env_hits)
    assert from_env.returncode == from_file.returncode
    assert output_of(from_env) == output_of(from_file)
    assert env_hits == file_hits, f"file:\n{file_hits}\nenv:\n{env_hits}"


def test_init_against_unknown_organization_fails_on_the_organization(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    organization = f"no-such-org-{secrets.token_hex(3)}"
    result, hits = init(terraform, server, tmp_path / "cfg", organization)

    assert result.returncode == 1, describe(result)
    assert hits.get("GET", PING, 200) >= 1, hits
    assert hits.get("GET", ENTITLEMENTS, 404) >= 1, hits
    text = output_of(result)
    assert f'organization "{organization}" at host {server.hostname} not found' in text, describe(
        result
    )
    assert "ws-missing" not in text, describe(result)


def test_init_with_bad_token_fails_as_unauthorized(
    terraform: Terraform, server: ServerInfo, tmp_path: Path
) -> None:
    impostor = terraform.with_token("tpod.not-a-real-token-" + secrets.token_hex(16))
    result, hits = init(impostor, server, tmp_path / "cfg", "default")

    assert result.returncode == 1, describe(result)
    assert hits.get("GET", ENTITLEMENTS, 401) >= 1, hits
    assert hits.get("GET", ENTITLEMENTS, 200) == 0, hits
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
