"""Notifications for real runs: the real Terraform CLI applies through a real ``terrapod
serve`` (its built-in agent runs Terraform), and real receivers on 127.0.0.1 get what the
server sends: a signed generic webhook for every trigger, an email through an SMTP server
(aiosmtpd), and a webhook whose receiver fails twice before it answers.

The server is this module's own, with ``notifications.allow_private_addresses`` (the receivers
are on the loopback address), quick retries and the SMTP server's address.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terrapod.notifications.payloads import SIGNATURE_HEADER, sign
from tests.conftest import ADMIN_TOKEN
from tests.databases import temporary_database
from tests.e2e.harness import ServerInfo, Terraform, output_of, run_server, write_cloud_config
from tests.unit.notifications.receivers import HttpReceiver, SmtpServer

# terraform apply -auto-approve creates an auto-apply run: its plan never waits for a person,
# so run:needs_attention stays silent and run:planned reports the finished plan.
SUBSCRIBED = [
    "run:created",
    "run:planning",
    "run:needs_attention",
    "run:planned",
    "run:applying",
    "run:completed",
]
TRIGGERS = ["run:created", "run:planning", "run:planned", "run:applying", "run:completed"]


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def nserver(
    backend: str, tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer
) -> Iterator[ServerInfo]:
    workdir = tmp_path_factory.mktemp(f"e2e-notifications-{backend}")
    env = {
        "TERRAPOD_NOTIFICATIONS__ALLOW_PRIVATE_ADDRESSES": "true",
        "TERRAPOD_NOTIFICATIONS__RETRY_BASE_SECONDS": "0.2",
        "TERRAPOD_NOTIFICATIONS__SWEEP_SECONDS": "1",
        "TERRAPOD_NOTIFICATIONS__SMTP__HOST": "127.0.0.1",
        "TERRAPOD_NOTIFICATIONS__SMTP__PORT": str(smtp.port),
        "TERRAPOD_NOTIFICATIONS__SMTP__SECURITY": "none",
        "TERRAPOD_NOTIFICATIONS__SMTP__FROM_ADDRESS": "terrapod@e2e.test",
    }
    with (
        temporary_database(backend, workdir) as database_url,
        run_server(
            workdir,
            backend=backend,
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            extra_env=env,
        ) as info,
    ):
        yield info


def _create(client: httpx.Client, ws: str, **attrs: Any) -> dict[str, Any]:
    r = client.post(
        f"/api/v2/workspaces/{ws}/notification-configurations",
        json={"data": {"type": "notification-configurations", "attributes": attrs}},
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


def test_a_real_apply_notifies_every_destination(
    nserver: ServerInfo, smtp: SmtpServer, tmp_path: Path
) -> None:
    name = f"notify-{secrets.token_hex(4)}"
    with (
        HttpReceiver() as receiver,
        HttpReceiver([500, 502]) as flaky,
        nserver.http(ADMIN_TOKEN) as client,
    ):
        r = client.post(
            "/api/v2/organizations/default/workspaces",
            json={"data": {"type": "workspaces", "attributes": {"name": name}}},
        )
        assert r.status_code == 201, r.text
        ws = r.json()["data"]["id"]
        hook = _create(
            client,
            ws,
            name="hook",
            enabled=True,
            triggers=SUBSCRIBED,
            token="e2e-hmac",
            url=receiver.url(),
            **{"destination-type": "generic"},
        )
        _create(
            client,
            ws,
            name="flaky",
            enabled=True,
            triggers=["run:completed"],
            url=flaky.url(),
            **{"destination-type": "generic"},
        )
        _create(
            client,
            ws,
            name="mail",
            enabled=True,
            triggers=["run:completed"],
            **{"destination-type": "email", "email-addresses": ["ops@e2e.test"]},
        )

        terraform = Terraform(nserver, tmp_path / "home", ADMIN_TOKEN)
        cwd = tmp_path / "config"
        write_cloud_config(cwd, hostname=nserver.hostname, organization="default", workspace=name)
        init = terraform.run(["init", "-no-color"], cwd)
        assert init.returncode == 0, output_of(init)
        applied = terraform.run(["apply", "-auto-approve", "-no-color"], cwd)
        assert applied.returncode == 0, output_of(applied) + nserver.log_tail()

        seen = receiver.wait_for_sync(lambda s: len(s) >= len(TRIGGERS))
        # Nothing more arrives: a notification for every trigger that fired, and no other.
        flaky.wait_for_sync(lambda s: any(x.answered == 200 for x in s))
        payloads = [json.loads(r.body) for r in seen]
        for got in seen:
            assert got.headers[SIGNATURE_HEADER] == sign(got.body, "e2e-hmac")
        assert sorted(p["notifications"][0]["trigger"] for p in payloads) == sorted(TRIGGERS)
        run_ids = {p["run_id"] for p in payloads}
        assert len(run_ids) == 1
        [run_id] = run_ids
        completed = next(p for p in payloads if p["notifications"][0]["trigger"] == "run:completed")
        assert completed["notifications"][0]["run_status"] == "applied"
        assert completed["workspace_name"] == name and completed["organization_name"] == "default"
        assert completed["run_url"] == f"{nserver.url}/app/default/{name}/runs/{run_id}"

        flaky_seen = flaky.wait_for_sync(lambda s: any(x.answered == 200 for x in s))
        assert [x.answered for x in flaky_seen] == [500, 502, 200]
        assert json.loads(flaky_seen[-1].body)["run_id"] == run_id

        recipients, message = _wait_for_mail(smtp, name)
        assert recipients == ["ops@e2e.test"]
        assert message["Subject"] == f"[Terrapod] Run Applied: default/{name}"
        assert run_id in message.get_payload(decode=True).decode()

        shown = client.get(f"/api/v2/notification-configurations/{hook['id']}").json()
        responses = shown["data"]["attributes"]["delivery-responses"]
        assert len(responses) == len(TRIGGERS)
        assert {d["code"] for d in responses} == {"200"}
        assert "e2e-hmac" not in json.dumps(shown)


def _wait_for_mail(smtp: SmtpServer, workspace: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for recipients, message in smtp.snapshot():
            if workspace in str(message["Subject"]):
                return recipients, message
        time.sleep(0.1)
    raise AssertionError(f"no email about {workspace}; got {smtp.snapshot()!r}")
