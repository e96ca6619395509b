"""The API-driven run workflow (seed 001) through the official Python SDK (pytfe 1.5.0),
against a real server whose built-in agent really plans and applies with Terraform.

Each scenario goes configuration version → upload → run → plan → apply/discard/cancel the way
an automation script would, through pytfe's own request building and response decoding, so a
missing or mistyped attribute or relationship shows up as an exception or a wrong value here.
Raw requests appear only where pytfe cannot do the step at all (reading a log by offset as
go-tfe does, the ``included`` array of a run list, minting a token).

Configurations use only the built-in ``terraform_data`` resource (no provider can be
downloaded here). Every wait polls with a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import pytest
from pytfe import TFEClient
from pytfe.errors import NotFound, TFEError
from pytfe.models import (
    ConfigurationVersion,
    ConfigurationVersionCreateOptions,
    ExecutionMode,
    Run,
    RunApplyOptions,
    RunCancelOptions,
    RunCreateOptions,
    RunDiscardOptions,
    RunIncludeOpt,
    RunListForOrganizationOptions,
    RunListOptions,
    RunReadOptions,
    Workspace,
    WorkspaceCreateOptions,
)
from pytfe.models.apply import ApplyStatus
from pytfe.models.configuration_version import ConfigurationSource, ConfigurationStatus
from pytfe.models.plan import PlanStatus
from pytfe.models.run import RunSource

from tests.e2e.harness import ServerInfo, request_counts, tfe_client

ORG = "default"
STX, ETX = b"\x02", b"\x03"

POLL_SECONDS = 0.2
UPLOAD_TIMEOUT = 30.0
# A plan or an apply of one terraform_data on the built-in agent takes a few seconds; the
# deadline only bounds a failure.
RUN_TIMEOUT = 120.0
# The slow configuration sleeps 30 s in its apply: a cancel that interrupts the engine ends the
# run long before that, one that does not lets the apply finish ("applied", a failure here).
CANCEL_TIMEOUT = 25.0
# An upload queues its run in the transaction that marks it uploaded; the deadline only bounds
# a failure.
AUTO_QUEUE_TIMEOUT = 10.0

FINAL = frozenset(
    {
        "planned_and_finished",
        "applied",
        "discarded",
        "errored",
        "canceled",
        "force_canceled",
        "policy_soft_failed",
    }
)
ALL_OPERATIONS = "plan_and_apply,plan_only,save_plan,refresh_only,destroy,empty_apply"
RUN_LIST_ROUTE = "/api/v2/workspaces/{workspace_id}/runs"

GREETING_TF = """\
resource "terraform_data" "greeting" {
  input = "hello"
}

output "greeting" {
  value = terraform_data.greeting.output
}
"""

# Provisioners run only when a resource is created, so the plan is quick and the apply sleeps.
SLOW_TF = """\
resource "terraform_data" "slow" {
  input = "slow"

  provisioner "local-exec" {
    command = "sleep 30"
  }
}
"""

MODULE_ROOT_TF = """\
module "greeting" {
  source = "./modules/greeting"
}

resource "terraform_data" "root" {
  input = module.greeting.text
}
"""

MODULE_TF = """\
resource "terraform_data" "inner" {
  input = "from a module"
}

output "text" {
  value = "from a module"
}
"""

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def api(server: ServerInfo) -> Iterator[httpx.Client]:
    with server.http(server.admin_token) as client:
        yield client


@pytest.fixture
def anonymous(server: ServerInfo) -> Iterator[httpx.Client]:
    """No Authorization header: how go-tfe reads a log-read-url."""
    with server.http() as client:
        yield client


@contextlib.contextmanager
def own_token_client(server: ServerInfo, api: httpx.Client) -> Iterator[TFEClient]:
    """pytfe with a fresh token of the admin user, revoked afterwards.

    Run lists are limited to 30 requests a minute per token (TFE's limit, seed 001); a token
    of its own keeps a test's lists from counting against any other test's.
    """
    user_id = api.get("/api/v2/account/details").json()["data"]["id"]
    response = api.post(
        f"/api/v2/users/{user_id}/authentication-tokens",
        json={
            "data": {
                "type": "authentication-tokens",
                "attributes": {"description": "e2e pytfe runs"},
            }
        },
    )
    assert response.status_code == 201, response.text
    token = response.json()["data"]
    try:
        with tfe_client(server, token["attributes"]["token"]) as sdk:
            yield sdk
    finally:
        api.delete(f"/api/v2/authentication-tokens/{token['id']}")


@pytest.fixture
def client(server: ServerInfo, api: httpx.Client) -> Iterator[TFEClient]:
    with own_token_client(server, api) as sdk:
        yield sdk


@pytest.fixture
def workspace(client: TFEClient) -> Iterator[Workspace]:
    """A fresh remote-execution workspace; its unfinished runs are ended before it is
    deleted, so a failed test leaves no job for the built-in agent."""
    created = client.workspaces.create(
        ORG,
        WorkspaceCreateOptions(name=unique("e2e-runs"), execution_mode=ExecutionMode.REMOTE),
    )
    yield created
    with contextlib.suppress(TFEError):
        runs = list(client.runs.list(created.id, RunListOptions(operation=ALL_OPERATIONS)))
        for run in runs:
            if run.actions is None or status(run) in FINAL:
                continue
            with contextlib.suppress(TFEError):
                if run.actions.is_discardable:
                    client.runs.discard(run.id)
                elif run.actions.is_cancelable:
                    client.runs.cancel(run.id)
    with contextlib.suppress(NotFound):
        client.workspaces.delete_by_id(created.id)


# --------------------------------------------------------------------------------------------
# Helpers: configuration, polling, logs
# --------------------------------------------------------------------------------------------


def status(run: Run) -> str:
    # RunStatus is a str Enum whose hash is its member name: compare and look up by value.
    assert run.status is not None, f"run {run.id} has no status"
    return str(run.status.value)


def write_config(directory: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def go_slug(files: Mapping[str, str]) -> io.BytesIO:
    """A gzip'd tar laid out as go-slug (terraform's packer) makes it: directory entries
    before their files, relative names, regular files with their modes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories = sorted(
            {
                str(Path(*Path(name).parts[:i]))
                for name in files
                for i in range(1, len(Path(name).parts))
            }
        )
        for directory in directories:
            entry = tarfile.TarInfo(directory + "/")
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o755
            entry.mtime = 1_700_000_000
            tar.addfile(entry)
        for name, text in sorted(files.items()):
            data = text.encode()
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            entry.mode = 0o644
            entry.mtime = 1_700_000_000
            tar.addfile(entry, io.BytesIO(data))
    return io.BytesIO(gzip.compress(raw.getvalue()))


def poll(
    read: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    server: ServerInfo,
) -> T:
    """``read()`` until ``done(value)``; fail with the last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what}: not reached within {timeout:.0f}s; last seen: {value!r}\n"
                f"server log tail:\n{server.log_tail(40)}"
            )
        time.sleep(POLL_SECONDS)


def create_configuration(
    client: TFEClient,
    server: ServerInfo,
    workspace_id: str,
    directory: Path,
    files: Mapping[str, str],
    *,
    auto_queue_runs: bool = False,
    speculative: bool = False,
) -> ConfigurationVersion:
    """Create a configuration version, upload ``files`` with pytfe's directory helper and
    wait until the server reports it ``uploaded``."""
    cv = client.configuration_versions.create(
        workspace_id,
        ConfigurationVersionCreateOptions(auto_queue_runs=auto_queue_runs, speculative=speculative),
    )
    assert cv.upload_url is not None
    client.configuration_versions.upload(cv.upload_url, str(write_config(directory, files)))
    return wait_uploaded(client, server, cv.id)


def wait_uploaded(client: TFEClient, server: ServerInfo, cv_id: str) -> ConfigurationVersion:
    return poll(
        lambda: client.configuration_versions.read(cv_id),
        lambda cv: cv.status is not ConfigurationStatus.PENDING,
        timeout=UPLOAD_TIMEOUT,
        what=f"configuration version {cv_id} uploaded",
        server=server,
    )


def queue_run(
    client: TFEClient,
    workspace_id: str,
    cv_id: str | None,
    message: str,
    *,
    auto_apply: bool | None = False,
    plan_only: bool | None = None,
) -> Run:
    return client.runs.create(
        RunCreateOptions(
            workspace=Workspace(id=workspace_id),
            configuration_version=ConfigurationVersion(id=cv_id) if cv_id else None,
            message=message,
            auto_apply=auto_apply,
            plan_only=plan_only,
        )
    )


def log_chunk(anonymous: httpx.Client, url: str, *, offset: int, limit: int) -> bytes:
    """One read as go-tfe's log reader makes it: the URL's query string replaced by
    ``limit``/``offset``, no Authorization header."""
    parts = urlsplit(url)
    query = urlencode({"limit": limit, "offset": offset})
    response = anonymous.get(urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")))
    assert response.status_code == 200, f"log read at offset {offset}: {response.text}"
    return response.content


def read_log(anonymous: httpx.Client, url: str, *, limit: int = 65536) -> bytes:
    """Everything the log holds right now, read chunk by chunk from increasing offsets."""
    out = bytearray()
    while chunk := log_chunk(anonymous, url, offset=len(out), limit=limit):
        assert len(chunk) <= limit
        out += chunk
    return bytes(out)


def log_text(log: bytes) -> str:
    """A finished phase's log without its STX/ETX frame."""
    assert log[:1] == STX, f"log does not start with STX: {log[:40]!r}"
    assert log[-1:] == ETX, f"log does not end with ETX: {log[-40:]!r}"
    return log[1:-1].decode()


def diagnostics(client: TFEClient, anonymous: httpx.Client, run_id: str) -> str:
    """Both phase logs of a run, for assertion messages."""
    lines = []
    run = client.runs.read(run_id)
    for name, phase in (("plan", run.plan), ("apply", run.apply)):
        if phase is None:
            continue
        read = client.plans.read if name == "plan" else client.applies.read
        url = read(phase.id).log_read_url
        text = read_log(anonymous, url).decode(errors="replace") if url else "(no log url)"
        lines.append(f"--- {name} log ---\n{text[-4000:]}")
    return "\n".join(lines)


def wait_run(
    client: TFEClient,
    server: ServerInfo,
    anonymous: httpx.Client,
    run_id: str,
    *statuses: str,
    timeout: float = RUN_TIMEOUT,
) -> Run:
    """Poll the run until its status is one of ``statuses``; a final status that is not one
    of them fails at once, with the run's logs."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    while True:
        run = client.runs.read(run_id)
        current = status(run)
        if current in wanted:
            return run
        if current in FINAL or time.monotonic() > deadline:
            pytest.fail(
                f"run {run_id} is {current} (waited for {sorted(wanted)}, "
                f"{timeout:.0f}s deadline)\n{diagnostics(client, anonymous, run_id)}\n"
                f"server log tail:\n{server.log_tail(40)}"
            )
        time.sleep(POLL_SECONDS)


def run_ids(runs: Iterator[Run]) -> list[str]:
    return [run.id for run in runs]


# --------------------------------------------------------------------------------------------
# The workflow: configuration version, upload, run, plan, apply, state
# --------------------------------------------------------------------------------------------


def test_configuration_upload_run_plan_apply_and_state(
    client: TFEClient,
    server: ServerInfo,
    anonymous: httpx.Client,
    workspace: Workspace,
    tmp_path: Path,
) -> None:
    assert workspace.execution_mode is ExecutionMode.REMOTE

    # 1. A configuration version, then its files through pytfe's upload helper.
    cv = client.configuration_versions.create(
        workspace.id, ConfigurationVersionCreateOptions(auto_queue_runs=False)
    )
    assert cv.id.startswith("cv-")
    assert cv.status is ConfigurationStatus.PENDING
    assert (cv.auto_queue_runs, cv.speculative, cv.provisional) == (False, False, False)
    assert cv.source is ConfigurationSource.API
    assert cv.upload_url is not None and cv.upload_url.startswith(f"{server.url}/")
    client.configuration_versions.upload(
        cv.upload_url, str(write_config(tmp_path / "config", {"main.tf": GREETING_TF}))
    )
    uploaded = wait_uploaded(client, server, cv.id)
    assert uploaded.status is ConfigurationStatus.UPLOADED, uploaded.error_message
    assert uploaded.status_timestamps is not None and "uploaded-at" in uploaded.status_timestamps
    # The tarball comes back as it went up.
    with tarfile.open(fileobj=io.BytesIO(client.configuration_versions.download(cv.id))) as tar:
        member = tar.extractfile("main.tf")
        assert member is not None and member.read().decode() == GREETING_TF
    # auto-queue-runs false: the upload queued nothing.
    assert run_ids(client.runs.list(workspace.id)) == []

    # 2. A run of that version: queued, then planned, then paused for confirmation.
    run = queue_run(client, workspace.id, cv.id, "first apply through pytfe")
    assert run.id.startswith("run-")
    assert status(run) in {"pending", "plan_queued", "planning"}
    assert run.message == "first apply through pytfe"
    assert (run.auto_apply, run.plan_only, run.is_destroy) == (False, False, False)
    assert run.source is RunSource.Run_Source_API
    assert run.workspace is not None and run.workspace.id == workspace.id
    assert run.configuration_version is not None and run.configuration_version.id == cv.id
    # The plan and the apply exist from the run's creation (CLIENT_FACTS.md).
    assert run.plan is not None and run.plan.id.startswith("plan-")
    assert run.apply is not None and run.apply.id.startswith("apply-")
    assert run.created_by is not None

    planned = wait_run(client, server, anonymous, run.id, "planned")
    assert planned.has_changes is True
    assert planned.actions is not None
    assert planned.actions.is_confirmable is True
    assert planned.actions.is_discardable is True
    assert planned.actions.is_cancelable is False
    assert planned.permissions is not None and planned.permissions.can_apply is True
    assert planned.status_timestamps is not None
    assert planned.status_timestamps.plan_queueable_at is not None
    assert planned.status_timestamps.planned_at is not None
    # The run holds the workspace while it waits for confirmation.
    held = client.workspaces.read_by_id(workspace.id)
    assert held.locked is True
    assert held.current_run is not None and held.current_run.id == run.id

    # 3. The plan: counts, has-changes, its JSON, and its log read by offset.
    with_plan = client.runs.read_with_options(
        run.id, RunReadOptions(include=[RunIncludeOpt.RUN_PLAN])
    )
    assert with_plan.plan is not None and with_plan.plan.id == run.plan.id
    assert with_plan.plan.status is PlanStatus.PLAN_FINISHED  # hydrated from `included`
    assert with_plan.plan.resource_additions == 1

    plan = client.plans.read(run.plan.id)
    assert plan.status is PlanStatus.PLAN_FINISHED
    assert plan.has_changes is True
    assert (
        plan.resource_additions,
        plan.resource_changes,
        plan.resource_destructions,
        plan.resource_imports,
    ) == (1, 0, 0, 0)
    assert plan.status_timestamps is not None and plan.status_timestamps.finished_at is not None
    assert client.plans.read_for_run(run.id).id == plan.id

    json_plan = client.plans.read_json_output(plan.id)
    assert json_plan is not None
    changes = [
        (c["address"], c["change"]["actions"]) for c in json_plan.get("resource_changes", [])
    ]
    assert changes == [("terraform_data.greeting", ["create"])]

    assert plan.log_read_url is not None
    whole = read_log(anonymous, plan.log_read_url)
    text = log_text(whole)
    assert "1 to add, 0 to change, 0 to destroy" in text, text
    # Offsets are honoured: small reads from increasing offsets give the same bytes, a read
    # from the middle gives that slice, and a read past the end gives nothing.
    assert read_log(anonymous, plan.log_read_url, limit=97) == whole
    assert log_chunk(anonymous, plan.log_read_url, offset=5, limit=11) == whole[5:16]
    assert log_chunk(anonymous, plan.log_read_url, offset=len(whole), limit=100) == b""

    # 4. Apply it.
    client.runs.apply(run.id, RunApplyOptions(comment="looks good"))
    applied = wait_run(client, server, anonymous, run.id, "applied")
    assert applied.actions is not None
    assert not (
        applied.actions.is_confirmable
        or applied.actions.is_discardable
        or applied.actions.is_cancelable
    )
    assert applied.status_timestamps is not None
    assert applied.status_timestamps.confirmed_at is not None
    assert applied.status_timestamps.applied_at is not None
    assert applied.confirmed_by is not None and applied.created_by is not None
    assert applied.confirmed_by.id == applied.created_by.id

    apply = client.applies.read(run.apply.id)
    assert apply.status is ApplyStatus.APPLY_FINISHED
    assert (apply.resource_additions, apply.resource_changes, apply.resource_destructions) == (
        1,
        0,
        0,
    )
    assert apply.log_read_url is not None
    apply_text = log_text(read_log(anonymous, apply.log_read_url))
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in apply_text, apply_text

    # A finished run cannot be applied again.
    with pytest.raises(TFEError) as again:
        client.runs.apply(run.id)
    assert again.value.status == 409

    # 5. The apply left a state version holding the resource and its output; the workspace is
    # free again.
    current = client.state_versions.read_current(workspace.id)
    assert current.id.startswith("sv-")
    state = json.loads(client.state_versions.download(current.id))
    assert [(r["type"], r["name"]) for r in state["resources"]] == [("terraform_data", "greeting")]
    assert state["outputs"]["greeting"]["value"] == "hello"
    outputs = {o.name: o.value for o in client.state_versions.list_outputs(current.id)}
    assert outputs == {"greeting": "hello"}
    after = client.workspaces.read_by_id(workspace.id)
    assert after.locked is False
    assert after.current_run is not None and after.current_run.id == run.id

    # 6. Its run events tell the story in order, with the apply comment.
    events = list(client.run_events.list(run.id))
    assert [e.action for e in events] == [
        "queued",
        "planning",
        "planned",
        "confirmed",
        "applying",
        "applied",
    ]
    assert all(e.id and e.created_at is not None for e in events)
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)  # type: ignore[type-var]
    confirmed = events[3]
    assert confirmed.description == "looks good"
    assert confirmed.actor is not None and confirmed.actor.id == applied.confirmed_by.id
    one = client.run_events.read(confirmed.id)
    assert (one.id, one.action, one.description) == (confirmed.id, "confirmed", "looks good")


# --------------------------------------------------------------------------------------------
# Discard: the run behind a discarded one starts
# --------------------------------------------------------------------------------------------


def test_discarding_a_planned_run_starts_the_run_waiting_behind_it(
    client: TFEClient,
    server: ServerInfo,
    anonymous: httpx.Client,
    workspace: Workspace,
    tmp_path: Path,
) -> None:
    cv = create_configuration(client, server, workspace.id, tmp_path, {"main.tf": GREETING_TF})
    first = queue_run(client, workspace.id, cv.id, "to be discarded")
    wait_run(client, server, anonymous, first.id, "planned")

    # The first run holds the workspace, so the second waits for it.
    second = queue_run(client, workspace.id, cv.id, "waiting behind")
    assert status(second) == "pending"
    assert status(client.runs.read(second.id)) == "pending"
    held = client.workspaces.read_by_id(workspace.id)
    assert held.current_run is not None and held.current_run.id == first.id

    client.runs.discard(first.id, RunDiscardOptions(comment="not this one"))
    discarded = wait_run(client, server, anonymous, first.id, "discarded")
    assert discarded.actions is not None
    assert not (
        discarded.actions.is_confirmable
        or discarded.actions.is_discardable
        or discarded.actions.is_cancelable
    )
    assert discarded.status_timestamps is not None
    assert discarded.status_timestamps.discarded_at is not None
    assert discarded.apply is not None
    # Its plan stays as it was; its apply never happens.
    assert discarded.plan is not None
    assert client.plans.read(discarded.plan.id).status is PlanStatus.PLAN_FINISHED
    assert client.applies.read(discarded.apply.id).status is ApplyStatus.APPLY_UNREACHABLE
    events = list(client.run_events.list(first.id))
    assert [e.action for e in events][-1] == "discarded"
    assert events[-1].description == "not this one"

    # Neither a discarded run's apply nor a second discard is allowed.
    for action in (client.runs.apply, client.runs.discard):
        with pytest.raises(TFEError) as refused:
            action(first.id)
        assert refused.value.status == 409

    # The waiting run took the workspace and planned.
    started = wait_run(client, server, anonymous, second.id, "planned")
    assert started.has_changes is True
    assert client.workspaces.read_by_id(workspace.id).current_run.id == second.id  # type: ignore[union-attr]
    client.runs.discard(second.id)
    wait_run(client, server, anonymous, second.id, "discarded")
    assert client.workspaces.read_by_id(workspace.id).locked is False
    with pytest.raises(NotFound):
        client.state_versions.read_current(workspace.id)  # nothing was ever applied


# --------------------------------------------------------------------------------------------
# Cancel: an apply interrupted in the middle of a 30 s provisioner
# --------------------------------------------------------------------------------------------


def test_cancel_interrupts_an_apply_and_frees_the_workspace(
    client: TFEClient,
    server: ServerInfo,
    anonymous: httpx.Client,
    workspace: Workspace,
    tmp_path: Path,
) -> None:
    cv = create_configuration(client, server, workspace.id, tmp_path, {"main.tf": SLOW_TF})
    run = queue_run(client, workspace.id, cv.id, "slow apply", auto_apply=True)
    assert run.auto_apply is True
    assert run.apply is not None

    # auto-apply: no confirmation; wait until the engine is inside the provisioner's sleep.
    applying = wait_run(client, server, anonymous, run.id, "applying")
    assert applying.actions is not None and applying.actions.is_cancelable is True
    assert applying.confirmed_by is None  # nobody confirmed it
    apply_url = client.applies.read(run.apply.id).log_read_url
    assert apply_url is not None
    poll(
        lambda: read_log(anonymous, apply_url),
        lambda log: b"local-exec" in log,
        timeout=RUN_TIMEOUT,
        what="the apply log shows the local-exec provisioner running",
        server=server,
    )
    assert client.applies.read(run.apply.id).status is ApplyStatus.APPLY_RUNNING
    waiting = queue_run(client, workspace.id, cv.id, "waiting behind the slow apply")
    assert status(waiting) == "pending"

    client.runs.cancel(run.id, RunCancelOptions(comment="too slow"))
    canceled = wait_run(client, server, anonymous, run.id, "canceled", timeout=CANCEL_TIMEOUT)
    assert canceled.canceled_at is not None
    assert canceled.status_timestamps is not None
    assert canceled.status_timestamps.canceled_at is not None
    assert canceled.actions is not None
    assert not (canceled.actions.is_cancelable or canceled.actions.is_force_cancelable)
    apply = client.applies.read(run.apply.id)
    assert apply.status is ApplyStatus.APPLY_CANCELED
    assert apply.log_read_url is not None
    apply_log = poll(
        lambda: read_log(anonymous, apply_url),
        lambda log: log.endswith(ETX),
        timeout=UPLOAD_TIMEOUT,
        what="the canceled apply's log is closed with ETX",
        server=server,
    )
    assert "Creation complete" not in log_text(apply_log)
    actions = [e.action for e in client.run_events.list(run.id)]
    assert "cancel_requested" in actions and actions[-1] == "canceled", actions
    described = {e.action: e.description for e in client.run_events.list(run.id)}
    assert described["cancel_requested"] == "too slow"
    # A canceled run cannot be canceled again.
    with pytest.raises(TFEError) as again:
        client.runs.cancel(run.id)
    assert again.value.status == 409

    # The workspace was released: the waiting run starts and plans.
    wait_run(client, server, anonymous, waiting.id, "planned")
    client.runs.discard(waiting.id)
    wait_run(client, server, anonymous, waiting.id, "discarded")


# --------------------------------------------------------------------------------------------
# auto-queue-runs: the upload queues the run
# --------------------------------------------------------------------------------------------


def test_auto_queue_runs_queues_a_run_when_the_configuration_arrives(
    client: TFEClient, server: ServerInfo, anonymous: httpx.Client, workspace: Workspace
) -> None:
    cv = client.configuration_versions.create(
        workspace.id, ConfigurationVersionCreateOptions(auto_queue_runs=True)
    )
    assert cv.auto_queue_runs is True
    assert cv.upload_url is not None
    assert run_ids(client.runs.list(workspace.id)) == []  # nothing before the upload

    # A go-slug-style tarball with a local module, through pytfe's tar.gz upload.
    client.configuration_versions.upload_tar_gzip(
        cv.upload_url,
        go_slug({"main.tf": MODULE_ROOT_TF, "modules/greeting/main.tf": MODULE_TF}),
    )
    assert wait_uploaded(client, server, cv.id).status is ConfigurationStatus.UPLOADED

    # Watched through the workspace's latest-run: run lists are rate limited, reads are not.
    poll(
        lambda: client.workspaces.read_by_id(workspace.id).latest_run,
        lambda latest: latest is not None,
        timeout=AUTO_QUEUE_TIMEOUT,
        what="a run queued by the upload (the workspace's latest-run)",
        server=server,
    )
    queued = list(client.runs.list(workspace.id))
    assert len(queued) == 1
    run = queued[0]
    assert run.configuration_version is not None and run.configuration_version.id == cv.id
    assert run.source is RunSource.Run_Source_Configuration_Version
    assert run.plan_only is False

    planned = wait_run(client, server, anonymous, run.id, "planned")
    assert planned.plan is not None
    plan = client.plans.read(planned.plan.id)
    assert (plan.has_changes, plan.resource_additions) == (True, 2)  # root + module resource
    client.runs.discard(run.id)
    wait_run(client, server, anonymous, run.id, "discarded")
    assert len(list(client.runs.list(workspace.id))) == 1  # the upload queued exactly one


# --------------------------------------------------------------------------------------------
# Speculative configuration: plan-only runs
# --------------------------------------------------------------------------------------------


def test_speculative_configuration_gives_a_plan_only_run_that_cannot_be_applied(
    client: TFEClient,
    server: ServerInfo,
    anonymous: httpx.Client,
    workspace: Workspace,
    tmp_path: Path,
) -> None:
    cv = create_configuration(
        client, server, workspace.id, tmp_path, {"main.tf": GREETING_TF}, speculative=True
    )
    assert cv.speculative is True

    run = queue_run(client, workspace.id, cv.id, "what would change?")
    assert run.plan_only is True  # taken from the configuration version
    assert run.auto_apply is False
    finished = wait_run(client, server, anonymous, run.id, "planned_and_finished")
    assert finished.has_changes is True
    assert finished.actions is not None
    assert not (finished.actions.is_confirmable or finished.actions.is_discardable)
    assert finished.status_timestamps is not None
    assert finished.status_timestamps.planned_and_finished_at is not None
    assert finished.plan is not None and finished.apply is not None
    plan = client.plans.read(finished.plan.id)
    assert (plan.status, plan.has_changes, plan.resource_additions) == (
        PlanStatus.PLAN_FINISHED,
        True,
        1,
    )
    assert plan.log_read_url is not None
    assert "1 to add" in log_text(read_log(anonymous, plan.log_read_url))

    with pytest.raises(TFEError) as refused:
        client.runs.apply(run.id, RunApplyOptions(comment="please"))
    assert refused.value.status == 409
    after = client.runs.read(run.id)
    assert status(after) == "planned_and_finished"
    assert client.applies.read(finished.apply.id).status is ApplyStatus.APPLY_UNREACHABLE
    with pytest.raises(NotFound):
        client.state_versions.read_current(workspace.id)
    # A plan-only run never held the workspace.
    workspace_now = client.workspaces.read_by_id(workspace.id)
    assert workspace_now.locked is False
    assert workspace_now.current_run is None

    # Workspace run lists leave plan-only runs out unless asked for by operation.
    assert run_ids(client.runs.list(workspace.id)) == []
    assert run_ids(client.runs.list(workspace.id, RunListOptions(operation="plan_only"))) == [
        run.id
    ]


# --------------------------------------------------------------------------------------------
# Run lists: filters, search, paging, include
# --------------------------------------------------------------------------------------------


def test_run_lists_filter_search_page_and_include_plans(
    client: TFEClient,
    server: ServerInfo,
    api: httpx.Client,
    anonymous: httpx.Client,
    workspace: Workspace,
    tmp_path: Path,
) -> None:
    tag = secrets.token_hex(3)
    cv = create_configuration(client, server, workspace.id, tmp_path, {"main.tf": GREETING_TF})

    alpha = queue_run(client, workspace.id, cv.id, f"{tag} alpha")
    wait_run(client, server, anonymous, alpha.id, "planned")
    client.runs.discard(alpha.id)
    wait_run(client, server, anonymous, alpha.id, "discarded")
    beta = queue_run(client, workspace.id, cv.id, f"{tag} beta")
    wait_run(client, server, anonymous, beta.id, "planned")
    gamma = queue_run(client, workspace.id, cv.id, f"{tag} gamma")  # waits behind beta
    delta = queue_run(client, workspace.id, cv.id, f"{tag} delta", plan_only=True)
    assert delta.plan_only is True
    wait_run(client, server, anonymous, delta.id, "planned_and_finished")
    assert status(client.runs.read(gamma.id)) == "pending"

    def listed(**options: object) -> list[str]:
        return run_ids(client.runs.list(workspace.id, RunListOptions(**options)))  # type: ignore[arg-type]

    # Newest first; plan-only runs only when their operation is asked for.
    assert listed() == [gamma.id, beta.id, alpha.id]
    assert listed(operation="plan_and_apply,plan_only") == [
        delta.id,
        gamma.id,
        beta.id,
        alpha.id,
    ]
    assert listed(operation="plan_only") == [delta.id]
    assert listed(operation="destroy") == []

    assert listed(status="planned") == [beta.id]
    assert listed(status="discarded,pending") == [gamma.id, alpha.id]
    assert listed(status="applied") == []
    assert listed(status="planned_and_finished", operation="plan_only") == [delta.id]

    assert listed(search="beta") == [beta.id]
    assert listed(search=tag) == [gamma.id, beta.id, alpha.id]
    assert listed(search=alpha.id) == [alpha.id]
    assert listed(search="alpha", status="planned") == []
    assert listed(source="tfe-api") == [gamma.id, beta.id, alpha.id]
    assert listed(source="tfe-configuration-version") == []

    # Paging: pytfe follows next-page, one request per page.
    before = request_counts(server)
    assert listed(page_size=1) == [gamma.id, beta.id, alpha.id]
    requests = (request_counts(server) - before).for_route(RUN_LIST_ROUTE)
    assert requests == {("GET", "200"): 3}, requests
    assert listed(page_number=2, page_size=2) == [alpha.id]
    with pytest.raises(TFEError) as bad:
        listed(status="sleeping")
    assert bad.value.status == 400

    # include=plan. pytfe's list puts the enum's name on the wire (include=RunIncludeOpt.RUN_PLAN)
    # and drops `included` from list responses, so this one is read raw.
    response = api.get(
        f"/api/v2/workspaces/{workspace.id}/runs",
        params={"include": "plan", "page[size]": "2"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["id"] for r in body["data"]] == [gamma.id, beta.id]
    pagination = body["meta"]["pagination"]
    assert (pagination["current-page"], pagination["next-page"]) == (1, 2)
    assert (pagination["total-pages"], pagination["total-count"]) == (2, 3)
    plan_ids = [r["relationships"]["plan"]["data"]["id"] for r in body["data"]]
    included = {(i["type"], i["id"]): i["attributes"] for i in body["included"]}
    assert set(included) == {("plans", plan_id) for plan_id in plan_ids}
    assert included[("plans", plan_ids[0])]["status"] == "pending"  # gamma waits
    beta_plan = included[("plans", plan_ids[1])]
    assert (beta_plan["status"], beta_plan["has-changes"], beta_plan["resource-additions"]) == (
        "finished",
        True,
        1,
    )

    # An include value the server does not know (pytfe's) is ignored, not refused.
    assert listed(include=[RunIncludeOpt.RUN_PLAN]) == [gamma.id, beta.id, alpha.id]

    # The organization's list includes plan-only runs and filters by workspace name. (Another
    # token: the lists above used most of this one's 30 a minute.)
    with own_token_client(server, api) as org_client:

        def in_org(**options: object) -> list[str]:
            return run_ids(
                org_client.runs.list_for_organization(
                    ORG,
                    RunListForOrganizationOptions(workspace_names=workspace.name, **options),  # type: ignore[arg-type]
                )
            )

        assert in_org() == [delta.id, gamma.id, beta.id, alpha.id]
        assert in_org(status_group="non_final") == [gamma.id, beta.id]
        assert in_org(status_group="final") == [delta.id, alpha.id]
        assert in_org(status_group="discardable") == [beta.id]
        assert in_org(basic="delta") == [delta.id]
        assert in_org(operation="plan_only", status="planned_and_finished") == [delta.id]
        assert in_org(page_size=3) == [delta.id, gamma.id, beta.id, alpha.id]


# --------------------------------------------------------------------------------------------
# Run events of a run that never ran
# --------------------------------------------------------------------------------------------


def test_run_events_of_a_run_discarded_while_waiting(
    client: TFEClient,
    server: ServerInfo,
    anonymous: httpx.Client,
    workspace: Workspace,
    tmp_path: Path,
) -> None:
    cv = create_configuration(client, server, workspace.id, tmp_path, {"main.tf": GREETING_TF})
    holder = queue_run(client, workspace.id, cv.id, "holds the workspace")
    wait_run(client, server, anonymous, holder.id, "planned")
    waiting = queue_run(client, workspace.id, cv.id, "never runs")
    assert status(waiting) == "pending"
    assert waiting.actions is not None and waiting.actions.is_discardable is True

    client.runs.discard(waiting.id, RunDiscardOptions(comment="changed my mind"))
    ended = client.runs.read(waiting.id)
    assert status(ended) == "discarded"
    events = list(client.run_events.list(waiting.id))
    assert [(e.action, e.description) for e in events] == [
        ("queued", "Run queued"),
        ("discarded", "changed my mind"),
    ]
    assert all(e.actor is not None and e.actor.id == ended.created_by.id for e in events)  # type: ignore[union-attr]
    assert ended.plan is not None
    assert client.plans.read(ended.plan.id).status is PlanStatus.PLAN_UNREACHABLE
    # The holder was untouched.
    assert status(client.runs.read(holder.id)) == "planned"
    client.runs.discard(holder.id)
    wait_run(client, server, anonymous, holder.id, "discarded")
