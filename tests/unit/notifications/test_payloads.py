"""What notifications say: status -> trigger mapping, TFE's generic payload, its signature,
the Slack message and the email; and that webhooks keep to the allowed addresses (the rule
itself is tested in tests/unit/core/test_outbound.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from terrapod.config import NotificationSettings
from terrapod.notifications import destinations, payloads
from terrapod.notifications.payloads import Notification, RunFacts, Subject

CREATED_AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
UPDATED_AT = datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC)


def subject(**notification: object) -> Subject:
    return Subject(
        configuration_id="nc-AAAAAAAAAAAAAAAA",
        configuration_name="deploys",
        workspace_id="ws-BBBBBBBBBBBBBBBB",
        workspace_name="network",
        organization_name="acme",
        run=RunFacts(
            id="run-CCCCCCCCCCCCCCCC",
            url=payloads.run_url(
                "https://tp.example.com/", "acme", "network", "run-CCCCCCCCCCCCCCCC"
            ),
            message="Add <queue> & workers",
            created_at=CREATED_AT,
            created_by="alice",
        ),
        notification=Notification(
            **{  # type: ignore[arg-type]
                "message": "Run Applied",
                "trigger": "run:completed",
                "run_status": "applied",
                "run_updated_at": UPDATED_AT,
                "run_updated_by": "bob",
                **notification,
            }
        ),
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("pending", ("run:created",)),
        ("plan_queued", ()),
        ("planning", ("run:planning",)),
        ("planned", ("run:needs_attention", "run:planned")),
        ("policy_override", ("run:needs_attention",)),
        ("planned_and_saved", ("run:planned",)),
        ("planned_and_finished", ("run:completed", "run:planned")),
        ("confirmed", ()),
        ("applying", ("run:applying",)),
        ("applied", ("run:completed",)),
        ("errored", ("run:errored",)),
        ("canceled", ("run:errored",)),
        ("force_canceled", ("run:errored",)),
        ("discarded", ("run:errored",)),
    ],
)
def test_status_maps_to_triggers(status: str, expected: tuple[str, ...]) -> None:
    assert payloads.triggers_for(status) == expected


def test_auto_apply_plan_is_planned_but_a_confirmed_apply_queue_is_nothing() -> None:
    assert payloads.triggers_for("apply_queued", auto_apply=True) == ("run:planned",)
    assert payloads.triggers_for("apply_queued", auto_apply=True, confirmed=True) == ()
    assert payloads.triggers_for("apply_queued") == ()


def test_every_trigger_is_in_seed_list() -> None:
    assert set(payloads.TRIGGERS) == {
        "run:created",
        "run:planning",
        "run:needs_attention",
        "run:planned",
        "run:applying",
        "run:completed",
        "run:errored",
        "run:drift_detected",
    }


def test_generic_payload_is_tfe_version_1() -> None:
    assert payloads.generic_payload(subject()) == {
        "payload_version": 1,
        "notification_configuration_id": "nc-AAAAAAAAAAAAAAAA",
        "run_url": "https://tp.example.com/app/acme/network/runs/run-CCCCCCCCCCCCCCCC",
        "run_id": "run-CCCCCCCCCCCCCCCC",
        "run_message": "Add <queue> & workers",
        "run_created_at": "2026-01-02T03:04:05.678Z",
        "run_created_by": "alice",
        "workspace_id": "ws-BBBBBBBBBBBBBBBB",
        "workspace_name": "network",
        "organization_name": "acme",
        "notifications": [
            {
                "message": "Run Applied",
                "trigger": "run:completed",
                "run_status": "applied",
                "run_updated_at": "2026-01-02T03:05:00.000Z",
                "run_updated_by": "bob",
            }
        ],
    }


def test_verification_payload_has_no_run() -> None:
    body = payloads.generic_payload(payloads.verification(subject()))
    assert body["run_id"] is None and body["run_url"] is None and body["run_created_at"] is None
    assert body["workspace_name"] == "network"
    assert body["notifications"] == [
        {
            "message": "Verification of deploys",
            "trigger": "verification",
            "run_status": None,
            "run_updated_at": None,
            "run_updated_by": None,
        }
    ]


def test_signature_is_hex_hmac_sha512_of_the_exact_body() -> None:
    body, headers = payloads.generic_body(subject(), "secret")
    expected = hmac.new(b"secret", body, hashlib.sha512).hexdigest()
    assert headers["X-TFE-Notification-Signature"] == expected
    assert len(expected) == 128
    assert json.loads(body)["run_id"] == "run-CCCCCCCCCCCCCCCC"


def test_no_token_no_signature() -> None:
    _, headers = payloads.generic_body(subject(), None)
    assert "X-TFE-Notification-Signature" not in headers
    assert headers["Content-Type"] == "application/json"


def test_slack_message_is_block_kit_with_escaped_text_and_a_link() -> None:
    message = payloads.slack_message(subject())
    assert message["text"] == "Run Applied: acme/network"
    blocks = message["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "actions"]
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert "*Status*\napplied" in fields
    assert (
        "*Run*\n<https://tp.example.com/app/acme/network/runs/run-CCCCCCCCCCCCCCCC|run-CCCCCCCCCCCCCCCC>"
        in fields
    )
    assert blocks[2]["text"]["text"] == "Add &lt;queue&gt; &amp; workers"
    assert blocks[3]["elements"][0]["url"].endswith("/runs/run-CCCCCCCCCCCCCCCC")


def test_email_names_the_run_and_the_workspace() -> None:
    message = payloads.email_message(subject(), "tp@example.com", ["a@x.io", "b@x.io"])
    assert message["Subject"] == "[Terrapod] Run Applied: acme/network"
    assert message["To"] == "a@x.io, b@x.io"
    text = message.get_content()
    assert "run-CCCCCCCCCCCCCCCC" in text and "Add <queue> & workers" in text
    assert "https://tp.example.com/app/acme/network/runs/run-CCCCCCCCCCCCCCCC" in text


async def test_delivery_to_a_refused_address_never_connects() -> None:
    outcome = await destinations.post(
        "http://127.0.0.1:9/hook", b"{}", {}, NotificationSettings(allow_private_addresses=False)
    )
    assert outcome.successful is False and outcome.code is None
    assert outcome.body.startswith("not sent: 127.0.0.1 is a private")
    assert "notifications.allow_private_addresses" in outcome.body
