"""Notification configurations through HTTP: CRUD, validation of every attribute, the
write-only token, destination address checks, permissions, verify, and deliveries for runs
driven by the agent protocol (tests.runs_support.ProtocolAgent) to real receivers on
127.0.0.1 (an HTTP server and an aiosmtpd SMTP server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, inspect, select

from terrapod.app import create_app
from terrapod.config import NotificationSettings, Settings, SmtpSettings
from terrapod.db.base import Base
from terrapod.notifications.models import NotificationConfiguration, NotificationDelivery
from terrapod.notifications.payloads import SIGNATURE_HEADER, sign
from tests.conftest import ADMIN_TOKEN
from tests.factories import make_user
from tests.runs_support import ProtocolAgent, create_run, make_workspace, upload_configuration
from tests.unit.notifications.receivers import HttpReceiver, Received, SmtpServer

TYPE = "notification-configurations"


def body(**attrs: Any) -> dict[str, Any]:
    return {"data": {"type": TYPE, "attributes": attrs}}


def generic(url: str, **attrs: Any) -> dict[str, Any]:
    return body(**{"name": "hooks", "destination-type": "generic", "url": url, **attrs})


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def napp(migrated_settings: Settings, smtp: SmtpServer) -> AsyncIterator[FastAPI]:
    """The application with local destinations allowed, quick retries and a mail server."""
    settings = migrated_settings.model_copy(
        update={
            "notifications": NotificationSettings(
                allow_private_addresses=True,
                retry_base_seconds=0.05,
                sweep_seconds=0.5,
                timeout_seconds=5,
                max_attempts=3,
                smtp=SmtpSettings(
                    host="127.0.0.1", port=smtp.port, security="none", from_address="tp@test.io"
                ),
            )
        }
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
        async with application.state.engine.connect() as connection:
            existing = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
        async with application.state.sessionmaker() as session:
            for table in reversed(Base.metadata.sorted_tables):
                if table.name in existing:
                    await session.execute(delete(table))
            await session.commit()


@pytest.fixture
async def nadmin(napp: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=napp),
        base_url="https://terrapod.test",
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/vnd.api+json",
        },
    ) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as r:
        yield r


async def _ws(client: httpx.AsyncClient, name: str = "notified") -> str:
    return await make_workspace(client, name)


def _attrs(r: httpx.Response) -> dict[str, Any]:
    return dict(r.json()["data"]["attributes"])


def _error(r: httpx.Response) -> tuple[str, str]:
    error = r.json()["errors"][0]
    return error["detail"], error.get("source", {}).get("pointer", "")


# -- CRUD ----------------------------------------------------------------------------------


async def test_create_show_list_update_delete(nadmin: httpx.AsyncClient) -> None:
    ws = await _ws(nadmin)
    r = await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=generic(
            "http://127.0.0.1:9/hook",
            enabled=True,
            triggers=["run:errored", "run:created", "run:created"],
            token="s3cret-hmac",
        ),
    )
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert data["type"] == TYPE and data["id"].startswith("nc-")
    a = data["attributes"]
    assert a["name"] == "hooks" and a["destination-type"] == "generic"
    assert a["url"] == "http://127.0.0.1:9/hook" and a["enabled"] is True
    assert a["triggers"] == ["run:created", "run:errored"]
    assert a["has-token"] is True and "token" not in a
    assert a["delivery-responses"] == [] and a["email-addresses"] == []
    assert a["created-at"].endswith("Z") and a["updated-at"].endswith("Z")
    assert data["relationships"]["subscribable"]["data"] == {"type": "workspaces", "id": ws}
    assert data["links"]["self"] == f"/api/v2/notification-configurations/{data['id']}"
    nc = data["id"]

    shown = await nadmin.get(f"/api/v2/notification-configurations/{nc}")
    assert shown.status_code == 200 and shown.json()["data"]["attributes"] == a

    listed = await nadmin.get(f"/api/v2/workspaces/{ws}/notification-configurations")
    assert [d["id"] for d in listed.json()["data"]] == [nc]
    assert listed.json()["meta"]["pagination"]["total-count"] == 1

    r = await nadmin.patch(
        f"/api/v2/notification-configurations/{nc}",
        json=body(name="renamed", enabled=False, triggers=["run:completed"]),
    )
    assert r.status_code == 200, r.text
    a2 = _attrs(r)
    assert (a2["name"], a2["enabled"], a2["triggers"]) == ("renamed", False, ["run:completed"])
    assert a2["has-token"] is True  # absent token: kept
    r = await nadmin.patch(f"/api/v2/notification-configurations/{nc}", json=body(token=None))
    assert _attrs(r)["has-token"] is False

    assert (await nadmin.delete(f"/api/v2/notification-configurations/{nc}")).status_code == 204
    assert (await nadmin.get(f"/api/v2/notification-configurations/{nc}")).status_code == 404


async def test_list_is_paginated(nadmin: httpx.AsyncClient) -> None:
    ws = await _ws(nadmin)
    for i in range(3):
        r = await nadmin.post(
            f"/api/v2/workspaces/{ws}/notification-configurations",
            json=generic(f"http://127.0.0.1:9/{i}", name=f"n{i}"),
        )
        assert r.status_code == 201
    r = await nadmin.get(
        f"/api/v2/workspaces/{ws}/notification-configurations", params={"page[size]": 2}
    )
    assert [d["attributes"]["name"] for d in r.json()["data"]] == ["n0", "n1"]
    page = r.json()["meta"]["pagination"]
    assert (page["total-count"], page["total-pages"], page["next-page"]) == (3, 2, 2)


async def test_token_is_never_returned_nor_stored_in_plain_text(
    napp: FastAPI, nadmin: httpx.AsyncClient
) -> None:
    ws = await _ws(nadmin)
    r = await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=generic("http://127.0.0.1:9/hook", token="very-secret-token-value"),
    )
    assert "very-secret-token-value" not in r.text
    nc = r.json()["data"]["id"]
    for answer in (
        await nadmin.get(f"/api/v2/notification-configurations/{nc}"),
        await nadmin.get(f"/api/v2/workspaces/{ws}/notification-configurations"),
    ):
        assert "very-secret-token-value" not in answer.text
    async with napp.state.sessionmaker() as session:
        row = await session.get(NotificationConfiguration, nc)
        assert row is not None and row.token_encrypted is not None
        assert "very-secret-token-value" not in row.token_encrypted


@pytest.mark.parametrize(
    ("attrs", "pointer", "words"),
    [
        ({"destination-type": "generic", "url": "http://127.0.0.1/"}, "/name", "name is required"),
        ({"name": "  ", "destination-type": "generic", "url": "http://1.1.1.1/"}, "/name", "blank"),
        ({"name": "x" * 256, "destination-type": "generic"}, "/name", "at most 255"),
        ({"name": "n"}, "/destination-type", "destination-type is required"),
        ({"name": "n", "destination-type": "microsoft-teams"}, "/destination-type", "one of"),
        ({"name": "n", "destination-type": "generic"}, "/url", "url is required"),
        ({"name": "n", "destination-type": "generic", "url": "ftp://h/x"}, "/url", "http"),
        ({"name": "n", "destination-type": "generic", "url": "/relative"}, "/url", "absolute"),
        (
            {"name": "n", "destination-type": "generic", "url": "http://u:p@127.0.0.1/"},
            "/url",
            "user name or password",
        ),
        (
            {"name": "n", "destination-type": "generic", "url": "http://h/", "triggers": ["x"]},
            "/triggers/0",
            "not a trigger",
        ),
        (
            {"name": "n", "destination-type": "generic", "url": "http://h/", "triggers": "run"},
            "/triggers",
            "list",
        ),
        (
            {"name": "n", "destination-type": "generic", "url": "http://h/", "enabled": "yes"},
            "/enabled",
            "bool",
        ),
        (
            {"name": "n", "destination-type": "email", "email-addresses": ["not-an-address"]},
            "/email-addresses/0",
            "not an email address",
        ),
        (
            {
                "name": "n",
                "destination-type": "email",
                "email-addresses": ["a@b.io\r\nBcc: x@y.io"],
            },
            "/email-addresses/0",
            "not an email address",
        ),
        ({"name": "n", "destination-type": "email"}, "/email-addresses", "at least one"),
        (
            {"name": "n", "destination-type": "slack", "url": "http://h/", "token": "t"},
            "/token",
            "only used by generic",
        ),
        ({"name": None, "destination-type": "generic"}, "/name", "cannot be null"),
    ],
)
async def test_create_refuses_each_bad_attribute(
    nadmin: httpx.AsyncClient, attrs: dict[str, Any], pointer: str, words: str
) -> None:
    ws = await _ws(nadmin)
    r = await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations", json=body(**attrs)
    )
    assert r.status_code == 422, r.text
    detail, where = _error(r)
    assert where == "/data/attributes" + pointer, r.text
    assert words in detail, detail
    listed = await nadmin.get(f"/api/v2/workspaces/{ws}/notification-configurations")
    assert listed.json()["data"] == []


async def test_refused_update_changes_nothing(nadmin: httpx.AsyncClient) -> None:
    ws = await _ws(nadmin)
    r = await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=generic("http://127.0.0.1:9/hook", triggers=["run:created"]),
    )
    nc = r.json()["data"]["id"]
    before = (await nadmin.get(f"/api/v2/notification-configurations/{nc}")).json()
    r = await nadmin.patch(
        f"/api/v2/notification-configurations/{nc}",
        json=body(name="new", **{"destination-type": "email"}),
    )
    assert r.status_code == 422 and _error(r)[1] == "/data/attributes/email-addresses"
    after = (await nadmin.get(f"/api/v2/notification-configurations/{nc}")).json()
    assert after == before


async def test_a_workspace_holds_at_most_twenty(nadmin: httpx.AsyncClient) -> None:
    ws = await _ws(nadmin)
    for i in range(20):
        r = await nadmin.post(
            f"/api/v2/workspaces/{ws}/notification-configurations",
            json=generic("http://127.0.0.1:9/x", name=f"n{i}"),
        )
        assert r.status_code == 201
    r = await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations", json=generic("http://127.0.0.1:9/")
    )
    assert r.status_code == 422 and "at most 20" in _error(r)[0]


async def test_email_needs_a_mail_server(admin: httpx.AsyncClient) -> None:
    ws = await _ws(admin)
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=body(name="mail", **{"destination-type": "email", "email-addresses": ["a@b.io"]}),
    )
    assert r.status_code == 422
    assert _error(r) == (
        "email notifications are not available: the server has no mail server "
        "(notifications.smtp.host)",
        "/data/attributes/destination-type",
    )


# -- destination addresses -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:192.168.1.1]/hook",
        "http://0.0.0.0/",
    ],
)
async def test_private_addresses_are_refused_by_default(admin: httpx.AsyncClient, url: str) -> None:
    ws = await _ws(admin)
    r = await admin.post(f"/api/v2/workspaces/{ws}/notification-configurations", json=generic(url))
    assert r.status_code == 422, r.text
    detail, pointer = _error(r)
    assert pointer == "/data/attributes/url"
    assert "notifications.allow_private_addresses" in detail


async def test_private_address_refused_on_update_too(admin: httpx.AsyncClient) -> None:
    ws = await _ws(admin)
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=generic("https://hooks.example.invalid/terrapod"),
    )
    assert r.status_code == 201, r.text  # a host that does not resolve yet is checked later
    nc = r.json()["data"]["id"]
    r = await admin.patch(
        f"/api/v2/notification-configurations/{nc}", json=body(url="http://192.168.0.10/")
    )
    assert r.status_code == 422 and _error(r)[1] == "/data/attributes/url"


async def test_private_addresses_allowed_by_the_setting(
    nadmin: httpx.AsyncClient, receiver: HttpReceiver
) -> None:
    ws = await _ws(nadmin)
    r = await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations", json=generic(receiver.url())
    )
    assert r.status_code == 201, r.text


async def test_delivery_rechecks_the_address(admin: httpx.AsyncClient) -> None:
    """A host saved while it did not resolve is checked again when sending: verify reports
    the refusal instead of connecting."""
    ws = await _ws(admin)
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=generic("http://unresolvable.invalid/hook"),
    )
    nc = r.json()["data"]["id"]
    r = await admin.post(f"/api/v2/notification-configurations/{nc}/actions/verify", json={})
    assert r.status_code == 200
    [response] = _attrs(r)["delivery-responses"]
    assert response["successful"] == "false" and response["code"] is None
    assert "does not resolve" in response["body"]


# -- permissions -------------------------------------------------------------------------------


async def test_members_read_but_only_admins_manage(app: FastAPI, admin: httpx.AsyncClient) -> None:
    ws = await _ws(admin)
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=generic("https://hooks.example.invalid/x"),
    )
    nc = r.json()["data"]["id"]
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as m:
        assert (
            await m.get(f"/api/v2/workspaces/{ws}/notification-configurations")
        ).status_code == 200
        assert (await m.get(f"/api/v2/notification-configurations/{nc}")).status_code == 200
        r = await m.post(
            f"/api/v2/workspaces/{ws}/notification-configurations",
            json=generic("https://hooks.example.invalid/y"),
        )
        assert r.status_code == 403
        assert _error(r)[0] == "not permitted to manage the notifications of this workspace"
        assert (
            await m.patch(f"/api/v2/notification-configurations/{nc}", json=body(name="x"))
        ).status_code == 403
        assert (await m.delete(f"/api/v2/notification-configurations/{nc}")).status_code == 403
        assert (
            await m.post(f"/api/v2/notification-configurations/{nc}/actions/verify", json={})
        ).status_code == 403
    await admin.post(
        "/api/v2/organizations",
        json={
            "data": {"type": "organizations", "attributes": {"name": "other", "email": "o@o.io"}}
        },
    )
    outsider = await make_user(app, organization="other", role="owner")
    async with outsider.client(app) as o:
        assert (await o.get(f"/api/v2/notification-configurations/{nc}")).status_code == 404
        assert (await o.delete(f"/api/v2/notification-configurations/{nc}")).status_code == 404
    assert (await admin.get("/api/v2/notification-configurations/nc-nope")).status_code == 404


# -- verify ------------------------------------------------------------------------------------


async def test_verify_sends_a_signed_test_and_records_the_response(
    nadmin: httpx.AsyncClient, receiver: HttpReceiver
) -> None:
    ws = await _ws(nadmin)
    r = await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=generic(receiver.url(), token="hmac-key"),
    )
    nc = r.json()["data"]["id"]
    r = await nadmin.post(f"/api/v2/notification-configurations/{nc}/actions/verify", json={})
    assert r.status_code == 200, r.text
    [got] = receiver.snapshot()
    assert got.headers[SIGNATURE_HEADER] == sign(got.body, "hmac-key")
    payload = json.loads(got.body)
    assert payload["payload_version"] == 1
    assert payload["notification_configuration_id"] == nc
    assert payload["run_id"] is None and payload["workspace_id"] == ws
    assert payload["workspace_name"] == "notified" and payload["organization_name"] == "default"
    assert payload["notifications"][0]["trigger"] == "verification"
    assert payload["notifications"][0]["message"] == "Verification of hooks"
    [response] = _attrs(r)["delivery-responses"]
    assert response["code"] == "200" and response["successful"] == "true"
    assert response["url"] == receiver.url() and response["body"] == '{"ok": true}'
    assert response["headers"]["x-receiver"] == ["test"]
    assert response["sent-at"].endswith("Z")


async def test_verify_holds_no_write_lock_while_the_destination_answers(
    nadmin: httpx.AsyncClient,
) -> None:
    """On SQLite a writing request holds the database's one write lock: a verify that waited
    for a slow destination inside its transaction would stall every other write."""
    with HttpReceiver(hold=True) as slow:
        ws = await _ws(nadmin)
        r = await nadmin.post(
            f"/api/v2/workspaces/{ws}/notification-configurations", json=generic(slow.url())
        )
        nc = r.json()["data"]["id"]
        verify = asyncio.create_task(
            nadmin.post(f"/api/v2/notification-configurations/{nc}/actions/verify", json={})
        )
        await slow.wait_for(lambda seen: len(seen) == 1)
        variable = {"key": "region", "value": "eu", "category": "terraform"}
        r = await asyncio.wait_for(
            nadmin.post(
                f"/api/v2/workspaces/{ws}/vars",
                json={"data": {"type": "vars", "attributes": variable}},
            ),
            timeout=10,
        )
        assert r.status_code == 201, r.text
        assert not verify.done()
        slow.release.set()
        r = await verify
    assert r.status_code == 200, r.text
    [response] = _attrs(r)["delivery-responses"]
    assert response["code"] == "200"
    shown = await nadmin.get(f"/api/v2/notification-configurations/{nc}")
    assert _attrs(shown)["delivery-responses"] == [response]


async def test_verify_records_an_unsuccessful_answer(nadmin: httpx.AsyncClient) -> None:
    with HttpReceiver([404]) as failing:
        ws = await _ws(nadmin)
        r = await nadmin.post(
            f"/api/v2/workspaces/{ws}/notification-configurations", json=generic(failing.url())
        )
        nc = r.json()["data"]["id"]
        r = await nadmin.post(f"/api/v2/notification-configurations/{nc}/actions/verify", json={})
    [response] = _attrs(r)["delivery-responses"]
    assert (response["code"], response["successful"]) == ("404", "false")
    shown = await nadmin.get(f"/api/v2/notification-configurations/{nc}")
    assert _attrs(shown)["delivery-responses"] == [response]


async def test_verify_email_sends_a_test_message(
    nadmin: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    ws = await _ws(nadmin)
    r = await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=body(name="mail", **{"destination-type": "email", "email-addresses": ["ops@x.io"]}),
    )
    assert r.status_code == 201, r.text
    nc = r.json()["data"]["id"]
    r = await nadmin.post(f"/api/v2/notification-configurations/{nc}/actions/verify", json={})
    [response] = _attrs(r)["delivery-responses"]
    assert response["successful"] == "true" and response["code"] == "250"
    [(recipients, message)] = smtp.snapshot()
    assert recipients == ["ops@x.io"]
    assert message["Subject"] == "[Terrapod] Verification of mail: default/notified"
    assert message["From"] == "tp@test.io"


# -- deliveries for runs --------------------------------------------------------------------


ALL = ["run:created", "run:planning", "run:needs_attention", "run:applying", "run:completed"]


def _payloads(seen: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in seen if r.answered < 300]


async def test_runs_deliver_every_trigger_signed(
    napp: FastAPI, nadmin: httpx.AsyncClient, receiver: HttpReceiver
) -> None:
    ws = await _ws(nadmin)
    await upload_configuration(nadmin, ws)
    r = await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=generic(receiver.url(), enabled=True, triggers=ALL, token="k"),
    )
    nc = r.json()["data"]["id"]
    agent = ProtocolAgent(napp)
    run = await create_run(nadmin, ws, message="deploy it")
    await agent.run_phase()  # planning -> planned (needs attention)
    assert (
        await nadmin.post(f"/api/v2/runs/{run['id']}/actions/apply", json={})
    ).status_code == 202
    await agent.run_phase()  # applying -> applied
    seen = await receiver.wait_for(lambda s: len(s) >= 5)
    for got in seen:
        assert got.headers[SIGNATURE_HEADER] == sign(got.body, "k")
        assert got.headers["Content-Type"] == "application/json"
    payloads = _payloads(seen)
    triggers = [p["notifications"][0]["trigger"] for p in payloads]
    assert sorted(triggers) == sorted(ALL)
    statuses = {
        p["notifications"][0]["trigger"]: p["notifications"][0]["run_status"] for p in payloads
    }
    assert statuses == {
        "run:created": "pending",
        "run:planning": "planning",
        "run:needs_attention": "planned",
        "run:applying": "applying",
        "run:completed": "applied",
    }
    first = payloads[0]
    assert first["run_id"] == run["id"] and first["run_message"] == "deploy it"
    assert first["run_created_by"] == "admin" and first["notification_configuration_id"] == nc
    assert first["run_url"] == f"https://terrapod.test/app/default/notified/runs/{run['id']}"
    assert first["run_created_at"].endswith("Z")
    assert first["notifications"][0]["run_updated_at"].endswith("Z")
    completed = next(p for p in payloads if p["notifications"][0]["trigger"] == "run:completed")
    assert completed["notifications"][0]["message"] == "Run Applied"
    assert completed["notifications"][0]["run_updated_by"] == "admin"
    # Once sent, nothing is left in the outbox, and the last response is on the configuration.
    async with napp.state.sessionmaker() as session:
        left = (
            await session.execute(select(func.count()).select_from(NotificationDelivery))
        ).scalar_one()
    assert left == 0
    shown = _attrs(await nadmin.get(f"/api/v2/notification-configurations/{nc}"))
    assert len(shown["delivery-responses"]) == 5
    assert all(d["successful"] == "true" for d in shown["delivery-responses"])


async def test_only_subscribed_enabled_configurations_hear(
    napp: FastAPI, nadmin: httpx.AsyncClient, receiver: HttpReceiver
) -> None:
    ws = await _ws(nadmin)
    await upload_configuration(nadmin, ws)
    for name, attrs in (
        ("errors", {"enabled": True, "triggers": ["run:errored"]}),
        ("off", {"enabled": False, "triggers": ["run:errored", "run:created"]}),
        ("created", {"enabled": True, "triggers": ["run:created"]}),
    ):
        await nadmin.post(
            f"/api/v2/workspaces/{ws}/notification-configurations",
            json=generic(receiver.url("/" + name), name=name, **attrs),
        )
    agent = ProtocolAgent(napp)
    await create_run(nadmin, ws)
    await agent.run_phase("errored", error="boom")
    seen = await receiver.wait_for(lambda s: len(s) >= 2)
    got = sorted((r.path, json.loads(r.body)["notifications"][0]["trigger"]) for r in seen)
    assert got == [("/created", "run:created"), ("/errors", "run:errored")]

    async def queued() -> int:
        async with napp.state.sessionmaker() as session:
            statement = select(func.count()).select_from(NotificationDelivery)
            return int((await session.execute(statement)).scalar_one())

    # The deliverer removes a row only after its send: wait until both are recorded.
    deadline = asyncio.get_running_loop().time() + 15
    while await queued():
        assert asyncio.get_running_loop().time() < deadline, "deliveries never recorded"
        await asyncio.sleep(0.05)
    # A speculative run notifies nobody: its status changes queued no row (one would stay
    # until it was sent, and a sent one would be at the receiver).
    await create_run(nadmin, ws, **{"plan-only": True})
    await agent.run_phase("errored", error="boom")
    assert await queued() == 0
    assert len(receiver.snapshot()) == 2


async def test_failing_receiver_gets_the_message_on_a_retry(
    napp: FastAPI, nadmin: httpx.AsyncClient
) -> None:
    with HttpReceiver([503, 500]) as flaky:
        ws = await _ws(nadmin)
        await upload_configuration(nadmin, ws)
        r = await nadmin.post(
            f"/api/v2/workspaces/{ws}/notification-configurations",
            json=generic(flaky.url(), enabled=True, triggers=["run:created"]),
        )
        nc = r.json()["data"]["id"]
        run = await create_run(nadmin, ws)
        seen = await flaky.wait_for(lambda s: any(x.answered == 200 for x in s))
        assert [x.answered for x in seen] == [503, 500, 200]
        assert len({x.body for x in seen}) == 1  # the same notification each time
        assert json.loads(seen[-1].body)["run_id"] == run["id"]

    async def settled() -> list[dict[str, Any]]:
        return list(
            _attrs(await nadmin.get(f"/api/v2/notification-configurations/{nc}"))[
                "delivery-responses"
            ]
        )

    responses = await settled()
    for _ in range(100):
        if len(responses) == 3:
            break
        responses = await settled()
    assert [d["code"] for d in responses] == ["200", "500", "503"]  # newest first
    assert [d["successful"] for d in responses] == ["true", "false", "false"]


async def test_a_receiver_that_never_answers_well_is_given_up(
    napp: FastAPI, nadmin: httpx.AsyncClient
) -> None:
    with HttpReceiver([500, 500, 500, 500]) as broken:
        ws = await _ws(nadmin)
        await upload_configuration(nadmin, ws)
        await nadmin.post(
            f"/api/v2/workspaces/{ws}/notification-configurations",
            json=generic(broken.url(), enabled=True, triggers=["run:created"]),
        )
        run = await create_run(nadmin, ws)
        await broken.wait_for(lambda s: len(s) >= 3)  # max_attempts

        async def outbox() -> int:
            async with napp.state.sessionmaker() as session:
                return int(
                    (
                        await session.execute(
                            select(func.count()).select_from(NotificationDelivery)
                        )
                    ).scalar_one()
                )

        for _ in range(200):
            if await outbox() == 0:
                break
        assert await outbox() == 0
        assert len(broken.snapshot()) == 3
    # The run itself never noticed.
    assert (await nadmin.get(f"/api/v2/runs/{run['id']}")).json()["data"]["attributes"][
        "status"
    ] == "plan_queued"


async def test_email_and_slack_destinations_get_their_messages(
    napp: FastAPI, nadmin: httpx.AsyncClient, receiver: HttpReceiver, smtp: SmtpServer
) -> None:
    ws = await _ws(nadmin)
    await upload_configuration(nadmin, ws)
    await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=body(
            name="mail",
            enabled=True,
            triggers=["run:errored"],
            **{"destination-type": "email", "email-addresses": ["ops@x.io", "dev@x.io"]},
        ),
    )
    await nadmin.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json=body(
            name="chat",
            enabled=True,
            triggers=["run:errored"],
            url=receiver.url("/slack"),
            **{"destination-type": "slack"},
        ),
    )
    agent = ProtocolAgent(napp)
    run = await create_run(nadmin, ws, message="slack me")
    await agent.run_phase("errored", error="boom")
    [(recipients, message)] = await smtp.wait_for(lambda m: len(m) >= 1)
    assert recipients == ["ops@x.io", "dev@x.io"]
    assert message["Subject"] == "[Terrapod] Run Errored: default/notified"
    text = message.get_payload(decode=True).decode()
    assert run["id"] in text and "slack me" in text
    [got] = await receiver.wait_for(lambda s: len(s) >= 1)
    slack = json.loads(got.body)
    assert slack["text"] == "Run Errored: default/notified"
    kinds = [b["type"] for b in slack["blocks"]]
    assert kinds[0] == "header" and "actions" in kinds
    button = next(b for b in slack["blocks"] if b["type"] == "actions")["elements"][0]
    assert button["url"].endswith(f"/runs/{run['id']}")
    assert SIGNATURE_HEADER not in got.headers
