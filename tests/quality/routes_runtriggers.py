"""This domain's part of the reviewed route table (see tests/quality/routes.py)."""

from __future__ import annotations

from tests.quality.routes import WS, Route

# The world's "other" workspace is not a source of "main" yet.
CREATE_BODY = {
    "data": {
        "type": "run-triggers",
        "relationships": {
            "sourceable": {"data": {"type": "workspaces", "id": "{other_workspace_id}"}}
        },
    }
}

ROUTES: tuple[Route, ...] = (
    Route("POST", WS + "/run-triggers", "owner", body=CREATE_BODY),
    # "main" has two inbound triggers (world_runtriggers), so a page of one is a real page.
    Route(
        "GET",
        WS + "/run-triggers",
        "member",
        is_list=True,
        extra={"query": {"filter[run-trigger][type]": "inbound"}},
    ),
    Route("GET", "/api/v2/run-triggers/{run_trigger_id}", "member"),
    Route("DELETE", "/api/v2/run-triggers/{run_trigger_id}", "owner"),
)
