"""This domain's part of the reviewed route table (see tests/quality/routes.py)."""

from __future__ import annotations

from tests.quality.routes import WS, Route

VARSET = "/api/v2/varsets/{varset_id}"
VARSET_VARS = VARSET + "/relationships/vars"


def varset_body(**attrs: object) -> dict[str, object]:
    return {"data": {"type": "varsets", "attributes": attrs}}


def var_body(**attrs: object) -> dict[str, object]:
    return {"data": {"type": "vars", "attributes": attrs}}


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v2/organizations/{org_name}/varsets", "member", is_list=True),
    Route(
        "POST",
        "/api/v2/organizations/{org_name}/varsets",
        "owner",
        body=varset_body(name="created", description="from the suite"),
    ),
    Route("GET", WS + "/varsets", "member", is_list=True),
    Route("GET", WS + "/all-vars", "member"),
    Route("GET", VARSET, "member"),
    Route("PATCH", VARSET, "owner", body=varset_body(description="changed")),
    Route("PUT", VARSET, "owner", body=varset_body(priority=True)),
    Route("DELETE", VARSET, "owner"),
    Route(
        "POST",
        VARSET + "/relationships/workspaces",
        "owner",
        body={"data": [{"type": "workspaces", "id": "{other_workspace_id}"}]},
    ),
    Route(
        "DELETE",
        VARSET + "/relationships/workspaces",
        "owner",
        body={"data": [{"type": "workspaces", "id": "{workspace_id}"}]},
    ),
    Route("GET", VARSET_VARS, "member", is_list=True),
    Route(
        "POST",
        VARSET_VARS,
        "owner",
        body=var_body(key="created", value="v", category="env"),
    ),
    Route("GET", VARSET_VARS + "/{var_id}", "member"),
    Route("PATCH", VARSET_VARS + "/{var_id}", "owner", body=var_body(value="eu-north-1")),
    Route("DELETE", VARSET_VARS + "/{var_id}", "owner"),
)
