"""The official Python SDK (pytfe 1.5.0) on notification configurations, against a real
server: create, list, read, update, verify and delete through pytfe's own request building and
response decoding. The destination's host never resolves, so nothing leaves the machine:
verify records why it could not deliver."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
from pytfe import TFEClient
from pytfe.errors import NotFound, TFEError
from pytfe.models import (
    NotificationConfigurationCreateOptions,
    NotificationConfigurationUpdateOptions,
    NotificationDestinationType,
    NotificationTriggerType,
    WorkspaceCreateOptions,
)

from tests.e2e.harness import ServerInfo

URL = "https://hooks.example.invalid/terrapod"


@pytest.fixture
def workspace_id(tfe: TFEClient) -> Iterator[str]:
    created = tfe.workspaces.create(
        "default", WorkspaceCreateOptions(name=f"e2e-notify-{secrets.token_hex(4)}")
    )
    yield created.id
    with contextlib.suppress(NotFound):
        tfe.workspaces.delete_by_id(created.id)


def test_notification_configurations_through_pytfe(
    tfe: TFEClient, server: ServerInfo, workspace_id: str
) -> None:
    nc = tfe.notification_configurations
    created = nc.create(
        workspace_id,
        NotificationConfigurationCreateOptions(
            destination_type=NotificationDestinationType.GENERIC,
            enabled=True,
            name="pytfe-hook",
            url=URL,
            token="pytfe-secret",
            triggers=[NotificationTriggerType.CREATED, NotificationTriggerType.ERRORED],
        ),
    )
    assert created.id is not None and created.id.startswith("nc-")
    assert (created.name, created.destination_type, created.url) == ("pytfe-hook", "generic", URL)
    assert created.enabled is True and created.token is None
    assert created.triggers == [NotificationTriggerType.CREATED, NotificationTriggerType.ERRORED]
    assert created.created_at is not None and created.updated_at is not None

    second = nc.create(
        workspace_id,
        NotificationConfigurationCreateOptions(
            destination_type=NotificationDestinationType.SLACK,
            enabled=False,
            name="pytfe-chat",
            url="https://slack.example.invalid/services/x",
        ),
    )
    listed = list(nc.list(workspace_id))
    assert [c.id for c in listed] == [created.id, second.id]

    read = nc.read(created.id)
    assert read.name == "pytfe-hook" and read.triggers == created.triggers

    updated = nc.update(
        created.id,
        NotificationConfigurationUpdateOptions(
            name="renamed", enabled=False, triggers=[NotificationTriggerType.COMPLETED]
        ),
    )
    assert (updated.name, updated.enabled) == ("renamed", False)
    assert updated.triggers == [NotificationTriggerType.COMPLETED]

    verified = nc.verify(created.id)
    [response] = verified.delivery_responses
    assert response.successful == "false" and response.code is None
    assert response.url == URL and "does not resolve" in (response.body or "")
    assert response.sent_at is not None

    nc.delete(second.id)
    assert [c.id for c in nc.list(workspace_id)] == [created.id]
    with pytest.raises(TFEError):
        nc.read(second.id)
    assert "pytfe-secret" not in server.log_path.read_text()
