"""The official Python SDK (pytfe 1.5.0) on agent pools and agent tokens, against a real
server: pytfe's request building (``organization-scoped``, the ``allowed-workspaces``
relationship, ``q``) and its decoding (``agent-count``, ``organization-scoped``, the
relationships, the token shown once); the organization's default agent pool
(``update_default_settings`` sends ``default-agent-pool-id``; reads take the
``default-agent-pool`` relationship)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
from pytfe import TFEClient
from pytfe.errors import NotFound
from pytfe.models import (
    AgentPoolAssignToWorkspacesOptions,
    AgentPoolCreateOptions,
    AgentPoolListOptions,
    AgentPoolUpdateOptions,
    AgentTokenCreateOptions,
    OrganizationDefaultSettingsUpdateOptions,
    OrganizationUpdateOptions,
    WorkspaceCreateOptions,
)

from tests.e2e.harness import ServerInfo

ORG = "default"


@pytest.fixture
def workspace_id(tfe: TFEClient) -> Iterator[str]:
    ws = tfe.workspaces.create(ORG, WorkspaceCreateOptions(name=f"e2e-ap-{secrets.token_hex(4)}"))
    yield ws.id
    with contextlib.suppress(NotFound):
        tfe.workspaces.delete_by_id(ws.id)


def test_agent_pool_create_list_update_tokens_delete(
    tfe: TFEClient, server: ServerInfo, workspace_id: str
) -> None:
    name = f"e2e-pool-{secrets.token_hex(4)}"
    pool = tfe.agent_pools.create(ORG, AgentPoolCreateOptions(name=name))
    assert pool.id.startswith("apool-")
    assert (pool.name, pool.organization_scoped, pool.agent_count) == (name, True, 0)
    assert pool.created_at is not None

    listed = list(tfe.agent_pools.list(ORG, AgentPoolListOptions(query=name)))
    assert [p.id for p in listed] == [pool.id]
    assert tfe.agent_pools.read(pool.id).name == name

    scoped = tfe.agent_pools.update(
        pool.id, AgentPoolUpdateOptions(name=name + "-x", organization_scoped=False)
    )
    assert (scoped.name, scoped.organization_scoped) == (name + "-x", False)
    assigned = tfe.agent_pools.assign_to_workspaces(
        pool.id, AgentPoolAssignToWorkspacesOptions(workspace_ids=[workspace_id])
    )
    assert [w.id for w in assigned.allowed_workspaces] == [workspace_id]

    token = tfe.agent_tokens.create(pool.id, AgentTokenCreateOptions(description="e2e host"))
    assert token.token and token.description == "e2e host"
    tokens = list(tfe.agent_tokens.list(pool.id))
    assert [t.id for t in tokens] == [token.id]
    assert tokens[0].token is None
    assert tfe.agent_tokens.read(token.id).description == "e2e host"
    # The agent token joins agents only: the API refuses it.
    with server.http(token.token) as raw:
        assert raw.get("/api/v2/account/details").status_code == 401
    tfe.agent_tokens.delete(token.id)
    assert list(tfe.agent_tokens.list(pool.id)) == []

    tfe.agent_pools.delete(pool.id)
    with pytest.raises(NotFound):
        tfe.agent_pools.read(pool.id)


def test_organization_default_agent_pool(tfe: TFEClient) -> None:
    pool = tfe.agent_pools.create(
        ORG, AgentPoolCreateOptions(name=f"e2e-default-{secrets.token_hex(4)}")
    )
    workspace = None
    try:
        settings = tfe.organizations.update_default_settings(
            ORG,
            OrganizationDefaultSettingsUpdateOptions(  # type: ignore[call-arg]
                default_execution_mode="agent", default_agent_pool_id=pool.id
            ),
        )
        assert (settings.default_execution_mode, settings.default_agent_pool_id) == (
            "agent",
            pool.id,
        )
        read = tfe.organizations.read_default_settings(ORG)
        assert read.default_agent_pool_id == pool.id
        assert tfe.organizations.read(ORG).default_agent_pool == {"id": pool.id}
        # The general update sends the same attribute.
        org = tfe.organizations.update(
            ORG,
            OrganizationUpdateOptions(  # type: ignore[call-arg]
                default_execution_mode="agent", default_agent_pool_id=pool.id
            ),
        )
        assert org.default_execution_mode == "agent"
        # A new workspace takes the organization's mode and pool.
        workspace = tfe.workspaces.create(
            ORG, WorkspaceCreateOptions(name=f"e2e-dflt-{secrets.token_hex(4)}")
        )
        assert workspace.execution_mode == "agent"
        assert workspace.agent_pool is not None and workspace.agent_pool.id == pool.id
    finally:
        reset = tfe.organizations.reset_default_settings(ORG)
        assert (reset.default_execution_mode, reset.default_agent_pool_id) == ("remote", None)
        if workspace is not None:
            tfe.workspaces.delete_by_id(workspace.id)
        tfe.agent_pools.delete(pool.id)
