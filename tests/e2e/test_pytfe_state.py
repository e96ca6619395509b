"""The official Python SDK (pytfe 1.5.0) on workspaces, locks, state versions and their
outputs, against a real server.

Every call goes through pytfe's own request building and response decoding (pydantic models,
JSON:API relationship parsing), so a missing or mistyped attribute shows up as an exception
or a wrong value here. Raw requests appear only where pytfe cannot do the step at all.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pytfe import TFEClient
from pytfe.errors import NotFound, TFEError
from pytfe.models import (
    ExecutionMode,
    StateVersionCreateOptions,
    StateVersionListOptions,
    StateVersionOutputsListOptions,
    StateVersionReadOptions,
    Tag,
    WorkspaceAddTagsOptions,
    WorkspaceCreateOptions,
    WorkspaceListOptions,
    WorkspaceLockOptions,
    WorkspaceUpdateOptions,
)
from pytfe.models.state_version import StateVersionStatus

from tests.e2e.harness import ServerInfo

ORG = "default"
# What Terraform sends to lock a workspace (CLIENT_FACTS.md); used where pytfe cannot lock.
TERRAFORM_LOCK_BODY = {"data": {"type": "", "attributes": {"reason": "Locked by Terraform"}}}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def api(server: ServerInfo) -> Iterator[httpx.Client]:
    with server.http(server.admin_token) as client:
        yield client


@pytest.fixture
def workspace_id(tfe: TFEClient) -> Iterator[str]:
    """A fresh workspace in the default organization, deleted afterwards."""
    name = unique("e2e-pytfe-ws")
    created = tfe.workspaces.create(ORG, WorkspaceCreateOptions(name=name))
    yield created.id
    with contextlib.suppress(NotFound):
        tfe.workspaces.delete_by_id(created.id)


def admin_user_id(api: httpx.Client) -> str:
    user_id: str = api.get("/api/v2/account/details").json()["data"]["id"]
    return user_id


def raw_lock(api: httpx.Client, workspace_id: str) -> None:
    response = api.post(f"/api/v2/workspaces/{workspace_id}/actions/lock", json=TERRAFORM_LOCK_BODY)
    assert response.status_code == 200, response.text


def state_file(serial: int, lineage: str, outputs: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "version": 4,
            "terraform_version": "1.15.5",
            "serial": serial,
            "lineage": lineage,
            "outputs": outputs,
            "resources": [
                {
                    "mode": "managed",
                    "type": "terraform_data",
                    "name": "thing",
                    "provider": 'provider["terraform.io/builtin/terraform"]',
                    "instances": [
                        {
                            "schema_version": 0,
                            "attributes": {
                                "id": f"id-{serial}",
                                "input": None,
                                "output": None,
                                "triggers_replace": None,
                            },
                            "sensitive_attributes": [],
                        }
                    ],
                }
            ],
            "check_results": None,
        },
        indent=2,
    ).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------------------------
# Workspaces
# --------------------------------------------------------------------------------------------


def test_workspaces_create_read_list_update_delete(tfe: TFEClient) -> None:
    prefix = unique("e2e-pytfe")
    names = [f"{prefix}-{n}" for n in ("one", "two", "three")]
    created = {}
    for name in names:
        workspace = tfe.workspaces.create(
            ORG,
            WorkspaceCreateOptions(
                name=name,
                description=f"{name} made by pytfe",
                terraform_version="1.15.5",
                execution_mode=ExecutionMode.LOCAL,
                auto_apply=True,
                working_directory="infra/app",
                global_remote_state=False,
            ),
        )
        assert workspace.id.startswith("ws-")
        assert workspace.name == name
        assert workspace.description == f"{name} made by pytfe"
        assert workspace.terraform_version == "1.15.5"
        assert workspace.execution_mode is ExecutionMode.LOCAL
        assert workspace.operations is False
        assert workspace.auto_apply is True
        assert workspace.working_directory == "infra/app"
        assert workspace.locked is False
        assert workspace.resource_count == 0
        assert workspace.created_at is not None
        assert workspace.permissions is not None
        assert workspace.permissions.can_lock is True
        assert workspace.permissions.can_force_unlock is True
        assert workspace.permissions.can_force_delete is True
        assert workspace.organization is not None
        assert workspace.organization.id == ORG
        assert workspace.current_state_version is None
        assert workspace.locked_by is None
        created[name] = workspace

    first = created[names[0]]
    by_name = tfe.workspaces.read(names[0], organization=ORG)
    by_id = tfe.workspaces.read_by_id(first.id)
    for read in (by_name, by_id):
        assert (read.id, read.name, read.description) == (first.id, first.name, first.description)
        assert read.execution_mode is ExecutionMode.LOCAL
        assert read.created_at == first.created_at

    # search[name] matches a substring; pytfe pages through the result (page size 1 here).
    found = list(tfe.workspaces.list(ORG, WorkspaceListOptions(search=prefix)))
    assert sorted(w.name for w in found) == sorted(names)
    paged = list(tfe.workspaces.list(ORG, WorkspaceListOptions(search=prefix, page_size=1)))
    assert sorted(w.name for w in paged) == sorted(names)
    assert [w.name for w in tfe.workspaces.list(ORG, WorkspaceListOptions(search=names[1]))] == [
        names[1]
    ]

    # Tags, then search[tags].
    tag = unique("pytfe-tag")
    tfe.workspaces.add_tags(first.id, WorkspaceAddTagsOptions(tags=[Tag(name=tag)]))
    assert [t.name for t in tfe.workspaces.list_tags(first.id)] == [tag]
    tagged = list(tfe.workspaces.list(ORG, WorkspaceListOptions(tags=tag)))
    assert [w.name for w in tagged] == [names[0]]
    assert tagged[0].tag_names == [tag]

    # Updates by name and by id; a rename moves the by-name address.
    updated = tfe.workspaces.update(
        names[0], WorkspaceUpdateOptions(description="changed"), organization=ORG
    )
    assert updated.description == "changed"
    assert updated.auto_apply is True  # untouched attributes stay
    renamed_to = f"{prefix}-renamed"
    renamed = tfe.workspaces.update_by_id(
        first.id, WorkspaceUpdateOptions(name=renamed_to, auto_apply=False)
    )
    assert (renamed.id, renamed.name, renamed.auto_apply) == (first.id, renamed_to, False)
    assert tfe.workspaces.read(renamed_to, organization=ORG).id == first.id
    with pytest.raises(NotFound):
        tfe.workspaces.read(names[0], organization=ORG)

    # Four ways to delete.
    tfe.workspaces.safe_delete(renamed_to, organization=ORG)
    tfe.workspaces.safe_delete_by_id(created[names[1]].id)
    tfe.workspaces.delete(names[2], organization=ORG)
    for workspace in (first, created[names[1]], created[names[2]]):
        with pytest.raises(NotFound):
            tfe.workspaces.read_by_id(workspace.id)
    assert list(tfe.workspaces.list(ORG, WorkspaceListOptions(search=prefix))) == []

    leftover = tfe.workspaces.create(ORG, WorkspaceCreateOptions(name=f"{prefix}-last"))
    tfe.workspaces.delete_by_id(leftover.id)
    with pytest.raises(NotFound):
        tfe.workspaces.read_by_id(leftover.id)


def test_lock_with_pytfe(tfe: TFEClient, workspace_id: str, api: httpx.Client) -> None:
    locked = tfe.workspaces.lock(workspace_id, WorkspaceLockOptions(reason="maintenance"))
    assert locked.locked is True
    assert locked.locked_reason == "maintenance"
    assert locked.locked_by is not None
    assert locked.locked_by.user == admin_user_id(api)
    assert tfe.workspaces.unlock(workspace_id).locked is False


def test_unlock_and_force_unlock_with_pytfe(
    tfe: TFEClient, workspace_id: str, api: httpx.Client
) -> None:
    raw_lock(api, workspace_id)
    locked = tfe.workspaces.read_by_id(workspace_id)
    assert locked.locked is True
    assert locked.locked_reason == "Locked by Terraform"
    assert locked.locked_by is not None
    assert locked.locked_by.user == admin_user_id(api)
    # Locking twice is a conflict, also for the holder.
    again = api.post(f"/api/v2/workspaces/{workspace_id}/actions/lock", json=TERRAFORM_LOCK_BODY)
    assert again.status_code == 409, again.text

    unlocked = tfe.workspaces.unlock(workspace_id)
    assert unlocked.locked is False
    assert unlocked.locked_by is None
    assert unlocked.locked_reason == ""
    with pytest.raises(TFEError) as not_locked:
        tfe.workspaces.unlock(workspace_id)
    assert not_locked.value.status == 409

    raw_lock(api, workspace_id)
    forced = tfe.workspaces.force_unlock(workspace_id)
    assert forced.locked is False
    assert tfe.workspaces.read_by_id(workspace_id).locked is False
    with pytest.raises(TFEError) as nothing_to_force:
        tfe.workspaces.force_unlock(workspace_id)
    assert nothing_to_force.value.status == 409


# --------------------------------------------------------------------------------------------
# State versions and outputs
# --------------------------------------------------------------------------------------------


def test_state_versions_create_upload_read_list_download_rollback(
    tfe: TFEClient, workspace_id: str, api: httpx.Client
) -> None:
    lineage = f"pytfe-{secrets.token_hex(8)}"
    first_outputs = {
        "greeting": {"value": "hello", "type": "string"},
        "token": {"value": "t0p-s3cret", "type": "string", "sensitive": True},
    }
    first_raw = state_file(1, lineage, first_outputs)

    # Creating a state version needs the workspace lock.
    options = StateVersionCreateOptions(
        serial=1, md5=hashlib.md5(first_raw).hexdigest(), lineage=lineage, state=b64(first_raw)
    )
    with pytest.raises(TFEError) as unlocked:
        tfe.state_versions.create(workspace_id, options)
    assert unlocked.value.status == 409
    raw_lock(api, workspace_id)

    # Inline state (Terraform 1.0's way), addressed by workspace name.
    name = tfe.workspaces.read_by_id(workspace_id).name
    assert name is not None
    first = tfe.state_versions.create(name, options, organization=ORG)
    assert first.id.startswith("sv-")
    assert first.status is StateVersionStatus.FINALIZED
    assert first.serial == 1
    assert first.size == len(first_raw)
    assert first.terraform_version == "1.15.5"
    assert first.hosted_state_download_url
    assert first.hosted_state_upload_url is None
    assert first.resources == [
        {
            "name": "thing",
            "type": "terraform_data",
            "count": 1,
            "module": "root",
            "provider": 'provider["terraform.io/builtin/terraform"]',
        }
    ]

    # Signed-URL upload (Terraform 1.15's way): pytfe creates, PUTs both files, reads back.
    second_outputs = {
        "greeting": {"value": "hello again", "type": "string", "sensitive": False},
        "numbers": {"value": [1, 2], "type": ["list", "number"], "sensitive": False},
        "settings": {
            "value": {"on": True, "name": None},
            "type": ["object", {"on": "bool", "name": "string"}],
            "sensitive": False,
        },
    }
    second_raw = state_file(2, lineage, {})
    json_state = b'{"format_version":"1.0","terraform_version":"1.15.5","values":{}}'
    second = tfe.state_versions.upload(
        workspace_id,
        raw_state=second_raw,
        raw_json_state=json_state,
        options=StateVersionCreateOptions(
            serial=2,
            md5=hashlib.md5(second_raw).hexdigest(),
            lineage=lineage,
            json_state_outputs=b64(json.dumps(second_outputs).encode()),
        ),
    )
    assert second.status is StateVersionStatus.FINALIZED
    assert second.serial == 2
    assert second.hosted_state_upload_url is None
    assert second.hosted_json_state_upload_url is None
    assert second.hosted_json_state_download_url
    assert second.resources_processed is True

    read = tfe.state_versions.read(second.id)
    assert (read.id, read.serial, read.status) == (second.id, 2, StateVersionStatus.FINALIZED)
    assert read.created_at is not None
    with_outputs = tfe.state_versions.read_with_options(
        second.id, StateVersionReadOptions(include=["outputs"])
    )
    included = {o["attributes"]["name"] for o in with_outputs.included}
    assert included == {"greeting", "numbers", "settings"}
    related = {r["id"] for r in with_outputs.relationships["outputs"]["data"]}
    assert related == {o["id"] for o in with_outputs.included}

    current = tfe.state_versions.read_current(workspace_id)
    assert (current.id, current.serial) == (second.id, 2)
    workspace = tfe.workspaces.read_by_id(workspace_id)
    assert workspace.current_state_version is not None
    assert workspace.current_state_version.id == second.id
    assert workspace.resource_count == 1

    listed = list(
        tfe.state_versions.list(StateVersionListOptions(organization=ORG, workspace=name))
    )
    assert [(v.id, v.serial) for v in listed] == [(second.id, 2), (first.id, 1)]

    assert tfe.state_versions.download(first.id) == first_raw
    assert tfe.state_versions.download_current(workspace_id) == second_raw

    # Outputs of a given version; sensitive values are hidden in lists.
    first_listed = {o.name: o for o in tfe.state_versions.list_outputs(first.id)}
    assert set(first_listed) == {"greeting", "token"}
    assert (first_listed["greeting"].value, first_listed["greeting"].type) == ("hello", "string")
    assert first_listed["greeting"].detailed_type == "string"
    assert first_listed["token"].sensitive is True
    assert first_listed["token"].value is None
    revealed = tfe.state_version_outputs.read(first_listed["token"].id)
    assert (revealed.name, revealed.value, revealed.sensitive) == ("token", "t0p-s3cret", True)
    paged = list(
        tfe.state_versions.list_outputs(first.id, StateVersionOutputsListOptions(page_size=1))
    )
    assert [o.name for o in paged] == ["greeting", "token"]

    # The current version's outputs came from json-state-outputs, types included.
    outputs = {o.name: o for o in tfe.state_version_outputs.read_current(workspace_id)}
    assert set(outputs) == {"greeting", "numbers", "settings"}
    assert outputs["greeting"].value == "hello again"
    assert (outputs["numbers"].value, outputs["numbers"].type) == ([1, 2], "array")
    assert outputs["numbers"].detailed_type == ["list", "number"]
    assert outputs["settings"].value == {"on": True, "name": None}
    assert outputs["settings"].type == "object"
    assert outputs["settings"].detailed_type == ["object", {"on": "bool", "name": "string"}]
    assert tfe.state_version_outputs.read(outputs["numbers"].id).value == [1, 2]

    # Rollback copies version 1 into a new current version.
    rolled = tfe.state_versions.rollback(workspace_id, first.id)
    assert rolled.id not in (first.id, second.id)
    assert rolled.serial == 1
    assert rolled.relationships["rolled-back-from"]["data"]["id"] == first.id
    assert tfe.state_versions.read_current(workspace_id).id == rolled.id
    assert tfe.state_versions.download(rolled.id) == first_raw
    rolled_outputs = {o.name: o for o in tfe.state_version_outputs.read_current(workspace_id)}
    assert rolled_outputs["greeting"].value == "hello"
    assert tfe.state_version_outputs.read(rolled_outputs["token"].id).value == "t0p-s3cret"
    assert [v.id for v in tfe.state_versions.list(
        StateVersionListOptions(organization=ORG, workspace=name)
    )] == [rolled.id, second.id, first.id]  # fmt: skip

    assert tfe.workspaces.unlock(workspace_id).locked is False


def test_state_version_reads_for_missing_things_raise_not_found(
    tfe: TFEClient, workspace_id: str
) -> None:
    with pytest.raises(NotFound):
        tfe.state_versions.read_current(workspace_id)
    with pytest.raises(NotFound):
        tfe.state_versions.read("sv-doesnotexist0000")
    with pytest.raises(NotFound):
        tfe.state_version_outputs.read("wsout-doesnotexist00")
    with pytest.raises(NotFound):
        list(tfe.state_version_outputs.read_current(workspace_id))
    name = tfe.workspaces.read_by_id(workspace_id).name
    listed = tfe.state_versions.list(StateVersionListOptions(organization=ORG, workspace=name))
    assert list(listed) == []
