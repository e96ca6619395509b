"""A run's own credential reaches its workspace's state and nothing else."""

from __future__ import annotations

import pytest

from terrapod.access.permissions import RUN_TOKEN_ACTIONS, Action, can
from terrapod.access.principal import Principal

RUN = Principal(kind="system", token_id=None, run_id="run-AAAAAAAAAAAAAAAA", workspace_id="ws-A")
SCOPE = {"organization_id": "org-A", "workspace_id": "ws-A"}


@pytest.mark.parametrize("action", sorted(RUN_TOKEN_ACTIONS))
def test_a_run_reads_and_writes_its_own_workspaces_state(action: Action) -> None:
    assert can(RUN, action, **SCOPE)


@pytest.mark.parametrize(
    "action",
    [
        Action.WS_UPDATE_VARIABLES,
        Action.WS_QUEUE_RUN,
        Action.WS_APPLY,
        Action.WS_UPDATE,
        Action.WS_DELETE,
        Action.WS_FORCE_UNLOCK,
        Action.WS_FORCE_CANCEL_RUN,
    ],
)
def test_a_run_may_do_nothing_else_in_its_workspace(action: Action) -> None:
    assert not can(RUN, action, **SCOPE)


def test_a_run_cannot_see_another_workspace() -> None:
    assert not can(RUN, Action.WS_READ_STATE, organization_id="org-A", workspace_id="ws-B")
