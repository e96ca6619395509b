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
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.agents_harness import Api, wait_until
from tests.e2e.harness import TERRAPOD_BIN, ServerInfo, log_tail
from tests.unit.agent.fake_k8s import FakeKubernetes

NS = "terrapod-jobs"
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


def test_a_run_plans_and_applies_in_kubernetes_jobs(
    server: ServerInfo, cluster: FakeKubernetes, tmp_path: Path
) -> None:
    org = f"k8s-{secrets.token_hex(4)}"
    with Api(server.url, server.ca_cert, server.admin_token) as api:
        api.create_organization(org)
        pool = api.create_pool(org, "kubernetes")
        _, token = api.create_agent_token(pool)
        workspace = api.create_workspace(org, "hello", pool_id=pool, terraform_version="1.15.5")
        cv = api.upload_configuration(workspace, {"main.tf": CONFIG})

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
            "--image", "terrapod:e2e",
            "--ca-configmap", "terrapod-ca",
            "--log-format", "console",
        ]  # fmt: skip
        with agent_log.open("wb") as out:
            agent = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            run = api.create_run(workspace, cv, auto_apply=True)

            def describe() -> str:
                pods = [log_tail(p.log_path) for p in cluster.pods.values() if p.log_path]
                return (
                    f"run: {api.run(run)}\nagent:\n{log_tail(agent_log)}\n"
                    f"jobs: {list(cluster.jobs)} exits: {cluster.exits}\n"
                    f"deleted: {cluster.deleted}\npods:\n" + "\n".join(pods)
                )

            status = wait_until(
                lambda: (s := api.run_status(run)) in ("applied", "errored", "canceled") and s,
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
        finally:
            agent.terminate()
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
