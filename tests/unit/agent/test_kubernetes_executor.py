"""The Kubernetes executor against a fake API server whose kubelet runs pods as processes."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from terrapod.agent.http import Backoff, JobClient, ListenerClient, token_joiner
from terrapod.agent.kubernetes import (
    TICKET_PATH,
    KubernetesExecutor,
    KubernetesOptions,
    build_manifests,
)
from terrapod.agent.loop import Agent
from terrapod.agent.ticket import JobTicket
from terrapod.runner.spec import JobControl, JobSpec, Variable
from tests.unit.agent.fake_k8s import AGENT_ROLE, FakeImage, FakeKubernetes, _Response
from tests.unit.agent.fakeserver import AGENT_TOKEN, BASE_URL, FakeJob, FakeServer

NS = "terrapod-jobs"
RUN_TOKEN = "tpod.run-token-that-must-stay-secret-0123456789"
SENSITIVE = "sensitive-db-password-42"
PLAIN = "plain-region-value"
SIGNED = "http://127.0.0.1:1/objects/cv.tar.gz?sig=signed-url-signature-abc"

# The "images" the fake kubelet knows: each runs a small Python program with the container's
# command (its ticket path already pointing at the mounted Secret's file) as arguments.
READS_TICKET = f"""
import json, sys
ticket = json.load(open(sys.argv[sys.argv.index("--ticket-file") + 1]))
assert ticket["run_token"] == {RUN_TOKEN!r}, ticket
print("reported the end of", ticket["job_id"], flush=True)
"""
FAILS = f"""
import sys
for i in range(100):
    print("line", i)
print("Error: something broke; token was", {RUN_TOKEN!r}, "and", {SENSITIVE!r})
sys.exit(1)
"""
SLEEPS = "import time; print('started', flush=True); time.sleep(120)"
OOM = "import os, signal; print('allocating', flush=True); os.kill(os.getpid(), signal.SIGKILL)"


def python(script: str) -> FakeImage:
    return FakeImage(run=lambda argv: [sys.executable, "-c", script, *argv])


def make_ticket(**spec_changes: Any) -> JobTicket:
    spec = JobSpec(
        job_id="job-AbCdEfGh01234567",
        run_id="run-XyZ0123456789abc",
        phase="plan",
        organization_name="acme",
        workspace_name="network",
        terraform_version="1.15.5",
        working_directory=None,
        variables=(
            Variable(
                key="db_password", value=SENSITIVE, category="terraform", hcl=False, sensitive=True
            ),
            Variable(key="AWS_REGION", value=PLAIN, category="env", hcl=False, sensitive=False),
        ),
        workspace_id="ws-0123456789abcdef",
        **{"timeout_seconds": 600, **spec_changes},
    )
    return JobTicket(
        job_id=spec.job_id,
        run_id=spec.run_id,
        phase="plan",
        spec=spec,
        run_token=RUN_TOKEN,
        run_token_expires_at=None,
        urls={"configuration": SIGNED, "state": None},
        base_url="https://terrapod.example.com",
        agent_id="agent-0123456789abcdef",
    )


def options(image: str = "test/ok", **changes: Any) -> KubernetesOptions:
    values: dict[str, Any] = {
        "namespace": NS,
        "image": image,
        "service_account": "terrapod-job",
        "poll_seconds": 0.05,
        "start_timeout_seconds": 0,
        "deadline_margin_seconds": 0,
    }
    values.update(changes)
    return KubernetesOptions(**values)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeKubernetes]:
    kube = FakeKubernetes(tmp_path)
    kube.images.update(
        {
            "test/ok": python(READS_TICKET),
            "test/fails": python(FAILS),
            "test/sleeps": python(SLEEPS),
            "test/oom": FakeImage(run=python(OOM).run, oom=True),
            "test/missing": FakeImage(pull_error="ImagePullBackOff"),
        }
    )
    with kube.running():
        yield kube


def executor(
    fake: FakeKubernetes, opts: KubernetesOptions, suffix: str = "abcde"
) -> KubernetesExecutor:
    return KubernetesExecutor(fake.api_client(), opts, name_suffix=lambda: suffix)


def deletions(fake: FakeKubernetes) -> list[tuple[str, str, str | None]]:
    return [(kind, name, opts.get("propagationPolicy")) for kind, name, opts in fake.deleted]


# -- manifests --------------------------------------------------------------------------------


def serialized(manifests: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    api = client.ApiClient()
    return (
        api.sanitize_for_serialization(manifests.job),
        api.sanitize_for_serialization(manifests.secret("0000-uid")),
    )


def test_manifests_are_valid_kubernetes_objects() -> None:
    manifests = build_manifests(make_ticket(), options(), "abcde")
    api = client.ApiClient()
    for body, model in zip(serialized(manifests), ("V1Job", "V1Secret"), strict=True):
        again = api.deserialize(_Response(json.dumps(body)), model)
        assert api.sanitize_for_serialization(again) == body


def test_the_job_holds_no_secret() -> None:
    job, secret = serialized(build_manifests(make_ticket(), options(), "abcde"))
    text = json.dumps(job)
    for value in (RUN_TOKEN, SENSITIVE, PLAIN, SIGNED, "signed-url-signature"):
        assert value not in text
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["terrapod", "agent", "run-job", "--ticket-file", TICKET_PATH]
    assert {e["name"] for e in container["env"]} == {"HOME", "TMPDIR"}
    # The ticket reaches the pod only through the read-only Secret volume.
    assert pod["volumes"][0]["secret"]["secretName"] == job["metadata"]["name"]
    mount = container["volumeMounts"][0]
    assert mount["readOnly"] is True and TICKET_PATH.startswith(mount["mountPath"] + "/")
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "terrapod-job"
    ticket = json.loads(base64.b64decode(secret["data"]["ticket.json"]))
    assert ticket == json.loads(json.dumps(make_ticket().to_dict()))
    assert JobTicket.from_dict(ticket).run_token == RUN_TOKEN
    assert secret["immutable"] is True
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job["metadata"]["name"],
            "uid": "0000-uid",
        }
    ]


def test_a_ca_configmap_is_mounted_for_run_job() -> None:
    job, _ = serialized(build_manifests(make_ticket(), options(ca_configmap="terrapod-ca"), "x"))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][-2:] == ["--ca-file", "/var/run/terrapod/ca/ca.crt"]
    assert {"name": "ca", "mountPath": "/var/run/terrapod/ca", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert pod["volumes"][-1]["configMap"]["name"] == "terrapod-ca"


def test_the_job_never_retries_and_has_a_deadline() -> None:
    job, _ = serialized(build_manifests(make_ticket(), options(deadline_margin_seconds=120), "x1"))
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["podFailurePolicy"]["rules"] == [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "run-job", "operator": "NotIn", "values": [0]},
        }
    ]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 600 + 120
    assert spec["ttlSecondsAfterFinished"] == 3600


def test_resources_come_from_the_workspace_or_the_defaults() -> None:
    job, _ = serialized(
        build_manifests(make_ticket(resource_cpu="250m", resource_memory="512Mi"), options(), "x")
    )
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "250m", "memory": "512Mi"},
    }
    job, _ = serialized(build_manifests(make_ticket(), options(default_memory="3Gi"), "x"))
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "1", "memory": "3Gi"}


def test_labels_and_security_context() -> None:
    job, secret = serialized(build_manifests(make_ticket(), options(labels={"team": "infra"}), "x"))
    labels = job["metadata"]["labels"]
    assert labels["terrapod.io/run-id"] == "run-XyZ0123456789abc"
    assert labels["terrapod.io/job-id"] == "job-AbCdEfGh01234567"
    assert labels["terrapod.io/phase"] == "plan"
    assert labels["team"] == "infra"
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert secret["metadata"]["labels"] == labels
    assert job["metadata"]["name"] == "terrapod-plan-abcdefgh01234567-x"
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["privileged"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}


async def test_a_bad_resource_quantity_errors_before_anything_is_created(
    fake: FakeKubernetes,
) -> None:
    result = await executor(fake, options()).execute(
        make_ticket(resource_memory="lots"), JobControl()
    )
    assert result is not None and result.outcome == "errored"
    assert "resource-memory 'lots'" in (result.error or "")
    assert fake.requests == []


def test_the_documented_role_is_what_the_fake_cluster_enforces() -> None:
    """Every test here runs with exactly the permissions docs/usage/agents.md tells people
    to grant the agent."""
    docs = Path(__file__).parents[3] / "docs" / "usage" / "agents.md"
    blocks = docs.read_text().split("```yaml\n")[1:]
    documents = [d for b in blocks for d in yaml.safe_load_all(b.split("```")[0]) if d]
    (role,) = [d for d in documents if d["kind"] == "Role"]
    granted = {
        (verb, res) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]
    }
    assert granted == AGENT_ROLE


# -- running jobs -----------------------------------------------------------------------------


async def test_a_pod_that_exits_0_reported_itself(fake: FakeKubernetes) -> None:
    result = await executor(fake, options("test/ok")).execute(make_ticket(), JobControl())
    assert result is None
    name = "terrapod-plan-abcdefgh01234567-abcde"
    # The pod read the ticket from the mounted Secret (the program checks the run token).
    assert fake.exits[name] == 0
    # Created Job first, then the Secret owned by it; both deleted at the end.
    creates = [r.path.rsplit("/", 1)[-1] for r in fake.requests if r.method == "POST"]
    assert creates == ["jobs", "secrets"]
    assert ("jobs", name, "Background") in deletions(fake)
    assert fake.jobs == {} and fake.secrets == {}


async def test_a_pod_that_fails_without_reporting_is_errored_with_its_log(
    fake: FakeKubernetes,
) -> None:
    result = await executor(fake, options("test/fails")).execute(make_ticket(), JobControl())
    assert result is not None and result.outcome == "errored"
    error = result.error or ""
    assert error.startswith("the job's Kubernetes pod ended without reporting: Error (exit code 1)")
    assert "Error: something broke" in error
    assert "line 99" in error and "line 50" not in error  # the tail only
    # Secrets the program printed are masked before they reach the run's log.
    assert RUN_TOKEN not in error and SENSITIVE not in error
    assert "token was *** and ***" in error
    assert fake.jobs == {} and fake.secrets == {}


async def test_an_oom_killed_pod_says_so(fake: FakeKubernetes) -> None:
    result = await executor(fake, options("test/oom")).execute(make_ticket(), JobControl())
    assert result is not None and result.outcome == "errored"
    assert "OOMKilled (exit code 137)" in (result.error or "")
    assert "resource-memory" in (result.error or "")


async def test_a_job_past_its_deadline_is_errored(fake: FakeKubernetes) -> None:
    result = await executor(fake, options("test/sleeps")).execute(
        make_ticket(timeout_seconds=1), JobControl()
    )
    assert result is not None and result.outcome == "errored"
    assert "DeadlineExceeded: the job ran longer than 1s" in (result.error or "")
    assert fake.jobs == {} and fake.secrets == {}


async def test_an_image_that_cannot_be_pulled_is_errored(fake: FakeKubernetes) -> None:
    result = await executor(fake, options("test/missing")).execute(make_ticket(), JobControl())
    assert result is not None and result.outcome == "errored"
    assert "could not start: ImagePullBackOff" in (result.error or "")
    assert fake.jobs == {} and fake.secrets == {}


async def test_force_cancel_deletes_the_job_at_once(fake: FakeKubernetes) -> None:
    control = JobControl()
    task = asyncio.create_task(
        executor(fake, options("test/sleeps")).execute(make_ticket(), control)
    )
    await asyncio.to_thread(
        fake.wait_for,
        lambda: any(p.obj["status"]["phase"] == "Running" for p in fake.pods.values()),
    )
    pod = next(iter(fake.pods.values()))
    control.force.set()
    result = await task
    assert result is not None and result.outcome == "canceled"
    name = "terrapod-plan-abcdefgh01234567-abcde"
    assert ("jobs", name, "Foreground") in deletions(fake)
    assert next(o for k, n, o in fake.deleted if k == "jobs")["gracePeriodSeconds"] == "0"
    assert pod.process is not None and pod.process.wait(timeout=10) < 0
    assert fake.jobs == {} and fake.secrets == {} and fake.pods == {}


async def test_an_agent_that_stops_leaves_the_job_to_finish_by_itself(
    fake: FakeKubernetes,
) -> None:
    """The loop's shutdown sets ``control.cancel``: the pod carries on and reports itself."""
    control = JobControl()
    task = asyncio.create_task(
        executor(fake, options("test/sleeps")).execute(make_ticket(), control)
    )
    await asyncio.to_thread(
        fake.wait_for,
        lambda: any(p.obj["status"]["phase"] == "Running" for p in fake.pods.values()),
    )
    control.cancel.set()
    assert await task is None
    assert fake.deleted == []
    assert len(fake.jobs) == 1 and len(fake.secrets) == 1


async def test_a_cancelled_execute_leaves_the_job_running(fake: FakeKubernetes) -> None:
    task = asyncio.create_task(
        executor(fake, options("test/sleeps")).execute(make_ticket(), JobControl())
    )
    await asyncio.to_thread(fake.wait_for, lambda: bool(fake.secrets))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.deleted == []
    assert len(fake.jobs) == 1 and len(fake.secrets) == 1


async def test_keep_finished_leaves_job_and_secret(fake: FakeKubernetes) -> None:
    result = await executor(fake, options("test/ok", keep_finished=True)).execute(
        make_ticket(), JobControl()
    )
    assert result is None
    assert fake.deleted == []
    assert len(fake.jobs) == 1 and len(fake.secrets) == 1


async def test_a_job_deleted_by_someone_else_is_errored(fake: FakeKubernetes) -> None:
    kube = executor(fake, options("test/sleeps"))
    task = asyncio.create_task(kube.execute(make_ticket(), JobControl()))
    await asyncio.to_thread(fake.wait_for, lambda: bool(fake.secrets))
    await asyncio.to_thread(
        client.BatchV1Api(fake.api_client()).delete_namespaced_job,
        "terrapod-plan-abcdefgh01234567-abcde",
        NS,
    )
    result = await task
    assert result is not None and result.outcome == "errored"
    assert "was deleted before the job ended" in (result.error or "")
    # The Secret went with its owner.
    assert fake.secrets == {}


# -- API errors -------------------------------------------------------------------------------


async def test_an_existing_job_name_is_a_clear_error(fake: FakeKubernetes) -> None:
    first = executor(fake, options("test/ok", keep_finished=True))
    assert await first.execute(make_ticket(), JobControl()) is None
    result = await executor(fake, options("test/ok")).execute(make_ticket(), JobControl())
    assert result is not None and result.outcome == "errored"
    error = result.error or ""
    assert error.startswith(
        f"creating the Job terrapod-plan-abcdefgh01234567-abcde in namespace {NS} failed: "
        '409 Conflict: jobs.batch "terrapod-plan-abcdefgh01234567-abcde" already exists'
    )
    # The other Job is not ours to delete.
    assert fake.deleted == [] and len(fake.jobs) == 1


async def test_a_forbidden_job_create_names_the_role(fake: FakeKubernetes) -> None:
    fake.forbidden.add(("create", "jobs"))
    result = await executor(fake, options()).execute(make_ticket(), JobControl())
    assert result is not None and result.outcome == "errored"
    error = result.error or ""
    assert "creating the Job" in error and "403 Forbidden" in error
    assert 'cannot create resource "jobs"' in error
    assert "docs/usage/agents.md" in error
    assert fake.jobs == {} and fake.secrets == {}


async def test_a_forbidden_secret_create_removes_the_job(fake: FakeKubernetes) -> None:
    fake.forbidden.add(("create", "secrets"))
    result = await executor(fake, options("test/sleeps")).execute(make_ticket(), JobControl())
    assert result is not None and result.outcome == "errored"
    assert "creating the Secret" in (result.error or "") and "403" in (result.error or "")
    assert [k for k, _, _ in fake.deleted] == ["jobs"]
    assert fake.jobs == {} and fake.pods == {}


async def test_a_job_created_without_an_answer_is_deleted(fake: FakeKubernetes) -> None:
    """The Job may exist though the call failed: its pod must not wait for a Secret forever."""
    fake.unanswered.add(("POST", "jobs"))
    result = await executor(fake, options("test/ok")).execute(make_ticket(), JobControl())
    assert result is not None and result.outcome == "errored"
    assert "could not be reached" in (result.error or "")
    assert [(k, n) for k, n, _ in fake.deleted] == [
        ("jobs", "terrapod-plan-abcdefgh01234567-abcde")
    ]
    assert fake.jobs == {} and fake.secrets == {}


async def test_an_api_server_that_is_away_while_the_job_runs_is_ridden_out(
    fake: FakeKubernetes,
) -> None:
    name = "terrapod-plan-abcdefgh01234567-abcde"
    fake.unavailable[("GET", name)] = 5
    result = await executor(fake, options("test/ok")).execute(make_ticket(), JobControl())
    assert result is None
    assert fake.unavailable[("GET", name)] == 0
    assert fake.exits[name] == 0


async def test_an_unreachable_cluster_is_a_clear_error(tmp_path: Path) -> None:
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    opts = options(request_timeout_seconds=5)
    result = await KubernetesExecutor(api, opts).execute(make_ticket(), JobControl())
    assert result is not None and result.outcome == "errored"
    assert "the Kubernetes API could not be reached" in (result.error or "")


# -- the job heartbeat until the pod runs -----------------------------------------------------


def server_ticket(job: FakeJob) -> JobTicket:
    return JobTicket(
        job_id=job.job_id,
        run_id=job.run_id,
        phase=job.phase,
        spec=job.spec,
        run_token=job.run_token,
        run_token_expires_at=None,
        urls={},
        base_url=BASE_URL,
        agent_id="agent-1",
    )


async def test_the_agent_keeps_a_pending_pod_alive_and_force_deletes_it(
    fake: FakeKubernetes,
) -> None:
    server = FakeServer()
    job = server.queue_job()
    job.status = "running"
    async with server.client() as http:
        kube = KubernetesExecutor(
            fake.api_client(),
            options("test/missing", start_timeout_seconds=3600, heartbeat_wait_seconds=0.2),
            lambda ticket: JobClient(http, ticket, backoff=Backoff()),
            name_suffix=lambda: "abcde",
        )
        task = asyncio.create_task(kube.execute(server_ticket(job), JobControl()))
        # The pod cannot start, yet the job stays alive on the server.
        await server.until(lambda: job.heartbeats >= 3)
        assert not task.done()
        server.request_control(job, "force")
        result = await task
    assert result is not None and result.outcome == "canceled"
    assert ("jobs", "terrapod-plan-1-abcde", "Foreground") in deletions(fake)
    assert fake.jobs == {} and fake.secrets == {}


async def test_the_reason_of_an_unreported_failure_goes_to_the_job_log(
    fake: FakeKubernetes,
) -> None:
    server = FakeServer()
    job = server.queue_job()
    job.status = "running"
    async with server.client() as http:
        kube = KubernetesExecutor(
            fake.api_client(),
            options("test/fails"),
            lambda ticket: JobClient(http, ticket, backoff=Backoff()),
        )
        result = await kube.execute(server_ticket(job), JobControl())
    assert result is not None and result.outcome == "errored"
    text = job.log.decode()
    assert text == f"\n\n{result.error}\n"
    assert "Error (exit code 1)" in text and "line 99" in text


async def test_a_job_the_server_ended_before_its_pod_ran_is_removed(
    fake: FakeKubernetes,
) -> None:
    server = FakeServer()
    job = server.queue_job()
    job.status = "running"
    async with server.client() as http:
        kube = KubernetesExecutor(
            fake.api_client(),
            options("test/missing", start_timeout_seconds=3600, heartbeat_wait_seconds=0.2),
            lambda ticket: JobClient(http, ticket, backoff=Backoff()),
            name_suffix=lambda: "abcde",
        )
        task = asyncio.create_task(kube.execute(server_ticket(job), JobControl()))
        await server.until(lambda: job.heartbeats >= 1)
        job.status = "errored"  # housekeeping failed it, say
        result = await task
    assert result is None  # nothing left to report
    assert fake.jobs == {} and fake.secrets == {}


async def test_an_agent_that_stops_leaves_its_jobs_running_and_hands_nothing_back(
    fake: FakeKubernetes,
) -> None:
    """The whole agent: SIGTERM lets go of a running plan's Job at once; its pod carries on."""
    server = FakeServer()
    job = server.queue_job()
    async with server.client() as http:
        listener = ListenerClient(http, token_joiner(http, AGENT_TOKEN, name="k8s", capacity=1))
        kube = KubernetesExecutor(
            fake.api_client(), options("test/sleeps"), listener.job, name_suffix=lambda: "abcde"
        )
        agent = Agent(listener, kube, concurrency=1, poll_wait=0.1)
        running = asyncio.create_task(agent.run())
        await asyncio.to_thread(
            fake.wait_for,
            lambda: any(p.obj["status"]["phase"] == "Running" for p in fake.pods.values()),
        )
        agent.request_stop()
        await asyncio.wait_for(running, 30)
    assert job.ends == []  # neither handed back nor ended: the pod will report
    assert fake.deleted == []
    assert list(fake.jobs) == [(NS, "terrapod-plan-1-abcde")]
