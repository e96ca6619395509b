"""This domain's part of the reviewed route table (see tests/quality/routes.py)."""

from __future__ import annotations

from tests.quality.routes import WS, Route

ACTION = "/api/v2/terraform-actions/{action_id}"
# The world's "actions-ws" holds two actions and a run that invoked them (world_actions).
IN_WORKSPACE = {"use": {"workspace_id": "actions_workspace_id"}}
IN_RUN = {"use": {"run_id": "actions_run_id"}}

ROUTES: tuple[Route, ...] = (
    Route("GET", WS + "/terraform-actions", "member", is_list=True, extra=IN_WORKSPACE),
    Route("GET", WS + "/terraform-actions/filter-options", "member", extra=IN_WORKSPACE),
    Route("GET", ACTION, "member"),
    Route("GET", ACTION + "/invocations/run-summary", "member", is_list=True),
    Route("GET", ACTION + "/invocations/filter-options", "member"),
    Route("GET", ACTION + "/runs/{run_id}/invocations", "member", is_list=True, extra=IN_RUN),
    Route(
        "GET",
        ACTION + "/runs/{run_id}/invocations/lifecycle-resource-groups",
        "member",
        is_list=True,
        extra=IN_RUN,
    ),
)
