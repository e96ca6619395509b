"""Terrapod as the state backend of real Terraform 1.15.5 (``cloud {}`` block, TLS).

Every workspace here lives in an organization whose ``default-execution-mode`` is ``local``
(``harness.LOCAL_EXECUTION_ORG``), so Terraform runs everything locally and uses Terrapod only
for workspaces, locks and state versions (CLIENT_FACTS.md, "Local execution mode"), although
the entitlement ``operations`` is true (remote runs: ``test_remote_runs.py``). Every scenario
checks Terraform's exit code and output first and then what the API says: the current state
version, its serial, outputs and the workspace's lock.

Only the built-in ``terraform_data`` resource and outputs are used (no provider can be
downloaded here). Each test works in workspaces with unique names on the shared server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_TOKEN
from tests.databases import temporary_database
from tests.e2e.harness import (
    LOCAL_EXECUTION_ORG,
    TERRAPOD_BIN,
    RequestCounts,
    ServerInfo,
    Terraform,
    describe,
    ensure_local_execution_org,
    output_of,
    run_server,
    write_cloud_config,
)

ORG = LOCAL_EXECUTION_ORG
TERRAFORM_VERSION = "1.15.5"

# Route templates as the server's request counters name them.
STATE_VERSIONS = "/api/v2/workspaces/{workspace_id}/state-versions"
STATE_VERSION = "/api/v2/state-versions/{sv_id}"
CURRENT_STATE = "/api/v2/workspaces/{workspace_id}/current-state-version"
CURRENT_OUTPUTS = "/api/v2/workspaces/{workspace_id}/current-state-version-outputs"
OUTPUT = "/api/v2/state-version-outputs/{output_id}"
OBJECTS = "/objects/{token}"
LOCK = "/api/v2/workspaces/{workspace_id}/actions/lock"
UNLOCK = "/api/v2/workspaces/{workspace_id}/actions/unlock"
FORCE_UNLOCK = "/api/v2/workspaces/{workspace_id}/actions/force-unlock"
WORKSPACES = "/api/v2/organizations/{org_name}/workspaces"
WORKSPACE_BY_NAME = "/api/v2/organizations/{org_name}/workspaces/{name}"
SAFE_DELETE_BY_NAME = "/api/v2/organizations/{org_name}/workspaces/{name}/actions/safe-delete"
WORKSPACE_TAGS = "/api/v2/workspaces/{workspace_id}/relationships/tags"

# What Terraform sends to lock a workspace (CLIENT_FACTS.md).
LOCK_BODY = {"data": {"type": "", "attributes": {"reason": "Locked by Terraform"}}}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------------------------
# Request counters, read once the server has finished counting
# --------------------------------------------------------------------------------------------

SETTLE_TIMEOUT_SECONDS = 10.0


def settled_counts(server: ServerInfo) -> RequestCounts:
    """The server's request counters once every request but this one is counted.

    The server counts a request when its handler returns, which is after the response (and a
    streamed download's background task) went out: a terraform process can exit while its
    last requests are still uncounted. ``terrapod_http_requests_in_flight`` drops to 1 (the
    ``/metrics`` request reading it) only when they all are. Same result as
    ``harness.request_counts``, without that race.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    with server.http() as client:
        while True:
            response = client.get("/metrics", headers={"Accept": "text/plain"})
            response.raise_for_status()
            in_flight = None
            counts: dict[tuple[str, str, str], float] = {}
            for family in text_string_to_metric_families(response.text):
                if family.name == "terrapod_http_requests_in_flight":
                    in_flight = family.samples[0].value
                elif family.name == "terrapod_http_requests":
                    for sample in family.samples:
                        if sample.name == "terrapod_http_requests_total":
                            labels = sample.labels
                            key = (labels["method"], labels["route"], labels["status"])
                            counts[key] = sample.value
            assert in_flight is not None, "no terrapod_http_requests_in_flight gauge"
            if in_flight <= 1:
                return RequestCounts(counts)
            assert time.monotonic() < deadline, (
                f"{in_flight - 1:g} requests still in flight after {SETTLE_TIMEOUT_SECONDS:g}s"
            )
            time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# Helpers: Terraform runs and API reads
# --------------------------------------------------------------------------------------------


def ok(
    terraform: Terraform, args: list[str], cwd: Path, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run terraform and insist on exit code 0."""
    result = terraform.run(no_color(args), cwd, input=input)
    assert result.returncode == 0, describe(result)
    return result


def fails(terraform: Terraform, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run terraform and insist on exit code 1."""
    result = terraform.run(no_color(args), cwd)
    assert result.returncode == 1, describe(result)
    return result


def no_color(args: list[str]) -> list[str]:
    """``args`` with ``-no-color`` right after the (sub)command: Go's flag parsing stops at
    the first positional argument. Commands that print data (state pull/list, output -raw and
    -json) are left alone."""
    if args[:2] in (["state", "pull"], ["state", "list"]) or {"-raw", "-json"} & set(args):
        return args
    n = 2 if args[0] in ("state", "workspace") else 1
    return [*args[:n], "-no-color", *args[n:]]


def init_and_apply(
    terraform: Terraform, server: ServerInfo, cwd: Path, workspace: str, resources: str
) -> subprocess.CompletedProcess[str]:
    write_cloud_config(
        cwd, hostname=server.hostname, organization=ORG, workspace=workspace, resources=resources
    )
    ok(terraform, ["init"], cwd)
    return ok(terraform, ["apply", "-auto-approve"], cwd)


def workspace_of(api: httpx.Client, name: str) -> dict[str, Any]:
    response = api.get(f"/api/v2/organizations/{ORG}/workspaces/{name}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def current_of(api: httpx.Client, workspace_id: str) -> dict[str, Any] | None:
    """The workspace's current state version, or None when it has none (404)."""
    response = api.get(f"/api/v2/workspaces/{workspace_id}/current-state-version")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def current_serial(api: httpx.Client, workspace_id: str) -> int:
    current = current_of(api, workspace_id)
    assert current is not None, "the workspace has no current state version"
    serial: int = current["attributes"]["serial"]
    return serial


def download(api: httpx.Client, sv_id: str) -> bytes:
    response = api.get(f"/api/v2/state-versions/{sv_id}/download", headers={"Accept": "*/*"})
    assert response.status_code == 200, response.text
    return response.content


def current_outputs(api: httpx.Client, workspace_id: str) -> dict[str, dict[str, Any]]:
    """``{name: attributes + id}`` of the current state version's outputs."""
    response = api.get(f"/api/v2/workspaces/{workspace_id}/current-state-version-outputs")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["pagination"]["total-pages"] == 1, body
    return {o["attributes"]["name"]: {**o["attributes"], "id": o["id"]} for o in body["data"]}


def resource_names(state_version: dict[str, Any]) -> dict[str, int]:
    """``{"type.name": instance count}`` from a state version's ``resources`` summary."""
    return {
        f"{r['type']}.{r['name']}": r["count"] for r in state_version["attributes"]["resources"]
    }


def lock_holder(workspace: dict[str, Any]) -> dict[str, Any] | None:
    data: dict[str, Any] | None = workspace["relationships"]["locked-by"]["data"]
    return data


def admin_user_id(api: httpx.Client) -> str:
    response = api.get("/api/v2/account/details")
    assert response.status_code == 200, response.text
    user_id: str = response.json()["data"]["id"]
    return user_id


def no_server_errors(hits: Any) -> list[Any]:
    return [k for k in hits.counts if k[2].startswith("5")]


@pytest.fixture(autouse=True)
def local_execution_org(request: pytest.FixtureRequest) -> None:
    """ORG, with workspaces in local execution mode, on the server the test uses (the shared
    one; ``private_server`` creates its own)."""
    if "server" in request.fixturenames:
        ensure_local_execution_org(request.getfixturevalue("server"))


@pytest.fixture
def api(server: ServerInfo) -> Iterator[httpx.Client]:
    """Raw JSON:API client authenticated as the bootstrap admin."""
    with server.http(server.admin_token) as client:
        yield client


# --------------------------------------------------------------------------------------------
# apply, outputs and what the API records
# --------------------------------------------------------------------------------------------

APP_CONFIG = """
resource "terraform_data" "web" {
  input = "web-1"
}

resource "terraform_data" "db" {
  input = {
    engine = "postgres"
    size   = 2
  }
}

resource "terraform_data" "replica" {
  count = 2
  input = "replica-${count.index}"
}

output "web" {
  value = terraform_data.web.output
}

output "web_id" {
  value = terraform_data.web.id
}

output "db" {
  value = terraform_data.db.output
}

output "replicas" {
  value = terraform_data.replica[*].output
}

output "password" {
  value     = "s3cr3t-${terraform_data.web.output}"
  sensitive = true
}
"""


def test_apply_stores_state_and_outputs_readable_by_cli_and_api(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    name = unique("ws-apply")
    cwd = tmp_path / "cfg"
    write_cloud_config(
        cwd, hostname=server.hostname, organization=ORG, workspace=name, resources=APP_CONFIG
    )
    ok(terraform, ["init"], cwd)

    before = settled_counts(server)
    applied = ok(terraform, ["apply", "-auto-approve"], cwd)
    hits = settled_counts(server) - before

    context = f"{describe(applied)}\n--- requests ---\n{hits}"
    text = output_of(applied)
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in text, context
    assert 'web = "web-1"' in text, context
    assert "password = <sensitive>" in text, context
    # Local execution: lock, upload the new state through the signed URLs, unlock.
    assert hits.get("POST", LOCK, 200) == 1, context
    assert hits.get("POST", STATE_VERSIONS, 201) == 1, context
    assert hits.get("PUT", OBJECTS, 200) == 2, context  # the state and the JSON state
    assert hits.get("GET", STATE_VERSION, 200) >= 1, context  # polled until finalized
    assert hits.get("POST", UNLOCK, 200) == 1, context
    assert not no_server_errors(hits), context

    # terraform output reads the current state version's outputs, sensitive ones one by one.
    before = settled_counts(server)
    listed = ok(terraform, ["output"], cwd)
    hits = settled_counts(server) - before
    assert 'web = "web-1"' in listed.stdout, describe(listed)
    assert 'replicas = [\n  "replica-0",\n  "replica-1",\n]' in listed.stdout, describe(listed)
    assert "password = <sensitive>" in listed.stdout, describe(listed)
    assert hits.get("GET", CURRENT_OUTPUTS, 200) == 1, hits
    assert hits.get("GET", OUTPUT, 200) == 1, hits  # the one sensitive output
    assert hits.for_route(OBJECTS) == {}, hits  # no full-state download needed

    raw = ok(terraform, ["output", "-raw", "password"], cwd)
    assert raw.stdout == "s3cr3t-web-1", describe(raw)

    as_json = json.loads(ok(terraform, ["output", "-json"], cwd).stdout)
    assert as_json["db"]["value"] == {"engine": "postgres", "size": 2}
    assert as_json["db"]["type"] == ["object", {"engine": "string", "size": "number"}]
    assert as_json["replicas"]["value"] == ["replica-0", "replica-1"]
    assert as_json["password"] == {"sensitive": True, "type": "string", "value": "s3cr3t-web-1"}

    # The API's view of the same workspace.
    workspace = workspace_of(api, name)
    attributes = workspace["attributes"]
    assert attributes["resource-count"] == 4
    assert attributes["locked"] is False
    assert lock_holder(workspace) is None
    current = current_of(api, workspace["id"])
    assert current is not None
    assert workspace["relationships"]["current-state-version"]["data"] == {
        "type": "state-versions",
        "id": current["id"],
    }
    sv = current["attributes"]
    assert sv["serial"] == 1
    assert sv["status"] == "finalized"
    assert sv["terraform-version"] == TERRAFORM_VERSION
    assert sv["hosted-state-upload-url"] is None
    assert sv["hosted-json-state-download-url"]  # terraform uploaded the JSON state too
    assert resource_names(current) == {
        "terraform_data.web": 1,
        "terraform_data.db": 1,
        "terraform_data.replica": 2,
    }
    content = download(api, current["id"])
    assert hashlib.md5(content).hexdigest() == sv["md5"]
    assert sv["size"] == len(content)
    state = json.loads(content)
    assert (state["serial"], state["lineage"]) == (1, sv["lineage"])
    assert as_json["web_id"]["value"] == next(
        r["instances"][0]["attributes"]["id"] for r in state["resources"] if r["name"] == "web"
    )

    outputs = current_outputs(api, workspace["id"])
    assert set(outputs) == {"web", "web_id", "db", "replicas", "password"}
    assert outputs["web"]["value"] == "web-1"
    assert outputs["web"]["detailed-type"] == "string"
    assert outputs["db"]["value"] == {"engine": "postgres", "size": 2}
    assert outputs["db"]["type"] == "object"
    assert outputs["replicas"]["detailed-type"] == ["tuple", ["string", "string"]]
    assert outputs["password"]["sensitive"] is True
    assert outputs["password"]["value"] is None  # hidden in the list, as in TFE
    revealed = api.get(f"/api/v2/state-version-outputs/{outputs['password']['id']}")
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["data"]["attributes"]["value"] == "s3cr3t-web-1"


# --------------------------------------------------------------------------------------------
# terraform state list / pull / mv / rm / push
# --------------------------------------------------------------------------------------------

THREE_RESOURCES = """
resource "terraform_data" "a" {
  input = "a"
}

resource "terraform_data" "b" {
  input = "b"
}

resource "terraform_data" "c" {
  input = "c"
}

output "a" {
  value = terraform_data.a.output
}
"""


def test_state_list_pull_mv_and_rm_each_write_a_new_current_version(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    name = unique("ws-statecmd")
    cwd = tmp_path / "cfg"
    init_and_apply(terraform, server, cwd, name, THREE_RESOURCES)
    workspace_id = workspace_of(api, name)["id"]
    assert current_serial(api, workspace_id) == 1

    listed = ok(terraform, ["state", "list"], cwd)
    assert listed.stdout.split() == ["terraform_data.a", "terraform_data.b", "terraform_data.c"]

    before = settled_counts(server)
    pulled = ok(terraform, ["state", "pull"], cwd)
    hits = settled_counts(server) - before
    current = current_of(api, workspace_id)
    assert current is not None
    stored = download(api, current["id"])
    assert json.loads(pulled.stdout) == json.loads(stored)
    assert hits.get("GET", CURRENT_STATE, 200) == 1, hits
    assert hits.get("GET", OBJECTS, 200) == 1, hits  # the hosted-state-download-url
    assert hits.for_route(STATE_VERSIONS) == {}, hits  # reading writes nothing
    assert hits.for_route(LOCK) == {}, hits

    # state mv: one new version, the resource renamed, nothing else changed.
    before = settled_counts(server)
    moved = ok(terraform, ["state", "mv", "terraform_data.a", "terraform_data.renamed"], cwd)
    hits = settled_counts(server) - before
    assert 'Move "terraform_data.a" to "terraform_data.renamed"' in moved.stdout, describe(moved)
    assert "Successfully moved 1 object(s)." in moved.stdout, describe(moved)
    assert hits.get("POST", LOCK, 200) == 1, hits
    assert hits.get("POST", STATE_VERSIONS, 201) == 1, hits
    assert hits.get("PUT", OBJECTS, 200) == 2, hits
    assert hits.get("POST", UNLOCK, 200) == 1, hits
    after_mv = current_of(api, workspace_id)
    assert after_mv is not None
    assert after_mv["attributes"]["serial"] == 2
    assert after_mv["attributes"]["lineage"] == current["attributes"]["lineage"]
    assert resource_names(after_mv) == {
        "terraform_data.renamed": 1,
        "terraform_data.b": 1,
        "terraform_data.c": 1,
    }
    renamed_state = json.loads(download(api, after_mv["id"]))
    old_state = json.loads(stored)
    assert (
        next(r for r in renamed_state["resources"] if r["name"] == "renamed")["instances"]
        == (next(r for r in old_state["resources"] if r["name"] == "a")["instances"])
    )
    assert workspace_of(api, name)["attributes"]["resource-count"] == 3

    # state rm: one new version without the resource; the workspace manages one fewer.
    removed = ok(terraform, ["state", "rm", "terraform_data.b"], cwd)
    assert "Removed terraform_data.b" in removed.stdout, describe(removed)
    assert "Successfully removed 1 resource instance(s)." in removed.stdout, describe(removed)
    after_rm = current_of(api, workspace_id)
    assert after_rm is not None
    assert after_rm["attributes"]["serial"] == 3
    assert resource_names(after_rm) == {"terraform_data.renamed": 1, "terraform_data.c": 1}
    workspace = workspace_of(api, name)
    assert workspace["attributes"]["resource-count"] == 2
    assert workspace["attributes"]["locked"] is False

    assert ok(terraform, ["state", "list"], cwd).stdout.split() == [
        "terraform_data.c",
        "terraform_data.renamed",
    ]
    # Every version is history: 3 finalized versions, newest first.
    history = api.get(f"/api/v2/workspaces/{workspace_id}/state-versions").json()["data"]
    assert [v["attributes"]["serial"] for v in history] == [3, 2, 1]
    assert [v["id"] for v in history] == [after_rm["id"], after_mv["id"], current["id"]]


def test_state_push_of_an_edited_state_and_refusal_of_a_stale_one(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    name = unique("ws-push")
    cwd = tmp_path / "cfg"
    init_and_apply(terraform, server, cwd, name, THREE_RESOURCES)
    workspace_id = workspace_of(api, name)["id"]
    ok(terraform, ["state", "rm", "terraform_data.c"], cwd)
    assert current_serial(api, workspace_id) == 2

    stale = json.loads(ok(terraform, ["state", "pull"], cwd).stdout)
    (cwd / "stale.tfstate").write_text(json.dumps(stale))
    edited = json.loads(json.dumps(stale))
    edited["serial"] = stale["serial"] + 1
    edited["outputs"]["pushed"] = {"value": "by hand", "type": "string"}
    (cwd / "edited.tfstate").write_text(json.dumps(edited))

    before = settled_counts(server)
    ok(terraform, ["state", "push", "edited.tfstate"], cwd)
    hits = settled_counts(server) - before
    assert hits.get("POST", STATE_VERSIONS, 201) == 1, hits
    assert hits.get("PUT", OBJECTS, 200) == 2, hits
    assert hits.get("POST", UNLOCK, 200) == 1, hits
    pushed = current_of(api, workspace_id)
    assert pushed is not None
    # Terraform persists the pushed state as a new snapshot: one serial past the file's.
    assert pushed["attributes"]["serial"] == edited["serial"] + 1
    assert pushed["attributes"]["lineage"] == stale["lineage"]
    pushed_state = json.loads(download(api, pushed["id"]))
    assert pushed_state["serial"] == edited["serial"] + 1
    assert pushed_state["outputs"]["pushed"]["value"] == "by hand"
    assert pushed_state["resources"] == stale["resources"]
    outputs = current_outputs(api, workspace_id)
    assert outputs["pushed"]["value"] == "by hand"
    assert outputs["a"]["value"] == "a"
    assert ok(terraform, ["output", "-raw", "pushed"], cwd).stdout == "by hand"

    # A stale state (an older serial of the same lineage) is refused by Terraform itself
    # after it read the current state; nothing is written and the lock is released.
    before = settled_counts(server)
    refused = fails(terraform, ["state", "push", "stale.tfstate"], cwd)
    hits = settled_counts(server) - before
    assert (
        f"cannot import state with serial {stale['serial']} over newer state with serial "
        f"{pushed['attributes']['serial']}" in output_of(refused)
    ), describe(refused)
    assert hits.for_route(STATE_VERSIONS) == {}, hits
    assert hits.for_route(OBJECTS) == {("GET", "200"): 1}, hits
    assert hits.get("POST", LOCK, 200) == 1, hits
    assert hits.get("POST", UNLOCK, 200) == 1, hits
    current = current_of(api, workspace_id)
    assert current is not None
    assert current["id"] == pushed["id"]
    assert workspace_of(api, name)["attributes"]["locked"] is False


def test_forced_push_of_a_stale_state_is_refused_by_the_server_and_keeps_the_lock(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    """``state push -force`` skips Terraform's own serial check, but Terraform 1.15.5's cloud
    backend still sends ``force: false`` (observed on the wire), so the server's succession
    rule (serial must grow, as in TFE) refuses the version. Terraform then deliberately keeps
    the workspace locked after a failed upload; ``force-unlock`` releases it."""
    name = unique("ws-forcepush")
    cwd = tmp_path / "cfg"
    init_and_apply(terraform, server, cwd, name, THREE_RESOURCES)
    workspace_id = workspace_of(api, name)["id"]
    stale = ok(terraform, ["state", "pull"], cwd).stdout
    (cwd / "stale.tfstate").write_text(stale)
    ok(terraform, ["state", "rm", "terraform_data.a"], cwd)
    ok(terraform, ["state", "rm", "terraform_data.b"], cwd)
    newest = current_of(api, workspace_id)
    assert newest is not None
    assert newest["attributes"]["serial"] == 3

    before = settled_counts(server)
    refused = fails(terraform, ["state", "push", "-force", "stale.tfstate"], cwd)
    hits = settled_counts(server) - before
    text = output_of(refused)
    assert "Failed to persist state: error uploading state: conflict" in text, describe(refused)
    # Terraform sent serial 1 + 1 = 2 (without force) over the current serial 3.
    assert "serial 2 is not greater than the current state's serial 3" in text, describe(refused)
    assert hits.get("POST", STATE_VERSIONS, 409) == 1, hits
    assert hits.for_route(UNLOCK) == {}, hits
    current = current_of(api, workspace_id)
    assert current is not None
    assert current["id"] == newest["id"]
    workspace = workspace_of(api, name)
    assert workspace["attributes"]["locked"] is True
    assert lock_holder(workspace) == {"type": "users", "id": admin_user_id(api)}

    released = ok(terraform, ["force-unlock", "-force", f"{ORG}/{name}"], cwd)
    assert "Terraform state has been successfully unlocked!" in released.stdout
    assert workspace_of(api, name)["attributes"]["locked"] is False


# --------------------------------------------------------------------------------------------
# Locks held by someone else
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerInfo, str | None]]:
    """A server of this module's own, with its database URL, for ``terrapod admin``.

    The admin CLI talks to the database directly, and the shared server does not expose its
    database URL (ServerInfo has no such field).
    """
    workdir = tmp_path_factory.mktemp(f"e2e-state-{backend}")
    with (
        temporary_database(backend, workdir) as database_url,
        run_server(
            workdir, backend=backend, database_url=database_url, admin_token=ADMIN_TOKEN
        ) as info,
    ):
        ensure_local_execution_org(info)
        yield info, database_url


def create_member(server: ServerInfo, database_url: str | None, username: str) -> dict[str, str]:
    """``terrapod admin create-user --organization ORG --token``; returns its JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERRAPOD_")}
    if database_url is not None:
        env["TERRAPOD_DATABASE__URL"] = database_url
    command = [
        str(TERRAPOD_BIN), "admin", "create-user",
        "--username", username,
        "--email", f"{username}@example.test",
        "--organization", ORG,
        "--token",
        "--data-dir", str(server.data_dir),
    ]  # fmt: skip
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    created: dict[str, str] = json.loads(result.stdout)
    assert created["role"] == "member"
    return created


def test_apply_fails_while_another_user_holds_the_lock_until_force_unlock(
    private_server: tuple[ServerInfo, str | None], tmp_path: Path
) -> None:
    server, database_url = private_server
    terraform = Terraform(server, tmp_path / "tf-home", ADMIN_TOKEN)
    name = unique("ws-locked")
    cwd = tmp_path / "cfg"
    init_and_apply(
        terraform,
        server,
        cwd,
        name,
        'resource "terraform_data" "x" {\n  input = var.v\n}\n'
        'variable "v" {\n  default = "one"\n}\n',
    )
    bob = create_member(server, database_url, unique("bob"))

    with server.http(bob["token"]) as as_bob, server.http(ADMIN_TOKEN) as api:
        workspace = workspace_of(api, name)
        before_lock = current_of(api, workspace["id"])
        assert before_lock is not None
        locked = as_bob.post(
            f"/api/v2/workspaces/{workspace['id']}/actions/lock",
            json={"data": {"type": "", "attributes": {"reason": "bob is migrating"}}},
        )
        assert locked.status_code == 200, locked.text
        attributes = locked.json()["data"]["attributes"]
        assert (attributes["locked"], attributes["locked-reason"]) == (True, "bob is migrating")
        assert lock_holder(locked.json()["data"]) == {"type": "users", "id": bob["id"]}

        before = settled_counts(server)
        blocked = fails(terraform, ["apply", "-auto-approve", "-var", "v=two"], cwd)
        hits = settled_counts(server) - before
        text = output_of(blocked)
        assert "Error acquiring the state lock" in text, describe(blocked)
        assert f'workspace already locked (lock ID: "{ORG}/{name}")' in text, describe(blocked)
        assert hits.get("POST", LOCK, 409) == 1, hits
        assert hits.for_route(STATE_VERSIONS) == {}, hits
        still = current_of(api, workspace["id"])
        assert still is not None
        assert still["id"] == before_lock["id"]

        # force-unlock wants "<organization>/<workspace name>", not the workspace id.
        wrong_id = fails(terraform, ["force-unlock", "-force", workspace["id"]], cwd)
        assert (
            f'lock ID "{workspace["id"]}" does not match existing lock ID "{ORG}/{name}"'
            in output_of(wrong_id)
        ), describe(wrong_id)
        # A member may lock but not force-unlock, not even a lock of their own.
        as_bob_cli = terraform.with_token(bob["token"])
        forbidden = fails(as_bob_cli, ["force-unlock", "-force", f"{ORG}/{name}"], cwd)
        assert "Failed to unlock state: forbidden" in output_of(forbidden), describe(forbidden)
        assert workspace_of(api, name)["attributes"]["locked"] is True

        before = settled_counts(server)
        released = ok(terraform, ["force-unlock", "-force", f"{ORG}/{name}"], cwd)
        hits = settled_counts(server) - before
        assert "Terraform state has been successfully unlocked!" in released.stdout
        assert hits.get("POST", FORCE_UNLOCK, 200) == 1, hits
        unlocked = workspace_of(api, name)
        assert unlocked["attributes"]["locked"] is False
        assert lock_holder(unlocked) is None
        # Bob's own unlock now finds nothing to release.
        again = as_bob.post(f"/api/v2/workspaces/{workspace['id']}/actions/unlock")
        assert again.status_code == 409, again.text

        applied = ok(terraform, ["apply", "-auto-approve", "-var", "v=two"], cwd)
        assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in output_of(applied)
        after = current_of(api, workspace["id"])
        assert after is not None
        assert after["attributes"]["serial"] == before_lock["attributes"]["serial"] + 1
        assert workspace_of(api, name)["attributes"]["locked"] is False


# --------------------------------------------------------------------------------------------
# Tag-selected workspaces
# --------------------------------------------------------------------------------------------


def test_tagged_workspaces_new_list_select_apply_and_delete(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    # "app" plus a suffix: the server is shared, and `workspace list` shows every match.
    tag = unique("app")
    first, second, empty = (f"{tag}-{n}" for n in ("a", "b", "c"))
    cwd = tmp_path / "cfg"
    cwd.mkdir()
    (cwd / "main.tf").write_text(
        "terraform {\n"
        "  cloud {\n"
        f'    hostname     = "{server.hostname}"\n'
        f'    organization = "{ORG}"\n'
        "    workspaces {\n"
        f'      tags = ["{tag}"]\n'
        "    }\n"
        "  }\n"
        "}\n\n"
        'resource "terraform_data" "here" {\n  input = terraform.workspace\n}\n\n'
        'output "workspace" {\n  value = terraform_data.here.output\n}\n'
    )

    # No workspace carries the tag yet: init asks for a name and creates a tagged one.
    before = settled_counts(server)
    initialized = ok(terraform, ["init"], cwd, input=f"{first}\n")
    hits = settled_counts(server) - before
    text = output_of(initialized)
    assert f"There are no workspaces with the configured tags ({tag})" in text, text
    assert "HCP Terraform has been successfully initialized!" in text, text
    assert hits.get("GET", WORKSPACES, 200) >= 1, hits  # ?search[tags]=…
    assert hits.get("POST", WORKSPACES, 201) == 1, hits
    assert hits.get("POST", WORKSPACE_TAGS, 204) == 1, hits
    assert not no_server_errors(hits), hits

    for name in (second, empty):
        created = ok(terraform, ["workspace", "new", name], cwd)
        assert f'Created and switched to workspace "{name}"!' in created.stdout

    listed = ok(terraform, ["workspace", "list"], cwd)
    assert listed.stdout.split() == [first, second, "*", empty], describe(listed)
    assert ok(terraform, ["workspace", "show"], cwd).stdout.strip() == empty

    for name in (first, second):
        selected = ok(terraform, ["workspace", "select", name], cwd)
        assert f'Switched to workspace "{name}".' in selected.stdout
        applied = ok(terraform, ["apply", "-auto-approve"], cwd)
        assert f'workspace = "{name}"' in applied.stdout, describe(applied)

    tagged = api.get(f"/api/v2/organizations/{ORG}/workspaces", params={"search[tags]": tag})
    assert tagged.status_code == 200, tagged.text
    by_name = {w["attributes"]["name"]: w for w in tagged.json()["data"]}
    assert set(by_name) == {first, second, empty}
    for name, workspace in by_name.items():
        assert workspace["attributes"]["tag-names"] == [tag], name
        assert workspace["attributes"]["terraform-version"] == TERRAFORM_VERSION, name
        assert workspace["attributes"]["locked"] is False, name
    assert by_name[first]["attributes"]["resource-count"] == 1
    assert by_name[second]["attributes"]["resource-count"] == 1
    assert by_name[empty]["attributes"]["resource-count"] == 0
    for name in (first, second):
        assert current_outputs(api, by_name[name]["id"])["workspace"]["value"] == name
    assert current_of(api, by_name[empty]["id"]) is None

    # Deleting a workspace whose state tracks resources: Terraform refuses by itself after
    # reading the state, before asking the server to delete anything.
    before = settled_counts(server)
    refused = fails(terraform, ["workspace", "delete", first], cwd)
    hits = settled_counts(server) - before
    assert "Workspace is not empty" in output_of(refused), describe(refused)
    assert f'Workspace "{first}" is currently tracking the following resource instances' in (
        output_of(refused)
    )
    assert hits.for_route(SAFE_DELETE_BY_NAME) == {}, hits
    assert hits.get("POST", UNLOCK, 200) == 1, hits
    assert workspace_of(api, first)["attributes"]["locked"] is False
    # The server's safe delete refuses it too.
    safe = api.post(f"/api/v2/organizations/{ORG}/workspaces/{first}/actions/safe-delete")
    assert safe.status_code == 409, safe.text
    assert "still manages 1 resources" in safe.json()["errors"][0]["detail"]
    assert workspace_of(api, first)["id"] == by_name[first]["id"]

    # The empty one goes through safe-delete (the workspace grants can-force-delete).
    before = settled_counts(server)
    deleted = ok(terraform, ["workspace", "delete", empty], cwd)
    hits = settled_counts(server) - before
    assert f'Deleted workspace "{empty}"!' in deleted.stdout, describe(deleted)
    assert hits.get("POST", SAFE_DELETE_BY_NAME, 204) == 1, hits
    gone = api.get(f"/api/v2/organizations/{ORG}/workspaces/{empty}")
    assert gone.status_code == 404, gone.text

    assert ok(terraform, ["workspace", "list"], cwd).stdout.split() == [first, "*", second]


# --------------------------------------------------------------------------------------------
# terraform_remote_state between workspaces
# --------------------------------------------------------------------------------------------


def test_remote_state_of_another_workspace_is_readable(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    producer, consumer = unique("producer"), unique("consumer")
    produced = init_and_apply(
        terraform, server, tmp_path / "producer", producer,
        'output "greeting" {\n  value = "hello from the producer"\n}\n\n'
        'output "answer" {\n  value = 42\n}\n\n'
        'output "endpoints" {\n  value = { api = "https://api.example.test", port = 8443 }\n}\n',
    )  # fmt: skip
    assert 'greeting = "hello from the producer"' in produced.stdout

    consumer_config = f"""
data "terraform_remote_state" "p" {{
  backend = "remote"
  config = {{
    hostname     = "{server.hostname}"
    organization = "{ORG}"
    workspaces = {{
      name = "{producer}"
    }}
  }}
}}

output "got" {{
  value = data.terraform_remote_state.p.outputs.greeting
}}

output "next_answer" {{
  value = data.terraform_remote_state.p.outputs.answer + 1
}}

locals {{
  endpoints = data.terraform_remote_state.p.outputs.endpoints
}}

output "url" {{
  value = "${{local.endpoints.api}}:${{local.endpoints.port}}"
}}
"""
    producer_id = workspace_of(api, producer)["id"]
    before = settled_counts(server)
    consumed = init_and_apply(terraform, server, tmp_path / "consumer", consumer, consumer_config)
    hits = settled_counts(server) - before
    assert "data.terraform_remote_state.p: Read complete" in consumed.stdout, describe(consumed)
    assert 'got = "hello from the producer"' in consumed.stdout, describe(consumed)
    assert "next_answer = 43" in consumed.stdout, describe(consumed)
    assert 'url = "https://api.example.test:8443"' in consumed.stdout, describe(consumed)
    # The remote backend read the producer's current state and downloaded it.
    assert hits.get("GET", CURRENT_STATE, 200) >= 1, hits
    assert hits.get("GET", OBJECTS, 200) >= 1, hits
    assert not no_server_errors(hits), hits

    outputs = current_outputs(api, workspace_of(api, consumer)["id"])
    assert outputs["got"]["value"] == "hello from the producer"
    assert outputs["next_answer"]["value"] == 43
    assert outputs["url"]["value"] == "https://api.example.test:8443"
    # Reading it changed nothing in the producer.
    assert current_serial(api, producer_id) == 1
    assert workspace_of(api, producer)["attributes"]["locked"] is False


# --------------------------------------------------------------------------------------------
# Uploads that never complete (raw API, as Terraform would do them)
# --------------------------------------------------------------------------------------------


def next_state(content: bytes, serial: int, marker: str) -> bytes:
    """The state ``content`` with another serial and an output that tells versions apart."""
    state = json.loads(content)
    state["serial"] = serial
    state["outputs"]["marker"] = {"value": marker, "type": "string"}
    return json.dumps(state, indent=2).encode()


def create_version(
    api: httpx.Client, workspace_id: str, content: bytes, *, inline: bool = False
) -> httpx.Response:
    state = json.loads(content)
    attributes: dict[str, Any] = {
        "serial": state["serial"],
        "md5": hashlib.md5(content).hexdigest(),
        "lineage": state["lineage"],
    }
    if inline:
        attributes["state"] = base64.b64encode(content).decode()
    return api.post(
        f"/api/v2/workspaces/{workspace_id}/state-versions",
        json={"data": {"type": "state-versions", "attributes": attributes}},
    )


def anonymous(server: ServerInfo) -> httpx.Client:
    """What Terraform uses for the signed upload URLs: no Authorization header."""
    return httpx.Client(verify=server.ssl_context(), timeout=30.0, trust_env=False)


def assert_every_version_downloadable(api: httpx.Client, workspace_id: str) -> list[str]:
    """Download every listed (finalized) version both ways; return their ids, newest first."""
    response = api.get(
        f"/api/v2/workspaces/{workspace_id}/state-versions", params={"page[size]": 100}
    )
    assert response.status_code == 200, response.text
    versions = response.json()["data"]
    assert response.json()["meta"]["pagination"]["total-count"] == len(versions)
    for version in versions:
        attributes = version["attributes"]
        assert attributes["status"] == "finalized", version
        content = download(api, version["id"])
        assert hashlib.md5(content).hexdigest() == attributes["md5"], version["id"]
        assert json.loads(content)["serial"] == attributes["serial"], version["id"]
        hosted = api.get(attributes["hosted-state-download-url"], headers={"Accept": "*/*"})
        assert hosted.status_code == 200, hosted.text
        assert hosted.content == content, version["id"]
    return [v["id"] for v in versions]


def test_interrupted_upload_never_becomes_current(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    name = unique("ws-interrupt")
    init_and_apply(
        terraform, server, tmp_path / "cfg", name,
        'resource "terraform_data" "x" {\n  input = "x"\n}\n',
    )  # fmt: skip
    workspace_id = workspace_of(api, name)["id"]
    original = current_of(api, workspace_id)
    assert original is not None
    base = download(api, original["id"])
    serial = original["attributes"]["serial"]
    content = next_state(base, serial + 1, "uploaded")

    # Not without the lock.
    unlocked_try = create_version(api, workspace_id, content)
    assert unlocked_try.status_code == 409, unlocked_try.text
    locked = api.post(f"/api/v2/workspaces/{workspace_id}/actions/lock", json=LOCK_BODY)
    assert locked.status_code == 200, locked.text

    # A pending version: created, its upload never arrives.
    created = create_version(api, workspace_id, content)
    assert created.status_code == 201, created.text
    pending = created.json()["data"]
    assert pending["attributes"]["status"] == "pending"
    assert pending["attributes"]["serial"] == serial + 1
    assert pending["attributes"]["hosted-state-upload-url"]
    assert pending["attributes"]["hosted-state-download-url"] is None
    still = current_of(api, workspace_id)
    assert still is not None
    assert still["id"] == original["id"]
    shown = api.get(f"/api/v2/state-versions/{pending['id']}")
    assert shown.json()["data"]["attributes"]["status"] == "pending"
    assert api.get(f"/api/v2/state-versions/{pending['id']}/download").status_code == 404

    # Wrong bytes on its upload URL are refused and change nothing.
    with anonymous(server) as client:
        wrong = client.put(
            pending["attributes"]["hosted-state-upload-url"],
            content=next_state(base, serial + 1, "something else"),
            headers={"Content-Type": "application/octet-stream"},
        )
    assert wrong.status_code == 422, wrong.text
    assert "md5" in wrong.json()["errors"][0]["detail"]
    shown = api.get(f"/api/v2/state-versions/{pending['id']}")
    assert shown.json()["data"]["attributes"]["status"] == "pending"
    still = current_of(api, workspace_id)
    assert still is not None
    assert still["id"] == original["id"]
    assert current_outputs(api, workspace_id) == {}

    # Right MD5 but a state whose serial contradicts the declared one: refused as well.
    mismatched = next_state(base, serial + 5, "bad serial")
    state = json.loads(mismatched)
    declared = api.post(
        f"/api/v2/workspaces/{workspace_id}/state-versions",
        json={"data": {"type": "state-versions", "attributes": {
            "serial": serial + 1,
            "md5": hashlib.md5(mismatched).hexdigest(),
            "lineage": state["lineage"],
        }}},
    )  # fmt: skip
    assert declared.status_code == 201, declared.text
    with anonymous(server) as client:
        contradicted = client.put(
            declared.json()["data"]["attributes"]["hosted-state-upload-url"], content=mismatched
        )
    assert contradicted.status_code == 422, contradicted.text
    assert "serial" in contradicted.json()["errors"][0]["detail"]

    # Pending versions are not history, and nothing half-uploaded is downloadable.
    assert assert_every_version_downloadable(api, workspace_id) == [original["id"]]

    # The retry a client makes after an interruption: a new version, uploaded completely.
    retried = create_version(api, workspace_id, content)
    assert retried.status_code == 201, retried.text
    retry = retried.json()["data"]
    with anonymous(server) as client:
        uploaded = client.put(retry["attributes"]["hosted-state-upload-url"], content=content)
    assert uploaded.status_code == 200, uploaded.text
    finalized = api.get(f"/api/v2/state-versions/{retry['id']}").json()["data"]
    assert finalized["attributes"]["status"] == "finalized"
    assert finalized["attributes"]["hosted-state-upload-url"] is None
    current = current_of(api, workspace_id)
    assert current is not None
    assert (current["id"], current["attributes"]["serial"]) == (retry["id"], serial + 1)
    assert current_outputs(api, workspace_id)["marker"]["value"] == "uploaded"
    # The same URL does not take content twice.
    with anonymous(server) as client:
        twice = client.put(retry["attributes"]["hosted-state-upload-url"], content=content)
    assert twice.status_code == 409, twice.text

    unlocked = api.post(f"/api/v2/workspaces/{workspace_id}/actions/unlock")
    assert unlocked.status_code == 200, unlocked.text
    assert assert_every_version_downloadable(api, workspace_id) == [retry["id"], original["id"]]
    # The abandoned versions never became finalized (pending, or discarded once superseded).
    for abandoned in (pending["id"], declared.json()["data"]["id"]):
        attributes = api.get(f"/api/v2/state-versions/{abandoned}").json()["data"]["attributes"]
        assert attributes["status"] in ("pending", "discarded"), abandoned

    # Terraform reads the retried version as the workspace's state.
    pulled = ok(terraform, ["state", "pull"], tmp_path / "cfg")
    assert json.loads(pulled.stdout) == json.loads(content)


def test_late_upload_to_a_superseded_pending_version_does_not_regress_the_state(
    server: ServerInfo, api: httpx.Client
) -> None:
    """Content for a pending version whose workspace moved on to a newer current version
    must not become current (it once did, rolling serial 3 back to 2)."""
    created = api.post(
        f"/api/v2/organizations/{ORG}/workspaces",
        json={"data": {"type": "workspaces", "attributes": {"name": unique("ws-late")}}},
    )
    assert created.status_code == 201, created.text
    workspace_id = created.json()["data"]["id"]
    lineage = f"lineage-{secrets.token_hex(8)}"

    def state(serial: int, marker: str) -> bytes:
        return json.dumps({
            "version": 4, "terraform_version": TERRAFORM_VERSION, "serial": serial,
            "lineage": lineage, "outputs": {"marker": {"value": marker, "type": "string"}},
            "resources": [], "check_results": None,
        }).encode()  # fmt: skip

    def lock() -> None:
        response = api.post(f"/api/v2/workspaces/{workspace_id}/actions/lock", json=LOCK_BODY)
        assert response.status_code == 200, response.text

    def unlock() -> None:
        response = api.post(f"/api/v2/workspaces/{workspace_id}/actions/unlock")
        assert response.status_code == 200, response.text

    lock()
    assert create_version(api, workspace_id, state(1, "one"), inline=True).status_code == 201
    # Serial 2 is created, its upload is interrupted; the retry (same serial) completes.
    abandoned = create_version(api, workspace_id, state(2, "abandoned")).json()["data"]
    retry = create_version(api, workspace_id, state(2, "two")).json()["data"]
    with anonymous(server) as client:
        done = client.put(retry["attributes"]["hosted-state-upload-url"], content=state(2, "two"))
    assert done.status_code == 200, done.text
    unlock()
    # Later work moves the workspace on to serial 3.
    lock()
    newest = create_version(api, workspace_id, state(3, "three"), inline=True)
    assert newest.status_code == 201, newest.text
    unlock()
    current = current_of(api, workspace_id)
    assert current is not None
    assert current["id"] == newest.json()["data"]["id"]

    # The interrupted client finally delivers its bytes: refused or ignored, never made current.
    with anonymous(server) as client:
        late = client.put(
            abandoned["attributes"]["hosted-state-upload-url"], content=state(2, "abandoned")
        )
    assert late.status_code < 500, late.text
    shown = api.get(f"/api/v2/state-versions/{abandoned['id']}").json()["data"]["attributes"]
    assert shown["status"] != "finalized", shown

    current = current_of(api, workspace_id)
    assert current is not None
    assert current["attributes"]["serial"] == 3, current
    assert current["id"] == newest.json()["data"]["id"]
    assert current_outputs(api, workspace_id)["marker"]["value"] == "three"
