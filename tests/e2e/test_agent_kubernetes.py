"""A run planned and applied through ``terrapod agent --executor kubernetes``.

The real pieces: ``terrapod serve`` over TLS, a ``terrapod agent`` process with the Kubernetes
executor, and ``terrapod agent run-job`` in each "pod", running real Terraform. The cluster is
the fake of ``tests/unit/agent/fake_k8s.py`` (in this process, reached through a kubeconfig):
its kubelet runs each Job's container command as a local process, with the ticket Secret and
the CA ConfigMap written to files.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.agents_harness import Api, wait_until
from tests.e2e.harness import TERRAPOD_BIN, ServerInfo, log_tail
from tests.unit.agent.fake_k8s import FakeImage, FakeKubernetes

NS = "terrapod-jobs"
FINAL = ("applied", "errored", "canceled", "force_canceled", "planned_and_finished")
CONFIG = """
resource "terraform_data" "hello" {
  input = "from a kubernetes job"
}

output "greeting" {
  value = terraform_data.hello.output
}
"""


@pytest.fixture
def cluster(tmp_path: Path, server: ServerInfo) -> Iterator[FakeKubernetes]:
    fake = FakeKubernetes(tmp_path / "kubelet")
    fake.workdir.mkdir()
    fake.configmaps[(NS, "terrapod-ca")] = {"ca.crt": server.ca_cert.read_text()}
    with fake.running():
        yield fake


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: fake, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: agent, user: {token: fake-cluster-token}}]\n"
        f"contexts: [{{name: fake, context: {{cluster: fake, user: agent, namespace: {NS}}}}}]\n"
        "current-context: fake\n"
    )
    return path


@contextmanager
def kubernetes_agent(
    server: ServerInfo, cluster: FakeKubernetes, tmp_path: Path, token: str, image: str
) -> Iterator[Path]:
    """A ``terrapod agent --executor kubernetes`` process; yields its log's path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TERRAPOD_", "TF_"))}
    env["TERRAPOD_AGENT_TOKEN"] = token
    agent_log = tmp_path / "agent.log"
    command = [
        str(TERRAPOD_BIN), "agent",
        "--url", server.url,
        "--ca-file", str(server.ca_cert),
        "--name", "k8s-agent",
        "--executor", "kubernetes",
        "--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", cluster.url)),
        "--namespace", NS,
        "--image", image,
        "--ca-configmap", "terrapod-ca",
        "--log-format", "console",
    ]  # fmt: skip
    with agent_log.open("wb") as out:
        agent = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield agent_log
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def describer(api: Api, run: str, cluster: FakeKubernetes, agent_log: Path) -> Callable[[], str]:
    def describe() -> str:
        pods = [log_tail(p.log_path) for p in cluster.pods.values() if p.log_path]
        return (
            f"run: {api.run(run)}\nagent:\n{log_tail(agent_log)}\n"
            f"jobs: {list(cluster.jobs)} exits: {cluster.exits}\n"
            f"deleted: {cluster.deleted}\npods:\n" + "\n".join(pods)
        )

    return describe


def pool_workspace(api: Api) -> tuple[str, str, str]:
    """(workspace id, configuration version id, agent token) in a new organization."""
    org = f"k8s-{secrets.token_hex(4)}"
    api.create_organization(org)
    pool = api.create_pool(org, "kubernetes")
    _, token = api.create_agent_token(pool)
    workspace = api.create_workspace(org, "hello", pool_id=pool, terraform_version="1.15.5")
    cv = api.upload_configuration(workspace, {"main.tf": CONFIG})
    return workspace, cv, token


def test_a_run_plans_and_applies_in_kubernetes_jobs(
    server: ServerInfo, cluster: FakeKubernetes, tmp_path: Path
) -> None:
    with Api(server.url, server.ca_cert, server.admin_token) as api:
        workspace, cv, token = pool_workspace(api)
        with kubernetes_agent(server, cluster, tmp_path, token, "terrapod:e2e") as agent_log:
            run = api.create_run(workspace, cv, auto_apply=True)
            describe = describer(api, run, cluster, agent_log)
            status = wait_until(
                lambda: (s := api.run_status(run)) in FINAL and s,
                timeout=240,
                what="the run applied through Kubernetes jobs",
                describe=describe,
            )
            assert status == "applied", describe()
            details = api.run(run)
            plan_log = api.phase_log("plans", details["plan-id"])
            apply_log = api.phase_log("applies", details["apply-id"])
            assert "terraform_data.hello" in plan_log
            assert "Apply complete" in apply_log or "apply_complete" in apply_log, apply_log

            # One Job per phase, each ran run-job to a clean exit, and the agent removed both
            # Jobs and both Secrets (the run may be applied before the apply pod has exited).
            jobs_created = [
                r.body["metadata"]["name"]
                for r in cluster.requests
                if r.method == "POST" and r.path.endswith("/jobs")
            ]
            assert len(jobs_created) == 2
            wait_until(
                lambda: len(cluster.exits) == 2 and not cluster.jobs and not cluster.secrets,
                timeout=60,
                what="both pods exited and the agent deleted the Jobs and Secrets",
                describe=describe,
            )
            assert [cluster.exits[name] for name in jobs_created] == [0, 0]
            # The run token and the signed URLs went to the pods only through the Secrets.
            for request in cluster.requests:
                if request.method == "POST" and request.path.endswith("/jobs"):
                    assert "tpod." not in str(request.body)


def test_a_pod_that_dies_unreported_errors_the_run_with_its_reason(
    server: ServerInfo, cluster: FakeKubernetes, tmp_path: Path
) -> None:
    crash = "import sys; print('fatal: out of disk space', flush=True); sys.exit(3)"
    cluster.images["terrapod:broken"] = FakeImage(run=lambda _: [sys.executable, "-c", crash])
    with Api(server.url, server.ca_cert, server.admin_token) as api:
        workspace, cv, token = pool_workspace(api)
        with kubernetes_agent(server, cluster, tmp_path, token, "terrapod:broken") as agent_log:
            run = api.create_run(workspace, cv, auto_apply=True)
            describe = describer(api, run, cluster, agent_log)
            status = wait_until(
                lambda: (s := api.run_status(run)) in FINAL and s,
                timeout=120,
                what="the run ended",
                describe=describe,
            )
            assert status == "errored", describe()
            plan_log = api.phase_log("plans", api.run(run)["plan-id"])
            assert "ended without reporting: Error (exit code 3)" in plan_log, plan_log
            assert "fatal: out of disk space" in plan_log
            wait_until(
                lambda: not cluster.jobs and not cluster.secrets,
                timeout=30,
                what="the agent deleted the Job and the Secret",
                describe=describe,
            )
