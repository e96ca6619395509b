"""This domain's part of the reviewed route table (see tests/quality/routes.py)."""

from __future__ import annotations

from tests.quality.routes import WS, Route

NC = "/api/v2/notification-configurations/{configuration_id}"


def _body(**attrs: object) -> dict[str, object]:
    return {"data": {"type": "notification-configurations", "attributes": attrs}}


# A host that never resolves: saved (it is checked again at delivery), and verify answers at
# once with the failure recorded, without a network.
CREATE_BODY = _body(
    name="suite",
    **{"destination-type": "generic", "url": "https://suite.example.invalid/hook"},
)

ROUTES: tuple[Route, ...] = (
    Route("POST", WS + "/notification-configurations", "owner", body=CREATE_BODY),
    # "main" has two configurations (world_notifications), so a page of one is a real page.
    Route("GET", WS + "/notification-configurations", "member", is_list=True),
    Route("GET", NC, "member"),
    Route("PATCH", NC, "owner", body=_body(name="renamed", triggers=["run:errored"])),
    Route("DELETE", NC, "owner"),
    Route("POST", NC + "/actions/verify", "owner"),
)
