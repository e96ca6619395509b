"""A run task with the real Terraform CLI: ``terraform apply`` in a workspace whose mandatory
post-plan task fails. The task service is a real HTTPS client of the server: it checks the
request's signature, answers 200, and calls back the URL it was given with its access token.

The server is started for this module with ``runtasks.callback_base_url`` set to its own
address, since task services must reach it (the shared server does not know it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.databases import temporary_database
from tests.e2e import harness
from tests.e2e.harness import ServerInfo, Terraform, describe, output_of, write_cloud_config

KEY = "cli-task-secret"
MESSAGE = "Found 2 public S3 buckets: aws_s3_bucket.logs, aws_s3_bucket.assets"


@pytest.fixture(scope="module")
def task_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    workdir = tmp_path_factory.mktemp(f"runtasks-{backend}")
    port = harness.free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "free_port", lambda: port)
        with (
            temporary_database(backend, workdir) as database_url,
            harness.run_server(
                workdir,
                backend=backend,
                database_url=database_url,
                admin_token=ADMIN_TOKEN,
                extra_env={
                    "TERRAPOD_RUNTASKS__CALLBACK_BASE_URL": f"https://localhost:{port}",
                    # The task service is on 127.0.0.1.
                    "TERRAPOD_RUNTASKS__ALLOW_PRIVATE_ADDRESSES": "true",
                },
            ) as info,
        ):
            assert info.port == port
            yield info


class FailingTask:
    """A task service on 127.0.0.1 that fails every run it is asked about."""

    def __init__(self, server: ServerInfo) -> None:
        self.server = server
        self.requests: list[dict[str, Any]] = []
        self.signatures_ok: list[bool] = []
        self.callbacks: list[int] = []
        task = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = hmac.new(KEY.encode(), body, hashlib.sha512).hexdigest()
                sent = self.headers.get("X-TFC-Task-Signature", "")
                task.signatures_ok.append(hmac.compare_digest(sent, expected))
                payload = json.loads(body)
                task.requests.append(payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                threading.Thread(target=task.call_back, args=(payload,), daemon=True).start()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def call_back(self, payload: dict[str, Any]) -> None:
        with httpx.Client(verify=self.server.ssl_context(), trust_env=False) as client:
            r = client.patch(
                payload["task_result_callback_url"],
                headers={
                    "Authorization": f"Bearer {payload['access_token']}",
                    "Content-Type": "application/vnd.api+json",
                },
                json={
                    "data": {
                        "type": "task-results",
                        "attributes": {"status": "failed", "message": MESSAGE},
                    }
                },
            )
        self.callbacks.append(r.status_code)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def failing_task(task_server: ServerInfo) -> Iterator[FailingTask]:
    svc = FailingTask(task_server)
    yield svc
    svc.close()


def test_apply_fails_on_a_failed_mandatory_post_plan_task_and_prints_its_message(
    task_server: ServerInfo, failing_task: FailingTask, tmp_path: Path
) -> None:
    name = f"tasks-{secrets.token_hex(4)}"
    cwd = tmp_path / "config"
    write_cloud_config(cwd, hostname=task_server.hostname, organization="default", workspace=name)
    terraform = Terraform(task_server, tmp_path / "tf-home", ADMIN_TOKEN)
    init = terraform.run(["init", "-no-color"], cwd)
    assert init.returncode == 0, describe(init)
    with task_server.http(ADMIN_TOKEN) as api:
        ws = api.get(f"/api/v2/organizations/default/workspaces/{name}").json()["data"]["id"]
        r = api.post(
            "/api/v2/organizations/default/tasks",
            json={
                "data": {
                    "type": "tasks",
                    "attributes": {
                        "name": f"scanner-{secrets.token_hex(3)}",
                        "url": failing_task.url,
                        "category": "task",
                        "hmac-key": KEY,
                    },
                }
            },
        )
        assert r.status_code == 201, r.text
        r = api.post(
            f"/api/v2/workspaces/{ws}/tasks",
            json={
                "data": {
                    "type": "workspace-tasks",
                    "attributes": {"enforcement-level": "mandatory", "stages": ["post_plan"]},
                    "relationships": {
                        "task": {"data": {"type": "tasks", "id": r.json()["data"]["id"]}}
                    },
                }
            },
        )
        assert r.status_code == 201, r.text

    result = terraform.run(["apply", "-auto-approve", "-no-color"], cwd)
    text = output_of(result)
    assert result.returncode == 1, describe(result)
    assert MESSAGE in text, describe(result)
    assert "Post-plan Tasks" in text, describe(result)
    assert "is required to succeed" in text, describe(result)
    assert failing_task.signatures_ok == [True]
    assert failing_task.callbacks == [200]
    (payload,) = failing_task.requests
    with task_server.http(ADMIN_TOKEN) as api:
        run = api.get(f"/api/v2/runs/{payload['run_id']}").json()["data"]["attributes"]
        state = api.get(f"/api/v2/workspaces/{ws}/current-state-version")
    assert run["status"] == "errored"
    assert "apply-queued-at" not in run["status-timestamps"]
    assert state.status_code == 404, "nothing was applied"
