"""The official Python SDK (pytfe 1.5.0) on workspace variables, against a real server.

Every call goes through pytfe's own request building and response decoding, so a missing or
mistyped attribute shows up here as an exception or a wrong value. The server's log is read at
the end: a sensitive value must not appear in it.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import httpx
import pytest
from pytfe import TFEClient
from pytfe.errors import NotFound, TFEError
from pytfe.models import (
    CategoryType,
    VariableCreateOptions,
    VariableUpdateOptions,
    WorkspaceCreateOptions,
)

from tests.e2e.harness import ServerInfo, request_counts

ORG = "default"


@pytest.fixture
def api(server: ServerInfo) -> Iterator[httpx.Client]:
    with server.http(server.admin_token) as client:
        yield client


@pytest.fixture
def workspace_id(tfe: TFEClient) -> Iterator[str]:
    """A fresh workspace in the default organization, deleted afterwards."""
    created = tfe.workspaces.create(
        ORG, WorkspaceCreateOptions(name=f"e2e-vars-{secrets.token_hex(4)}")
    )
    yield created.id
    with contextlib.suppress(NotFound):
        tfe.workspaces.delete_by_id(created.id)


def test_variables_create_list_read_update_delete(
    tfe: TFEClient, server: ServerInfo, workspace_id: str
) -> None:
    region = tfe.variables.create(
        workspace_id,
        VariableCreateOptions(
            key="region",
            value="eu-west-1",
            description="where it runs",
            category=CategoryType.TERRAFORM,
        ),
    )
    assert region.id is not None and region.id.startswith("var-")
    assert (region.key, region.value, region.description) == (
        "region",
        "eu-west-1",
        "where it runs",
    )
    assert region.category is CategoryType.TERRAFORM
    assert (region.hcl, region.sensitive) == (False, False)

    tags = tfe.variables.create(
        workspace_id,
        VariableCreateOptions(
            key="tags", value='{ team = "core" }', category=CategoryType.TERRAFORM, hcl=True
        ),
    )
    assert tags.hcl is True and tags.value == '{ team = "core" }'
    log_level = tfe.variables.create(
        workspace_id,
        VariableCreateOptions(key="TF_LOG", value="INFO", category=CategoryType.ENV),
    )
    assert log_level.category is CategoryType.ENV

    before = request_counts(server)
    listed = list(tfe.variables.list(workspace_id))
    assert [(v.key, v.category, v.value) for v in listed] == [
        ("region", CategoryType.TERRAFORM, "eu-west-1"),
        ("tags", CategoryType.TERRAFORM, '{ team = "core" }'),
        ("TF_LOG", CategoryType.ENV, "INFO"),
    ]
    # Not paginated (as in TFE): one request for the whole list.
    route = "/api/v2/workspaces/{workspace_id}/vars"
    assert (request_counts(server) - before).for_route(route) == {("GET", "200"): 1.0}
    assert [v.id for v in tfe.variables.list_all(workspace_id)] == [v.id for v in listed]

    read = tfe.variables.read(workspace_id, region.id)
    assert (read.id, read.key, read.value, read.description) == (
        region.id,
        "region",
        "eu-west-1",
        "where it runs",
    )

    updated = tfe.variables.update(
        workspace_id,
        region.id,
        VariableUpdateOptions(key="aws_region", value="eu-central-1"),
    )
    assert (updated.key, updated.value) == ("aws_region", "eu-central-1")
    assert updated.description == "where it runs"  # untouched attributes stay
    moved = tfe.variables.update(
        workspace_id, tags.id, VariableUpdateOptions(category=CategoryType.ENV, hcl=False)
    )
    assert (moved.category, moved.hcl) == (CategoryType.ENV, False)

    tfe.variables.delete(workspace_id, region.id)
    with pytest.raises(NotFound):
        tfe.variables.read(workspace_id, region.id)
    with pytest.raises(NotFound):
        tfe.variables.delete(workspace_id, region.id)
    assert sorted(v.key for v in tfe.variables.list(workspace_id)) == ["TF_LOG", "tags"]


def test_sensitive_values_are_hidden_and_write_only(
    tfe: TFEClient, server: ServerInfo, api: httpx.Client, workspace_id: str
) -> None:
    secret = f"s3cr3t-{secrets.token_hex(8)}"
    created = tfe.variables.create(
        workspace_id,
        VariableCreateOptions(
            key="AWS_SECRET_ACCESS_KEY", value=secret, category=CategoryType.ENV, sensitive=True
        ),
    )
    assert created.sensitive is True and created.value is None
    assert [v.value for v in tfe.variables.list(workspace_id)] == [None]
    assert tfe.variables.read(workspace_id, created.id).value is None

    # Updated without a value: the value stays (and stays hidden).
    described = tfe.variables.update(
        workspace_id, created.id, VariableUpdateOptions(description="rotated monthly")
    )
    assert described.value is None and described.description == "rotated monthly"
    rotated = tfe.variables.update(
        workspace_id, created.id, VariableUpdateOptions(value=secret + "-2")
    )
    assert rotated.value is None and rotated.sensitive is True

    # It cannot be made non-sensitive again, and the refusal does not show the value.
    with pytest.raises(TFEError) as refused:
        tfe.variables.update(workspace_id, created.id, VariableUpdateOptions(sensitive=False))
    assert refused.value.status == 422
    assert "non-sensitive" in str(refused.value) and secret not in str(refused.value)
    assert tfe.variables.read(workspace_id, created.id).sensitive is True

    # A taken key is refused with TFE's wording.
    with pytest.raises(TFEError) as taken:
        tfe.variables.create(
            workspace_id,
            VariableCreateOptions(
                key="AWS_SECRET_ACCESS_KEY", value=secret, category=CategoryType.ENV
            ),
        )
    assert taken.value.status == 422 and "Key has already been taken" in str(taken.value)

    for response in (
        api.get(f"/api/v2/workspaces/{workspace_id}/vars"),
        api.get(f"/api/v2/workspaces/{workspace_id}/all-vars"),
        api.get(f"/api/v2/workspaces/{workspace_id}/vars/{created.id}"),
    ):
        assert response.status_code == 200 and secret not in response.text
    assert secret not in server.log_path.read_text(errors="replace")


def test_variables_of_a_missing_workspace_are_not_found(tfe: TFEClient) -> None:
    with pytest.raises(NotFound):
        list(tfe.variables.list("ws-AAAAAAAAAAAAAAAA"))
    with pytest.raises(NotFound):
        tfe.variables.create(
            "ws-AAAAAAAAAAAAAAAA",
            VariableCreateOptions(key="k", value="v", category=CategoryType.ENV),
        )
