"""The official Python SDK (pytfe 1.5.0) on variable sets, against a real server.

Every call goes through pytfe's own request building and response decoding
(``tfe.variable_sets``, ``tfe.variable_set_variables``), so a missing or mistyped attribute,
a wrong ``type`` or broken pagination shows up here as an exception or a wrong value.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
from pytfe import TFEClient
from pytfe.errors import NotFound, TFEError
from pytfe.models import (
    CategoryType,
    VariableSetApplyToWorkspacesOptions,
    VariableSetCreateOptions,
    VariableSetListOptions,
    VariableSetRemoveFromWorkspacesOptions,
    VariableSetUpdateOptions,
    VariableSetUpdateWorkspacesOptions,
    VariableSetVariableCreateOptions,
    VariableSetVariableUpdateOptions,
    Workspace,
    WorkspaceCreateOptions,
)

from tests.e2e.harness import ServerInfo

ORG = "default"
SECRET = "pytfe-varset-secret-value"


@pytest.fixture
def workspaces(tfe: TFEClient) -> Iterator[list[str]]:
    """Two fresh workspaces in the default organization, deleted afterwards."""
    suffix = secrets.token_hex(4)
    ids = [
        str(tfe.workspaces.create(ORG, WorkspaceCreateOptions(name=f"e2e-vs-{n}-{suffix}")).id)
        for n in ("a", "b")
    ]
    yield ids
    for workspace_id in ids:
        with contextlib.suppress(NotFound):
            tfe.workspaces.delete_by_id(workspace_id)


def _ws(workspace_id: str) -> Workspace:
    return Workspace.model_construct(id=workspace_id)


def test_variable_sets_create_list_read_update_apply_delete(
    tfe: TFEClient, workspaces: list[str]
) -> None:
    name = f"e2e-set-{secrets.token_hex(4)}"
    created = tfe.variable_sets.create(
        ORG,
        VariableSetCreateOptions(name=name, description="shared", global_=False, priority=True),
    )
    assert created.id is not None and created.id.startswith("varset-")
    assert (created.name, created.description, created.global_, created.priority) == (
        name,
        "shared",
        False,
        True,
    )
    assert created.created_at is not None and created.updated_at is not None
    assert created.parent is not None and created.parent.organization is not None
    assert created.parent.organization.id == ORG

    # Listed (pytfe pages through meta.pagination), found by q, read by id.
    listed = list(tfe.variable_sets.list(ORG, VariableSetListOptions(page_size=1)))
    assert created.id in [s.id for s in listed]
    found = list(tfe.variable_sets.list(ORG, VariableSetListOptions(query=name.upper())))
    assert [s.id for s in found] == [created.id]
    read = tfe.variable_sets.read(created.id)
    assert (read.name, read.priority, read.workspaces) == (name, True, [])

    updated = tfe.variable_sets.update(
        created.id, VariableSetUpdateOptions(description="changed", priority=False)
    )
    assert (updated.description, updated.priority, updated.name) == ("changed", False, name)

    a, b = workspaces
    tfe.variable_sets.apply_to_workspaces(
        created.id, VariableSetApplyToWorkspacesOptions(workspaces=[_ws(a), _ws(b)])
    )
    tfe.variable_sets.apply_to_workspaces(  # again: nothing changes
        created.id, VariableSetApplyToWorkspacesOptions(workspaces=[_ws(a)])
    )
    assert sorted(str(w.id) for w in tfe.variable_sets.read(created.id).workspaces) == sorted(
        [a, b]
    )
    assert created.id in [s.id for s in tfe.variable_sets.list_for_workspace(a)]
    tfe.variable_sets.remove_from_workspaces(
        created.id, VariableSetRemoveFromWorkspacesOptions(workspaces=[_ws(a)])
    )
    assert created.id not in [s.id for s in tfe.variable_sets.list_for_workspace(a)]
    assert [str(w.id) for w in tfe.variable_sets.read(created.id).workspaces] == [b]

    # update_workspaces: global false and the complete list, in one PATCH.
    replaced = tfe.variable_sets.update_workspaces(
        created.id, VariableSetUpdateWorkspacesOptions(workspaces=[_ws(a)])
    )
    assert [str(w.id) for w in replaced.workspaces] == [a]

    tfe.variable_sets.delete(created.id)
    with pytest.raises(NotFound):
        tfe.variable_sets.read(created.id)


def test_global_set_is_listed_for_every_workspace(tfe: TFEClient, workspaces: list[str]) -> None:
    created = tfe.variable_sets.create(
        ORG, VariableSetCreateOptions(name=f"e2e-global-{secrets.token_hex(4)}", global_=True)
    )
    assert created.id is not None
    try:
        for workspace_id in workspaces:
            assert created.id in [s.id for s in tfe.variable_sets.list_for_workspace(workspace_id)]
        # A global set has no workspace list to change.
        with pytest.raises(TFEError):
            tfe.variable_sets.apply_to_workspaces(
                created.id,
                VariableSetApplyToWorkspacesOptions(workspaces=[_ws(workspaces[0])]),
            )
    finally:
        tfe.variable_sets.delete(created.id)


def test_variable_set_variables_crud(
    tfe: TFEClient, server: ServerInfo, workspaces: list[str]
) -> None:
    varset = tfe.variable_sets.create(
        ORG, VariableSetCreateOptions(name=f"e2e-vars-{secrets.token_hex(4)}", global_=False)
    )
    assert varset.id is not None
    try:
        region = tfe.variable_set_variables.create(
            varset.id,
            VariableSetVariableCreateOptions(
                key="region",
                value="eu-west-1",
                description="where",
                category=CategoryType.TERRAFORM,
            ),
        )
        assert region.id is not None and region.id.startswith("var-")
        assert (region.key, region.value, region.description) == ("region", "eu-west-1", "where")
        assert region.category is CategoryType.TERRAFORM and region.hcl is False
        assert region.variable_set is not None and region.variable_set.id == varset.id
        token = tfe.variable_set_variables.create(
            varset.id,
            VariableSetVariableCreateOptions(
                key="API_TOKEN", value=SECRET, category=CategoryType.ENV, sensitive=True
            ),
        )
        assert token.sensitive is True and token.value in (None, "")

        listed = list(tfe.variable_set_variables.list(varset.id))
        assert [(v.key, v.category) for v in listed] == [
            ("region", CategoryType.TERRAFORM),
            ("API_TOKEN", CategoryType.ENV),
        ]
        assert all(v.value != SECRET for v in listed)
        read = tfe.variable_set_variables.read(varset.id, region.id)
        assert read.value == "eu-west-1"

        updated = tfe.variable_set_variables.update(
            varset.id, region.id, VariableSetVariableUpdateOptions(value="eu-north-1", hcl=False)
        )
        assert updated.value == "eu-north-1"
        assert updated.version_id is not None and updated.version_id != region.version_id

        with pytest.raises(TFEError):  # the key rules of workspace variables
            tfe.variable_set_variables.create(
                varset.id,
                VariableSetVariableCreateOptions(key="1bad", category=CategoryType.TERRAFORM),
            )

        # The set's counts and relationships follow.
        shown = tfe.variable_sets.read(varset.id)
        assert sorted(str(v.id) for v in shown.vars) == sorted([str(region.id), str(token.id)])

        tfe.variable_set_variables.delete(varset.id, region.id)
        with pytest.raises(NotFound):
            tfe.variable_set_variables.read(varset.id, region.id)
        assert [v.key for v in tfe.variable_set_variables.list(varset.id)] == ["API_TOKEN"]

        # Applied to a workspace, the set's variables are in its all-vars (go-tfe ListAll).
        tfe.variable_sets.apply_to_workspaces(
            varset.id, VariableSetApplyToWorkspacesOptions(workspaces=[_ws(workspaces[0])])
        )
        with server.http(server.admin_token) as api:
            body = api.get(f"/api/v2/workspaces/{workspaces[0]}/all-vars").json()
        assert [v["attributes"]["key"] for v in body["data"]] == ["API_TOKEN"]
        assert body["data"][0]["attributes"]["value"] is None
    finally:
        tfe.variable_sets.delete(varset.id)
    assert SECRET not in server.log_path.read_text()
