"""The listener protocol's part of the reviewed route table (see tests/quality/routes.py).

These routes take no API token: ``join`` authenticates with the agent token in its body
("public" here), the others with an agent's short-lived credential or a job's run token, which
the generic suite's API-token checks do not apply to ("signed": a credential of their own).
tests/api/test_listener_protocol.py checks their refusals (401 without or with a wrong
credential, 404 for another run's token or another agent's job) and malformed bodies.
"""

from __future__ import annotations

from tests.quality.routes import Route

LISTENER = "/api/v2/listeners/{agent_id}"
JOB = LISTENER + "/runs/{run_id}"

ROUTES: tuple[Route, ...] = (
    Route("POST", "/api/v2/agent-pools/join", "public"),
    Route("POST", "/api/v2/agent-pools/{pool_id}/listeners/join", "public"),
    Route("POST", LISTENER + "/heartbeat", "signed"),
    Route("POST", LISTENER + "/renew", "signed"),
    Route("GET", LISTENER + "/runs/next", "signed"),
    Route("POST", JOB + "/heartbeat", "signed"),
    Route("POST", JOB + "/logs", "signed"),
    Route("PATCH", JOB, "signed"),
)
