"""The official Python SDK (pytfe 1.5.0) on run triggers, against a real server.

Every call goes through pytfe's ``run_triggers`` client: its request building (the
``sourceable`` relationship, the required ``filter[run-trigger][type]``) and its decoding
(``workspace-name``/``sourceable-name``, both relationships, ``created-at``), so a missing or
mistyped member shows up here as an exception or a wrong value.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pytfe import TFEClient
from pytfe.errors import NotFound, TFEError
from pytfe.models import (
    RunTriggerCreateOptions,
    RunTriggerFilterOp,
    RunTriggerListOptions,
    Workspace,
    WorkspaceCreateOptions,
)

from tests.e2e.harness import ServerInfo, request_counts

ORG = "default"
LIST_ROUTE = "/api/v2/workspaces/{workspace_id}/run-triggers"


@pytest.fixture
def workspaces(tfe: TFEClient) -> Iterator[list[Workspace]]:
    """Three fresh workspaces in the default organization, deleted afterwards."""
    suffix = secrets.token_hex(4)
    made = [
        tfe.workspaces.create(ORG, WorkspaceCreateOptions(name=f"e2e-rt-{name}-{suffix}"))
        for name in ("network", "app", "db")
    ]
    yield made
    for workspace in made:
        with contextlib.suppress(NotFound):
            tfe.workspaces.delete_by_id(workspace.id)


def inbound() -> RunTriggerListOptions:
    return RunTriggerListOptions(run_trigger_type=RunTriggerFilterOp.RUN_TRIGGER_INBOUND)


def outbound() -> RunTriggerListOptions:
    return RunTriggerListOptions(run_trigger_type=RunTriggerFilterOp.RUN_TRIGGER_OUTBOUND)


def test_run_triggers_create_list_read_delete(
    tfe: TFEClient, server: ServerInfo, workspaces: list[Workspace]
) -> None:
    network, app, db = workspaces
    before = datetime.now(UTC) - timedelta(minutes=1)
    to_app = tfe.run_triggers.create(app.id, RunTriggerCreateOptions(sourceable=network))
    assert to_app.id.startswith("rt-")
    assert (to_app.workspace_name, to_app.sourceable_name) == (app.name, network.name)
    assert to_app.workspace.id == app.id
    assert to_app.sourceable.id == network.id
    assert to_app.sourceable_choice.workspace.id == network.id
    assert before <= to_app.created_at <= datetime.now(UTC) + timedelta(minutes=1)
    to_db = tfe.run_triggers.create(
        db.id, RunTriggerCreateOptions(sourceable=Workspace.model_construct(id=network.id))
    )

    counts = request_counts(server)
    listed_in = list(tfe.run_triggers.list(app.id, inbound()))
    assert [(t.id, t.sourceable_name) for t in listed_in] == [(to_app.id, network.name)]
    listed_out = list(tfe.run_triggers.list(network.id, outbound()))
    assert {t.id for t in listed_out} == {to_app.id, to_db.id}
    assert {t.workspace_name for t in listed_out} == {app.name, db.name}
    assert list(tfe.run_triggers.list(network.id, inbound())) == []
    # One request per list: pytfe stops when meta.pagination has no next page.
    hits = request_counts(server) - counts
    assert hits.get("GET", LIST_ROUTE, 200) == 3, str(hits)

    read = tfe.run_triggers.read(to_app.id)
    assert (read.id, read.workspace.id, read.sourceable.id) == (to_app.id, app.id, network.id)
    assert read.created_at == to_app.created_at

    tfe.run_triggers.delete(to_app.id)
    with pytest.raises(NotFound):
        tfe.run_triggers.read(to_app.id)
    with pytest.raises(NotFound):
        tfe.run_triggers.delete(to_app.id)
    assert list(tfe.run_triggers.list(app.id, inbound())) == []
    assert [t.id for t in tfe.run_triggers.list(network.id, outbound())] == [to_db.id]


def test_run_trigger_refusals_reach_pytfe(
    tfe: TFEClient, server: ServerInfo, workspaces: list[Workspace]
) -> None:
    network, app, _ = workspaces
    with pytest.raises(TFEError) as itself:
        tfe.run_triggers.create(app.id, RunTriggerCreateOptions(sourceable=app))
    assert itself.value.status == 422
    assert "its own run trigger source" in str(itself.value)

    tfe.run_triggers.create(app.id, RunTriggerCreateOptions(sourceable=network))
    with pytest.raises(TFEError) as twice:
        tfe.run_triggers.create(app.id, RunTriggerCreateOptions(sourceable=network))
    assert twice.value.status == 422
    assert "already has a run trigger" in str(twice.value)

    with pytest.raises(NotFound):
        tfe.run_triggers.create(
            app.id,
            RunTriggerCreateOptions(sourceable=Workspace.model_construct(id="ws-AAAAAAAAAAAAAAAA")),
        )


def test_listing_without_the_filter_is_refused(server: ServerInfo) -> None:
    """pytfe always sends the filter; a raw client that leaves it out is told to."""
    with server.http(server.admin_token) as client:
        ws = client.post(
            f"/api/v2/organizations/{ORG}/workspaces",
            json={
                "data": {
                    "type": "workspaces",
                    "attributes": {"name": f"e2e-rt-raw-{secrets.token_hex(4)}"},
                }
            },
        )
        assert ws.status_code == 201, ws.text
        workspace_id = ws.json()["data"]["id"]
        try:
            r: httpx.Response = client.get(f"/api/v2/workspaces/{workspace_id}/run-triggers")
            assert r.status_code == 422, r.text
            assert "filter[run-trigger][type]" in r.json()["errors"][0]["detail"]
        finally:
            client.delete(f"/api/v2/workspaces/{workspace_id}")
