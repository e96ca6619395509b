"""The reviewed route table: every route, who may call it, and how to call it well and badly.

The generic endpoint suite (test_endpoints.py) runs the same checks over every entry; the
snapshot test (test_route_table.py) fails when the application's routes and this table
disagree, so a new route cannot land without being described here.

``needs`` is the least access that succeeds:
  public        no token at all
  signed        a signed URL is the credential (no token)
  any           any valid token (principal-scoped, e.g. one's own account)
  self          the user the path names (or a platform admin)
  member        any role in the organization (workspace level read/plan/write)
  owner         organization owner (workspace level admin), or a platform admin
  platform      platform administrator only
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WS = "/api/v2/workspaces/{workspace_id}"
ORG_WS = "/api/v2/organizations/{org_name}/workspaces"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    needs: str
    # A valid body (None: the route takes none). The suite derives malformed bodies from it.
    body: dict[str, Any] | None = None
    # A paginated list: the suite checks meta.pagination and that its query count does
    # not grow with the page size.
    is_list: bool = False
    # Most SQL statements one call may make once the caller's token is cached.
    query_budget: int = 6
    # The request leaves the organization's other resources alone? (False: it deletes or
    # renames what later checks need, so it runs last in its own fresh world.)
    extra: dict[str, Any] = field(default_factory=dict)


def ws_body(**attrs: Any) -> dict[str, Any]:
    return {"data": {"type": "workspaces", "attributes": attrs}}


def org_body(**attrs: Any) -> dict[str, Any]:
    return {"data": {"type": "organizations", "attributes": attrs}}


TOKEN_BODY = {"data": {"type": "authentication-tokens", "attributes": {"description": "x"}}}
CONSUMERS_BODY = {"data": [{"type": "workspaces", "id": "{other_workspace_id}"}]}
ORG_RUN_PAGINATION = frozenset(
    {"current-page", "page-size", "prev-page", "next-page", "page-count"}
)
RUN_BODY = {
    "data": {
        "type": "runs",
        "attributes": {"message": "from the suite"},
        "relationships": {"workspace": {"data": {"type": "workspaces", "id": "{workspace_id}"}}},
    }
}
TAGS_BODY = {"data": [{"type": "tags", "attributes": {"name": "extra"}}]}

ROUTES: tuple[Route, ...] = (
    # discovery and operations
    Route("GET", "/.well-known/terraform.json", "public"),
    Route("GET", "/api/v2/ping", "public"),
    Route("GET", "/health", "public"),
    Route("GET", "/ready", "public"),
    Route("GET", "/metrics", "public"),
    Route("GET", "/docs", "public"),
    Route("GET", "/redoc", "public"),
    Route("GET", "/oauth/authorize", "public"),
    Route("POST", "/oauth/authorize", "public"),
    Route("POST", "/oauth/token", "public"),
    Route("GET", "/objects/{token}", "signed"),
    Route("PUT", "/objects/{token}", "signed"),
    # account, users and tokens
    Route("GET", "/api/v2/account/details", "any"),
    Route("GET", "/api/v2/users/{user_id}", "self"),
    Route("GET", "/api/v2/users/{user_id}/authentication-tokens", "self", is_list=True),
    Route("POST", "/api/v2/users/{user_id}/authentication-tokens", "self", body=TOKEN_BODY),
    Route("GET", "/api/v2/authentication-tokens/{token_id}", "self"),
    Route("DELETE", "/api/v2/authentication-tokens/{token_id}", "self"),
    # organizations
    Route("GET", "/api/v2/organizations", "any", is_list=True),
    Route(
        "POST", "/api/v2/organizations", "platform", body=org_body(name="fresh", email="a@b.test")
    ),
    Route("GET", "/api/v2/organizations/{name}", "member"),
    Route("PATCH", "/api/v2/organizations/{name}", "owner", body=org_body(email="new@b.test")),
    Route("DELETE", "/api/v2/organizations/{name}", "owner"),
    Route("GET", "/api/v2/organizations/{name}/entitlement-set", "member"),
    Route("GET", "/api/v2/organizations/{name}/authentication-token", "owner"),
    Route("POST", "/api/v2/organizations/{name}/authentication-token", "owner", body=TOKEN_BODY),
    Route("DELETE", "/api/v2/organizations/{name}/authentication-token", "owner"),
    # workspaces
    Route("GET", ORG_WS, "member", is_list=True),
    Route("POST", ORG_WS, "member", body=ws_body(name="created")),
    Route("GET", ORG_WS + "/{name}", "member"),
    Route("PATCH", ORG_WS + "/{name}", "owner", body=ws_body(description="d")),
    Route("DELETE", ORG_WS + "/{name}", "owner"),
    Route("POST", ORG_WS + "/{name}/actions/safe-delete", "owner", extra={"empty_workspace": True}),
    Route("GET", WS, "member"),
    Route("PATCH", WS, "owner", body=ws_body(description="d")),
    Route("DELETE", WS, "owner"),
    Route("POST", WS + "/actions/safe-delete", "owner", extra={"empty_workspace": True}),
    Route("POST", WS + "/actions/lock", "member"),
    # unlocking lets a waiting run start: the queue looks for one (terrapod.runs.queue)
    Route(
        "POST",
        WS + "/actions/unlock",
        "member",
        query_budget=9,
        extra={"locked_by_caller": True},
    ),
    Route(
        "POST",
        WS + "/actions/force-unlock",
        "owner",
        query_budget=9,
        extra={"locked_by_other": True},
    ),
    Route("GET", WS + "/relationships/tags", "member"),
    Route("POST", WS + "/relationships/tags", "owner", body=TAGS_BODY),
    Route("DELETE", WS + "/relationships/tags", "owner", body=TAGS_BODY),
    Route("GET", WS + "/relationships/remote-state-consumers", "member", is_list=True),
    Route("POST", WS + "/relationships/remote-state-consumers", "owner", body=CONSUMERS_BODY),
    Route("PATCH", WS + "/relationships/remote-state-consumers", "owner", body=CONSUMERS_BODY),
    Route("DELETE", WS + "/relationships/remote-state-consumers", "owner", body=CONSUMERS_BODY),
    # state
    Route("GET", WS + "/state-versions", "member", is_list=True),
    Route(
        "POST",
        WS + "/state-versions",
        "member",
        body={"data": {"type": "state-versions", "attributes": {"serial": 100, "md5": "{md5}"}}},
        extra={"locked_by_caller": True},
    ),
    Route(
        "PATCH",
        WS + "/state-versions",
        "member",
        body={
            "data": {
                "type": "state-versions",
                "relationships": {
                    "rollback-state-version": {
                        "data": {"type": "state-versions", "id": "{old_state_version_id}"}
                    }
                },
            }
        },
        extra={"locked_by_caller": True},
        # copies the target's outputs: one insert per output (3 in the world)
        query_budget=10,
    ),
    Route("GET", WS + "/current-state-version", "member"),
    Route("GET", WS + "/current-state-version-outputs", "member", is_list=True),
    Route(
        "GET",
        "/api/v2/state-versions",
        "member",
        is_list=True,
        extra={
            "query": {
                "filter[organization][name]": "default",
                "filter[workspace][name]": "{workspace_name}",
            }
        },
    ),
    Route("GET", "/api/v2/state-versions/{sv_id}", "member"),
    Route("GET", "/api/v2/state-versions/{sv_id}/download", "member"),
    Route("GET", "/api/v2/state-versions/{sv_id}/outputs", "member", is_list=True),
    Route("GET", "/api/v2/state-version-outputs/{output_id}", "member"),
    # variables
    Route("GET", WS + "/vars", "member"),
    Route(
        "POST",
        WS + "/vars",
        "member",
        body={"data": {"type": "vars", "attributes": {"key": "created", "category": "env"}}},
    ),
    Route("GET", WS + "/vars/{variable_id}", "member"),
    Route(
        "PATCH",
        WS + "/vars/{variable_id}",
        "member",
        body={"data": {"type": "vars", "attributes": {"value": "eu-central-1"}}},
    ),
    Route("DELETE", WS + "/vars/{variable_id}", "member"),
    Route(
        "GET",
        "/api/v2/vars",
        "member",
        extra={
            "query": {
                "filter[organization][name]": "default",
                "filter[workspace][name]": "{workspace_name}",
            }
        },
    ),
    Route(
        "POST",
        "/api/v2/vars",
        "member",
        body={
            "data": {
                "type": "vars",
                "attributes": {"key": "created", "value": "v", "category": "terraform"},
                "relationships": {
                    "workspace": {"data": {"type": "workspaces", "id": "{workspace_id}"}}
                },
            }
        },
    ),
    Route(
        "PATCH",
        "/api/v2/vars/{variable_id}",
        "member",
        body={"data": {"type": "vars", "attributes": {"sensitive": True}}},
    ),
    Route("DELETE", "/api/v2/vars/{variable_id}", "member"),
    # (end of variables)
    # configuration versions
    Route("GET", WS + "/configuration-versions", "member", is_list=True),
    Route(
        "POST",
        WS + "/configuration-versions",
        "member",
        body={"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}},
    ),
    Route("GET", "/api/v2/configuration-versions/{cv_id}", "member"),
    Route("GET", "/api/v2/configuration-versions/{cv_id}/download", "member"),
    # {cv_id} is uploaded and older than the workspace's latest version, so archivable.
    Route("POST", "/api/v2/configuration-versions/{cv_id}/actions/archive", "member"),
    # (end of configuration versions)
    # runs, plans, applies
    Route("POST", "/api/v2/runs", "member", body=RUN_BODY, query_budget=20),
    Route("GET", "/api/v2/runs/{run_id}", "member", query_budget=5),
    # runs-held has two runs that are not plan-only (the default list leaves those out)
    Route(
        "GET",
        WS + "/runs",
        "member",
        is_list=True,
        query_budget=6,
        extra={"use": {"workspace_id": "held_workspace_id"}},
    ),
    Route("GET", WS + "/runs/events", "member"),
    Route(
        "GET",
        "/api/v2/organizations/{org_name}/runs",
        "member",
        is_list=True,
        # seed 001: this list leaves total-count and total-pages out
        extra={"pagination_keys": ORG_RUN_PAGINATION},
    ),
    Route("GET", "/api/v2/organizations/{org_name}/runs/queue", "member", is_list=True),
    Route("GET", "/api/v2/organizations/{org_name}/capacity", "member"),
    Route(
        "POST",
        "/api/v2/runs/{run_id}/actions/apply",
        "member",
        query_budget=10,
        extra={"use": {"run_id": "planned_run_id"}},
    ),
    Route(
        "POST",
        "/api/v2/runs/{run_id}/actions/confirm",
        "member",
        query_budget=10,
        extra={"use": {"run_id": "planned_run_id"}},
    ),
    Route(
        "POST",
        "/api/v2/runs/{run_id}/actions/discard",
        "member",
        query_budget=20,
        extra={"use": {"run_id": "planned_run_id"}},
    ),
    Route(
        "POST",
        "/api/v2/runs/{run_id}/actions/cancel",
        "member",
        query_budget=12,
        extra={"use": {"run_id": "pending_run_id"}},
    ),
    Route(
        "POST",
        "/api/v2/runs/{run_id}/actions/force-cancel",
        "owner",
        # +1: the run's status change queues its notifications (one INSERT ... SELECT);
        # +1: the running job's run token is retired (one UPDATE)
        query_budget=16,
        extra={"use": {"run_id": "stuck_run_id"}},
    ),
    Route(
        "POST",
        "/api/v2/runs/{run_id}/actions/force-execute",
        "member",
        query_budget=24,
        extra={"use": {"run_id": "pending_run_id"}},
    ),
    Route(
        "POST",
        "/api/v2/runs/{run_id}/actions/retry",
        "member",
        # +1: the run's status change queues its notifications (one INSERT ... SELECT)
        # +1: the new run looks up its workspace's run tasks (one SELECT)
        query_budget=20,
        extra={"use": {"run_id": "final_run_id"}},
    ),
    Route("GET", "/api/v2/runs/{run_id}/plan", "member"),
    Route("GET", "/api/v2/runs/{run_id}/apply", "member"),
    Route("GET", "/api/v2/plans/{plan_id}", "member"),
    Route("GET", "/api/v2/applies/{apply_id}", "member"),
    Route("GET", "/api/v2/plans/{plan_id}/json-output", "owner"),
    Route("GET", "/api/v2/plans/{plan_id}/json-output-redacted", "member"),
    Route("GET", "/api/v2/runs/{run_id}/plan/json-output", "owner"),
    Route("GET", "/api/v2/runs/{run_id}/run-events", "member", is_list=True),
    Route("GET", "/api/v2/run-events/{event_id}", "member"),
    Route("GET", "/logs/{token}", "signed"),
    # (end of runs)
)

# Later domains describe their routes in their own modules, one file each.
from tests.quality import (  # noqa: E402
    routes_actions,
    routes_agentpools,
    routes_listeners,
    routes_notifications,
    routes_runtasks,
    routes_runtriggers,
    routes_varsets,
)

ROUTES = (
    ROUTES
    + routes_varsets.ROUTES
    + routes_runtriggers.ROUTES
    + routes_notifications.ROUTES
    + routes_runtasks.ROUTES
    + routes_actions.ROUTES
    + routes_agentpools.ROUTES
    + routes_listeners.ROUTES
)
