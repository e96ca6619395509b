"""What a notification says: run statuses to triggers, and the bodies each destination gets.

Pure functions, no I/O. The generic payload is TFE's "payload_version 1" document (HCP
Terraform, "Notification payload"); Slack gets an incoming-webhook message in Block Kit; email
a plain-text message. A generic destination with a token gets the hex HMAC-SHA512 of the exact
body bytes in ``X-TFE-Notification-Signature``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import orjson

from terrapod.timefmt import iso

CREATED = "run:created"
PLANNING = "run:planning"
NEEDS_ATTENTION = "run:needs_attention"
PLANNED = "run:planned"
APPLYING = "run:applying"
COMPLETED = "run:completed"
ERRORED = "run:errored"
DRIFT_DETECTED = "run:drift_detected"
# Seed 003's list. run:drift_detected is accepted but never fires: drift detection is not built.
TRIGGERS = (
    CREATED,
    PLANNING,
    NEEDS_ATTENTION,
    PLANNED,
    APPLYING,
    COMPLETED,
    ERRORED,
    DRIFT_DETECTED,
)
VERIFICATION = "verification"

SIGNATURE_HEADER = "X-TFE-Notification-Signature"

# Run status -> the triggers it fires, most specific first. A configuration subscribed to
# several of them gets one notification, for the first one it is subscribed to.
_BY_STATUS: dict[str, tuple[str, ...]] = {
    "pending": (CREATED,),
    "planning": (PLANNING,),
    # A plan with changes waits for someone to confirm it (auto-apply runs skip this status).
    "planned": (NEEDS_ATTENTION, PLANNED),
    "policy_override": (NEEDS_ATTENTION,),
    "planned_and_saved": (PLANNED,),
    # Nothing to apply, or a plan-only run: the run is over, and it went well.
    "planned_and_finished": (COMPLETED, PLANNED),
    "applying": (APPLYING,),
    "applied": (COMPLETED,),
    # TFE: "A run terminates early due to error or cancellation".
    "errored": (ERRORED,),
    "canceled": (ERRORED,),
    "force_canceled": (ERRORED,),
    "discarded": (ERRORED,),
}

_MESSAGES = {
    "pending": "Run Created",
    "planning": "Run Planning",
    "planned": "Run Needs Attention",
    "policy_override": "Run Needs Attention",
    "planned_and_saved": "Run Planned and Saved",
    "planned_and_finished": "Run Planned and Finished",
    "apply_queued": "Run Planned",
    "applying": "Run Applying",
    "applied": "Run Applied",
    "errored": "Run Errored",
    "canceled": "Run Canceled",
    "force_canceled": "Run Canceled",
    "discarded": "Run Discarded",
}


def triggers_for(
    status: str, *, auto_apply: bool = False, confirmed: bool = False
) -> tuple[str, ...]:
    """The triggers a run entering ``status`` fires (empty: none).

    An auto-apply run never stops at ``planned``: its plan finishing shows as the move to
    ``apply_queued`` without a confirmation, which is ``run:planned``. A confirmed run moving
    to ``apply_queued`` fires nothing (``run:applying`` follows).
    """
    if status == "apply_queued":
        return (PLANNED,) if auto_apply and not confirmed else ()
    return _BY_STATUS.get(status, ())


def message_for(status: str) -> str:
    return _MESSAGES.get(status, "Run " + status.replace("_", " ").title())


def sign(body: bytes, token: str) -> str:
    """The hex HMAC-SHA512 of ``body`` keyed with ``token`` (X-TFE-Notification-Signature)."""
    return hmac.new(token.encode(), body, hashlib.sha512).hexdigest()


# -- what a notification is about -----------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    id: str
    url: str
    message: str
    created_at: datetime
    created_by: str | None


@dataclass(frozen=True)
class Notification:
    """One event. ``trigger`` is ``verification`` (and the run fields None) for a test."""

    message: str
    trigger: str
    run_status: str | None = None
    run_updated_at: datetime | None = None
    run_updated_by: str | None = None


@dataclass(frozen=True)
class Subject:
    configuration_id: str
    configuration_name: str
    workspace_id: str
    workspace_name: str
    organization_name: str
    run: RunFacts | None
    notification: Notification


def verification(subject_base: Subject) -> Subject:
    """The test notification of ``verify``: no run."""
    return Subject(
        configuration_id=subject_base.configuration_id,
        configuration_name=subject_base.configuration_name,
        workspace_id=subject_base.workspace_id,
        workspace_name=subject_base.workspace_name,
        organization_name=subject_base.organization_name,
        run=None,
        notification=Notification(
            message=f"Verification of {subject_base.configuration_name}", trigger=VERIFICATION
        ),
    )


def run_url(base_url: str, organization: str, workspace: str, run_id: str) -> str:
    """TFE's run address (``/app/<org>/<workspace>/runs/<run>``)."""
    return f"{base_url.rstrip('/')}/app/{organization}/{workspace}/runs/{run_id}"


# -- bodies ----------------------------------------------------------------------------------


def generic_payload(subject: Subject) -> dict[str, Any]:
    """TFE's generic webhook payload, version 1."""
    run = subject.run
    n = subject.notification
    return {
        "payload_version": 1,
        "notification_configuration_id": subject.configuration_id,
        "run_url": run.url if run else None,
        "run_id": run.id if run else None,
        "run_message": run.message if run else None,
        "run_created_at": iso(run.created_at) if run else None,
        "run_created_by": run.created_by if run else None,
        "workspace_id": subject.workspace_id,
        "workspace_name": subject.workspace_name,
        "organization_name": subject.organization_name,
        "notifications": [
            {
                "message": n.message,
                "trigger": n.trigger,
                "run_status": n.run_status,
                "run_updated_at": iso(n.run_updated_at),
                "run_updated_by": n.run_updated_by,
            }
        ],
    }


def generic_body(subject: Subject, token: str | None) -> tuple[bytes, dict[str, str]]:
    """The exact bytes to POST and their headers (with the signature when there is a token)."""
    body = orjson.dumps(generic_payload(subject))
    headers = {"Content-Type": "application/json"}
    if token:
        headers[SIGNATURE_HEADER] = sign(body, token)
    return body, headers


def _escape(text: str) -> str:
    """Slack mrkdwn control characters (its documented escapes)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(subject: Subject) -> dict[str, Any]:
    """A Slack incoming-webhook message: a fallback ``text`` and Block Kit ``blocks`` with the
    run, the workspace, the status and a button to the run."""
    n = subject.notification
    where = f"{subject.organization_name}/{subject.workspace_name}"
    headline = f"{n.message}: {where}"
    fields = [
        {"type": "mrkdwn", "text": f"*Workspace*\n{_escape(where)}"},
        {"type": "mrkdwn", "text": f"*Status*\n{_escape(n.run_status or n.trigger)}"},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
    ]
    run = subject.run
    if run is not None:
        fields.append({"type": "mrkdwn", "text": f"*Run*\n<{run.url}|{run.id}>"})
        if run.created_by:
            fields.append({"type": "mrkdwn", "text": f"*Created by*\n{_escape(run.created_by)}"})
        blocks.append({"type": "section", "fields": fields})
        if run.message:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": _escape(run.message)[:2900]}}
            )
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "View run"},
                        "url": run.url,
                    }
                ],
            }
        )
    else:
        blocks.append({"type": "section", "fields": fields})
    return {"text": headline, "blocks": blocks}


def email_message(subject: Subject, sender: str, recipients: list[str]) -> EmailMessage:
    n = subject.notification
    where = f"{subject.organization_name}/{subject.workspace_name}"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = f"[Terrapod] {n.message}: {where}"
    lines = [f"{n.message} in workspace {where}.", ""]
    run = subject.run
    if run is not None:
        lines += [
            f"Run:        {run.id}",
            f"Status:     {n.run_status}",
            f"Message:    {run.message}",
            f"Created by: {run.created_by or '-'}",
            f"Created at: {iso(run.created_at)}",
            "",
            run.url,
        ]
    else:
        lines.append(
            f"This is a test of the notification configuration {subject.configuration_name!r}."
        )
    lines += ["", f"Notification configuration: {subject.configuration_id}"]
    message.set_content("\n".join(lines) + "\n")
    return message
