"""The Kubernetes executor: each job runs as a ``batch/v1`` Job in a cluster.

For every claimed job the agent creates

1. a **Job** whose one pod runs ``terrapod agent run-job --ticket-file <TICKET_PATH>``. It has
   no secret anywhere in its spec: no environment value, argument or annotation carries one;
2. a **Secret** holding the ticket (:meth:`JobTicket.to_dict`: the spec with its variable
   values, the run token, the signed URLs), mounted read-only into the pod. It is created
   *after* the Job so that it can name the Job as its owner: when the Job goes, whoever
   deletes it (this agent, ``ttlSecondsAfterFinished``, an operator), the cluster's garbage
   collector deletes the Secret too. Until the Secret exists the kubelet keeps the pod
   waiting for its volume, so the order costs nothing.

The pod speaks the job routes itself (heartbeat, logs, state, the final PATCH; see
``docs/dev/agents.md``), so a plain cancel reaches it without the agent. Until the pod runs
(scheduling, image pull) the agent beats the job heartbeat for it, so a slow start is not
taken for a dead job; a force-cancel heard there, or set by the agent, deletes the Job at
once. Otherwise the agent only watches: it polls the Job until it ends, and when the pod died
without reporting (a non-zero exit, OOMKilled, the deadline, an image that cannot be pulled)
it reads the pod's status and the tail of its log and returns the reason as an ``errored``
result for the agent to report. ``run-job`` exits 0 once it has reported the job's end,
whatever the outcome, so a Job that succeeded needs no report (``None``).

The official client is synchronous; every call runs in a worker thread
(:func:`asyncio.to_thread`) with a request timeout, so the agent's event loop never blocks.
When the agent stops (``control.cancel``, set by the loop at its first stop request since
``jobs_outlive_agent`` is true, or the ``execute`` task cancelled) it leaves its Jobs running
and returns ``None`` at once: each pod finishes and reports by itself, and
``ttlSecondsAfterFinished`` removes the Job and, through the owner
reference, its Secret. A rolling update of the agent's Deployment disturbs no job.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import json
import os
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import urllib3
from kubernetes import client, config  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]
from kubernetes.config.config_exception import ConfigException  # type: ignore[import-untyped]
from kubernetes.utils.quantity import parse_quantity  # type: ignore[import-untyped]

from terrapod.agent.http import JobClient, JobGone, ProtocolError
from terrapod.agent.ticket import JobTicket
from terrapod.observability.logging import get_logger
from terrapod.runner.spec import JobControl, JobResult

log = get_logger("terrapod.agent.kubernetes")

TICKET_DIR = "/var/run/terrapod/ticket"
TICKET_KEY = "ticket.json"
TICKET_PATH = f"{TICKET_DIR}/{TICKET_KEY}"
CA_DIR = "/var/run/terrapod/ca"
_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
CA_KEY = "ca.crt"
CONTAINER = "run-job"
SCRATCH_DIR = "/tmp"  # noqa: S108 - an emptyDir volume of the pod, not the agent's /tmp

LABEL_RUN = "terrapod.io/run-id"
LABEL_JOB = "terrapod.io/job-id"
LABEL_PHASE = "terrapod.io/phase"
LABEL_AGENT = "terrapod.io/agent-id"

# Container states in which a pod will not start by itself; after ``start_timeout_seconds``
# the agent gives up instead of waiting for the Job's deadline (which may be hours away).
_CANNOT_START = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
_NAME_ALPHABET = string.ascii_lowercase + string.digits
# After the server answered a plain cancel (it answers it at once from then on) or refused a
# heartbeat: the pause before the next one.
_PAUSE_SECONDS = 1.0
# Writing a pod's failure into the job's log: given up after this (the end is reported anyway).
_LOG_WAIT_SECONDS = 60.0


class _State(enum.Enum):
    RUNNING = "running"
    DETACHED = "detached"
    """The agent stops: leave the Job running, report nothing."""


@dataclass
class _Watch:
    """One launched Job as the executor follows it."""

    name: str
    ticket: JobTicket
    started: asyncio.Event = field(default_factory=asyncio.Event)
    """The pod runs (and beats the job heartbeat itself)."""
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    """The server answered the job heartbeat with "no such running job"."""
    stuck_since: float | None = None


_MAX_TAIL_CHARS = 4000


@dataclass(frozen=True)
class KubernetesOptions:
    """How ``terrapod agent --executor kubernetes`` launches jobs."""

    namespace: str
    image: str
    """An image with Terrapod installed (``terrapod`` on its ``PATH``, or see ``command``)."""
    service_account: str | None = None
    """The pods' service account; its token is never mounted (the pod needs no cluster API)."""
    kubeconfig: Path | None = None
    """The agent's cluster credentials; by default the in-cluster service account when running
    in a pod, else ``$KUBECONFIG`` / ``~/.kube/config``."""
    context: str | None = None
    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    ca_configmap: str | None = None
    """A ConfigMap whose ``ca.crt`` the pods trust for the server (``run-job --ca-file``), when
    the server's certificate is not from a public CA."""
    command: tuple[str, ...] = ("terrapod",)
    """The image's Terrapod entry point; ``agent run-job --ticket-file …`` follows it."""
    ttl_after_finished_seconds: int = 3600
    """The cluster deletes a finished Job (and its Secret) after this long: the safety net
    for an agent that died or runs with ``keep_finished``."""
    deadline_margin_seconds: int = 300
    """``activeDeadlineSeconds`` is the job's timeout plus this (downloads, engine install)."""
    default_cpu: str = "1"
    default_memory: str = "2Gi"
    """Requests and limits when the workspace sets no ``resource-cpu``/``resource-memory``."""
    run_as_user: int = 65532
    """The pods' user, group and fsGroup (non-root)."""
    keep_finished: bool = False
    """Leave finished Jobs and Secrets for ``ttl_after_finished_seconds`` (debugging)."""
    poll_seconds: float = 2.0
    heartbeat_wait_seconds: float = 10.0
    """The job heartbeat's long poll while the agent beats it for a pod that has not started."""
    start_timeout_seconds: float = 300.0
    """How long a pod may sit in an image-pull or config error before the job is errored."""
    log_tail_lines: int = 30
    request_timeout_seconds: float = 30.0
    labels: dict[str, str] = field(default_factory=dict)
    """Extra labels for Jobs, pods and Secrets (cost allocation, network policies)."""


class KubernetesError(Exception):
    """A call to the cluster failed; the message says which call, where and why."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InvalidResources(ValueError):
    """A workspace's resource-cpu or resource-memory is not a Kubernetes quantity."""


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifests:
    name: str
    """The Job's and the Secret's name."""
    namespace: str
    labels: dict[str, str]
    job: Any
    """A ``V1Job``."""
    secret_data: dict[str, str] = field(repr=False)

    def secret(self, job_uid: str) -> Any:
        """The ``V1Secret`` with the ticket, owned by the created Job (``job_uid``)."""
        return client.V1Secret(
            api_version="v1",
            kind="Secret",
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels=dict(self.labels),
                # blockOwnerDeletion stays unset: setting it needs permission on the Job's
                # finalizers, which the agent's Role does not grant (and need not).
                owner_references=[
                    client.V1OwnerReference(
                        api_version="batch/v1", kind="Job", name=self.name, uid=job_uid
                    )
                ],
            ),
            type="Opaque",
            immutable=True,
            data=self.secret_data,
        )


def job_name(ticket: JobTicket, suffix: str) -> str:
    """A DNS-1123 name (lowercase, at most 63 characters: the pods' ``job-name`` label). Job
    ids are mixed-case, so the random suffix keeps two claims of one job apart as well as ids
    differing only in case."""
    ident = ticket.job_id.removeprefix("job-").lower()[:24]
    return f"terrapod-{ticket.phase}-{ident}-{suffix}"


def random_suffix() -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def job_labels(ticket: JobTicket, options: KubernetesOptions) -> dict[str, str]:
    return {
        **options.labels,
        "app.kubernetes.io/name": "terrapod",
        "app.kubernetes.io/component": "job",
        "app.kubernetes.io/managed-by": "terrapod-agent",
        LABEL_RUN: ticket.run_id,
        LABEL_JOB: ticket.job_id,
        LABEL_PHASE: ticket.phase,
        LABEL_AGENT: ticket.agent_id,
    }


def _quantity(value: str | None, default: str, what: str) -> str:
    chosen = (value or "").strip() or default
    try:
        parse_quantity(chosen)
    except ValueError:
        raise InvalidResources(
            f"the workspace's {what} {chosen!r} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)"
        ) from None
    return chosen


def build_manifests(ticket: JobTicket, options: KubernetesOptions, suffix: str) -> Manifests:
    """The Job (no secrets in it) and the Secret's data for one ticket."""
    name = job_name(ticket, suffix)
    labels = job_labels(ticket, options)
    cpu = _quantity(ticket.spec.resource_cpu, options.default_cpu, "resource-cpu")
    memory = _quantity(ticket.spec.resource_memory, options.default_memory, "resource-memory")
    resources = {"cpu": cpu, "memory": memory}
    uid = options.run_as_user
    args = ["agent", "run-job", "--ticket-file", TICKET_PATH]
    mounts = [
        client.V1VolumeMount(name="ticket", mount_path=TICKET_DIR, read_only=True),
        client.V1VolumeMount(name="scratch", mount_path=SCRATCH_DIR),
    ]
    volumes = [
        client.V1Volume(
            name="ticket",
            secret=client.V1SecretVolumeSource(
                secret_name=name,
                # Group-readable: the kubelet gives the files the pod's fsGroup.
                default_mode=0o440,
                items=[client.V1KeyToPath(key=TICKET_KEY, path=TICKET_KEY)],
            ),
        ),
        # The root filesystem is read-only; the engine works in here.
        client.V1Volume(name="scratch", empty_dir=client.V1EmptyDirVolumeSource()),
    ]
    if options.ca_configmap:
        args += ["--ca-file", f"{CA_DIR}/{CA_KEY}"]
        mounts.append(client.V1VolumeMount(name="ca", mount_path=CA_DIR, read_only=True))
        volumes.append(
            client.V1Volume(
                name="ca",
                config_map=client.V1ConfigMapVolumeSource(
                    name=options.ca_configmap,
                    items=[client.V1KeyToPath(key=CA_KEY, path=CA_KEY)],
                ),
            )
        )
    container = client.V1Container(
        name=CONTAINER,
        image=options.image,
        image_pull_policy=options.image_pull_policy,
        command=[*options.command, *args],
        # Not one secret here: the ticket comes from the mounted Secret only.
        env=[
            client.V1EnvVar(name="HOME", value=SCRATCH_DIR),
            client.V1EnvVar(name="TMPDIR", value=SCRATCH_DIR),
        ],
        resources=client.V1ResourceRequirements(requests=resources, limits=dict(resources)),
        security_context=client.V1SecurityContext(
            run_as_non_root=True,
            privileged=False,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=client.V1Capabilities(drop=["ALL"]),
        ),
        volume_mounts=mounts,
    )
    pod = client.V1PodSpec(
        restart_policy="Never",
        service_account_name=options.service_account,
        automount_service_account_token=False,
        enable_service_links=False,
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=uid,
            run_as_group=uid,
            fs_group=uid,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
        containers=[container],
        volumes=volumes,
        image_pull_secrets=[
            client.V1LocalObjectReference(name=s) for s in options.image_pull_secrets
        ]
        or None,
    )
    job = client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=options.namespace,
            labels=labels,
            annotations={
                "terrapod.io/workspace": (
                    f"{ticket.spec.organization_name}/{ticket.spec.workspace_name}"
                ),
                "terrapod.io/server": ticket.base_url,
            },
        ),
        spec=client.V1JobSpec(
            # A failed terraform is never run again: no retry, and any non-zero exit fails
            # the Job at once (podFailurePolicy), whatever backoffLimit a mutating webhook
            # might set.
            backoff_limit=0,
            pod_failure_policy=client.V1PodFailurePolicy(
                rules=[
                    client.V1PodFailurePolicyRule(
                        action="FailJob",
                        on_exit_codes=client.V1PodFailurePolicyOnExitCodesRequirement(
                            container_name=CONTAINER, operator="NotIn", values=[0]
                        ),
                    )
                ]
            ),
            active_deadline_seconds=max(
                1, ticket.spec.timeout_seconds + options.deadline_margin_seconds
            ),
            ttl_seconds_after_finished=options.ttl_after_finished_seconds,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=pod
            ),
        ),
    )
    ticket_json = json.dumps(ticket.to_dict(), separators=(",", ":")).encode()
    return Manifests(
        name=name,
        namespace=options.namespace,
        labels=labels,
        job=job,
        secret_data={TICKET_KEY: base64.b64encode(ticket_json).decode()},
    )


# --------------------------------------------------------------------------------------------
# The executor
# --------------------------------------------------------------------------------------------


class KubernetesExecutor:
    """Runs each job as a Kubernetes Job (see the module's docstring)."""

    jobs_outlive_agent = True
    """At the agent's first stop the loop sets ``control.cancel`` on every job, and
    ``execute`` lets go at once (``terrapod.agent.executor``, point 3)."""

    def __init__(
        self,
        api_client: Any,
        options: KubernetesOptions,
        job_client: Callable[[JobTicket], JobClient] | None = None,
        *,
        name_suffix: Callable[[], str] = random_suffix,
    ) -> None:
        """``job_client``: the job routes with a ticket's run token (the listener's
        ``job``), for the heartbeat until the pod runs; None beats nothing (tests)."""
        self._api_client = api_client
        self._job_client = job_client
        self._options = options
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._name_suffix = name_suffix

    @property
    def options(self) -> KubernetesOptions:
        return self._options

    def discard(self, run_id: str) -> None:
        """Nothing is kept between a run's jobs: each pod starts from the server's files."""

    async def aclose(self) -> None:
        await asyncio.to_thread(self._api_client.close)

    async def execute(self, ticket: JobTicket, control: JobControl) -> JobResult | None:
        """Launch the job's Job and Secret, wait for the end, clean up.

        None when the pod reported the job's end itself; otherwise the result the agent must
        report (the pod died without reporting, the launch failed, a force-cancel). The
        reason of an ``errored`` one is written to the phase's log first: the log is where
        people look, and the final PATCH does not put it there."""
        result = await self._execute(ticket, control)
        if result is not None and result.outcome == "errored" and result.error:
            await self._write_log(ticket, f"\n\n{result.error}\n".encode())
        return result

    async def _write_log(self, ticket: JobTicket, data: bytes) -> None:
        if self._job_client is None:
            return
        try:
            await asyncio.wait_for(self._job_client(ticket).write_log(data), _LOG_WAIT_SECONDS)
        except (TimeoutError, JobGone, ProtocolError, httpx.HTTPError) as exc:
            log.warning(
                "writing the reason to the job's log failed", job=ticket.job_id, error=str(exc)
            )

    async def _execute(self, ticket: JobTicket, control: JobControl) -> JobResult | None:
        try:
            manifests = build_manifests(ticket, self._options, self._name_suffix())
        except InvalidResources as exc:
            return JobResult(outcome="errored", error=str(exc))
        name = manifests.name
        bound = log.bind(job=ticket.job_id, run=ticket.run_id, k8s_job=name)
        try:
            job = await self._call(
                f"creating the Job {name}",
                self._batch.create_namespaced_job,
                self._options.namespace,
                manifests.job,
            )
        except KubernetesError as exc:
            bound.error("launching the job failed", error=str(exc))
            if exc.status is None:
                # No answer: the Job may exist all the same; its pod would wait for a Secret
                # that never comes. (Never after a 409: that Job is not ours.)
                await self._delete_quietly(name)
            return JobResult(outcome="errored", error=str(exc))
        try:
            await self._call(
                f"creating the Secret {name}",
                self._core.create_namespaced_secret,
                self._options.namespace,
                manifests.secret(job.metadata.uid),
            )
        except KubernetesError as exc:
            bound.error("launching the job failed", error=str(exc))
            await self._delete_quietly(name)
            return JobResult(outcome="errored", error=str(exc))
        bound.info("kubernetes job launched")

        watch = _Watch(name, ticket)
        alive = asyncio.create_task(self._keep_alive(watch, control), name=f"job heartbeat {name}")
        clean_up = True
        try:
            result = await self._watch(watch, control)
            if result is _State.DETACHED:
                clean_up = False
                bound.info("agent stopping: the kubernetes job carries on by itself")
                return None
        except asyncio.CancelledError:
            clean_up = False
            raise
        finally:
            alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await alive
            if clean_up and not (self._options.keep_finished and not control.force.is_set()):
                await self._delete_quietly(name)
        ended = result if isinstance(result, JobResult) else None
        bound.info(
            "kubernetes job ended",
            outcome="reported by the job" if ended is None else ended.outcome,
        )
        return ended

    async def _keep_alive(self, watch: _Watch, control: JobControl) -> None:
        """Beat the job heartbeat until the pod runs (it beats its own from then on)."""
        if self._job_client is None:
            return
        ticket, started = watch.ticket, watch.started
        job = self._job_client(ticket)
        while not started.is_set():
            try:
                verdict = await job.heartbeat(self._options.heartbeat_wait_seconds)
            except JobGone:
                if not started.is_set():
                    watch.gone.set()
                return
            except ProtocolError as exc:
                log.warning("job heartbeat refused", job=ticket.job_id, status=exc.status)
                verdict = "refused"
            if started.is_set():
                return  # the pod's heartbeat speaks for the job now
            if verdict == "force":
                control.force.set()
                return
            if verdict is not None:
                # A plain cancel is for the pod (it hears it once it runs); the server answers
                # it at once from now on, so pause instead of spinning.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(started.wait(), _PAUSE_SECONDS)

    async def _watch(self, watch: _Watch, control: JobControl) -> JobResult | _State | None:
        """Poll the Job until it ends, a force-cancel comes or the agent stops."""
        while True:
            if control.force.is_set():
                await self._delete_job(watch.name, propagation="Foreground", grace_seconds=0)
                return JobResult(
                    outcome="canceled", error="force-canceled: the Kubernetes Job was deleted"
                )
            if control.cancel.is_set():
                return _State.DETACHED
            outcome = await self._step(watch)
            if outcome is not _State.RUNNING:
                return outcome
            await _first_of((control.force, control.cancel, watch.gone), self._options.poll_seconds)

    async def _step(self, watch: _Watch) -> JobResult | _State | None:
        """One look at the Job: its end, or RUNNING."""
        name = watch.name
        try:
            # The Job itself, status included: reading jobs/status would need a Role rule of
            # its own (RBAC treats subresources apart).
            job = await self._call(
                f"reading the Job {name}",
                self._batch.read_namespaced_job,
                name,
                self._options.namespace,
            )
        except KubernetesError as exc:
            return _unreadable(name, exc)
        ended = _job_end(job)
        if ended == "Complete":
            return None
        if ended == "Failed":
            return await self._failure(watch.ticket, name, job)
        if not watch.started.is_set():
            return await self._check_start(watch)
        return _State.RUNNING

    async def _check_start(self, watch: _Watch) -> JobResult | _State | None:
        """Before the pod runs: give up on one stuck in an image or config error."""
        running, stuck = await self._pod_start(watch.name)
        if running:
            # It runs (or ran and ended between two looks: the Job's status will say).
            watch.started.set()
            return _State.RUNNING
        if watch.gone.is_set():
            # The server ended the job (force-cancel, timeout) before the pod ran: it must
            # not run now, and nothing is left to report.
            await self._delete_job(watch.name, propagation="Foreground", grace_seconds=0)
            return None
        if stuck is None:
            watch.stuck_since = None
            return _State.RUNNING
        now = time.monotonic()
        watch.stuck_since = watch.stuck_since or now
        if now - watch.stuck_since < self._options.start_timeout_seconds:
            return _State.RUNNING
        await self._delete_job(watch.name, propagation="Background", grace_seconds=0)
        return JobResult(
            outcome="errored", error=f"the job's Kubernetes pod could not start: {stuck}"
        )

    async def _pods(self, name: str) -> list[Any]:
        found = await self._call(
            f"listing the pods of the Job {name}",
            self._core.list_namespaced_pod,
            self._options.namespace,
            label_selector=f"job-name={name}",
        )
        return list(found.items or [])

    async def _pod_start(self, name: str) -> tuple[bool, str | None]:
        """Whether the Job's pod runs (or ran), and why it cannot start when it is stuck
        (``"ImagePullBackOff: <message>"``)."""
        try:
            pods = await self._pods(name)
        except KubernetesError:
            return False, None
        for pod in pods:
            if pod.status is not None and pod.status.phase in ("Running", "Succeeded", "Failed"):
                return True, None
        for pod in pods:
            for status in (pod.status and pod.status.container_statuses) or []:
                waiting = status.state and status.state.waiting
                if waiting is not None and waiting.reason in _CANNOT_START:
                    return False, f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
        return False, None

    async def _failure(self, ticket: JobTicket, name: str, job: Any) -> JobResult:
        """The Job failed: its pod died without reporting. Say why, with the log's tail."""
        condition = _condition(job, "Failed")
        job_reason = (condition.reason if condition is not None else None) or "Failed"
        reasons: list[str] = []
        tail = ""
        try:
            pods = await self._pods(name)
        except KubernetesError:
            pods = []
        if pods:
            pod = pods[-1]
            reasons.extend(_pod_reasons(pod))
            tail = await self._log_tail(pod.metadata.name)
        if job_reason == "DeadlineExceeded":
            deadline = job.spec.active_deadline_seconds if job.spec is not None else None
            reasons.insert(0, f"DeadlineExceeded: the job ran longer than {deadline}s")
        elif not reasons:
            message = condition.message if condition is not None else None
            reasons.append(f"{job_reason}: {message}" if message else job_reason)
        error = "the job's Kubernetes pod ended without reporting: " + "; ".join(reasons)
        if tail:
            error += "\nlast lines of the pod's log:\n" + _mask(tail, ticket)
        return JobResult(outcome="errored", error=error)

    async def _log_tail(self, pod_name: str) -> str:
        try:
            data = await self._call(
                f"reading the log of pod {pod_name}", self._read_log_bytes, pod_name
            )
        except KubernetesError:
            # A pod that never started has no log (400); the reason says enough.
            return ""
        text = bytes(data).decode("utf-8", "replace").strip()
        return text[-_MAX_TAIL_CHARS:]

    def _read_log_bytes(self, pod_name: str, _request_timeout: float) -> bytes:
        # The raw body (in the worker thread): the client would parse a log that happens to
        # be JSON, like one of Terrapod's own JSON log lines, into a dict.
        response = self._core.read_namespaced_pod_log(
            pod_name,
            self._options.namespace,
            container=CONTAINER,
            tail_lines=self._options.log_tail_lines,
            _preload_content=False,
            _request_timeout=_request_timeout,
        )
        try:
            return bytes(response.data or b"")
        finally:
            response.release_conn()

    async def _delete_job(self, name: str, *, propagation: str, grace_seconds: int | None) -> None:
        try:
            await self._call(
                f"deleting the Job {name}",
                self._batch.delete_namespaced_job,
                name,
                self._options.namespace,
                propagation_policy=propagation,
                grace_period_seconds=grace_seconds,
            )
        except KubernetesError as exc:
            if exc.status != 404:
                raise

    async def _delete_quietly(self, name: str) -> None:
        """Delete the Job (its pods in the background) and the Secret; already gone is fine.
        A failure is logged: the TTL and the owner reference are the safety net."""
        try:
            await self._delete_job(name, propagation="Background", grace_seconds=None)
        except KubernetesError as exc:
            log.warning("deleting the kubernetes job failed", k8s_job=name, error=str(exc))
        try:
            await self._delete_secret(name)
        except KubernetesError as exc:
            log.warning("deleting the kubernetes secret failed", k8s_job=name, error=str(exc))

    async def _delete_secret(self, name: str) -> None:
        try:
            await self._call(
                f"deleting the Secret {name}",
                self._core.delete_namespaced_secret,
                name,
                self._options.namespace,
            )
        except KubernetesError as exc:
            if exc.status != 404:
                raise

    async def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call in a worker thread; errors become :class:`KubernetesError`."""
        timeout = self._options.request_timeout_seconds
        try:
            return await asyncio.to_thread(method, *args, _request_timeout=timeout, **kwargs)
        except ApiException as exc:
            raise _api_error(what, self._options.namespace, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubernetesError(
                f"{what} in namespace {self._options.namespace} failed: the Kubernetes API "
                f"could not be reached ({type(exc).__name__}: {exc})"
            ) from None


# --------------------------------------------------------------------------------------------
# Reading Kubernetes objects
# --------------------------------------------------------------------------------------------


def _unreadable(name: str, exc: KubernetesError) -> JobResult | _State:
    """Reading the Job failed: the end for a deleted Job or lost permission, else go on."""
    if exc.status == 404:
        return JobResult(
            outcome="errored",
            error=f"the Kubernetes Job {name} was deleted before the job ended",
        )
    if exc.status in (401, 403):
        return JobResult(outcome="errored", error=str(exc))
    # The API server is restarting or unreachable: the pod runs on regardless.
    log.warning("watching the kubernetes job failed", k8s_job=name, error=str(exc))
    return _State.RUNNING


async def _first_of(events: tuple[asyncio.Event, ...], seconds: float) -> None:
    """Wait until one of ``events`` is set, at most ``seconds``."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _condition(job: Any, kind: str) -> Any:
    for condition in (job.status and job.status.conditions) or []:
        if condition.type == kind and condition.status == "True":
            return condition
    return None


def _job_end(job: Any) -> str | None:
    """``"Complete"``, ``"Failed"`` or None while the Job is still running."""
    for kind in ("Failed", "Complete"):
        if _condition(job, kind) is not None:
            return kind
    return None


def _pod_reasons(pod: Any) -> list[str]:
    reasons: list[str] = []
    for status in (pod.status and pod.status.container_statuses) or []:
        state = status.state
        if state is None:
            continue
        if state.terminated is not None:
            done = state.terminated
            text = f"{done.reason or 'Terminated'} (exit code {done.exit_code})"
            if done.reason == "OOMKilled":
                text += (
                    ": the job needed more memory than its limit (the workspace's resource-memory)"
                )
            elif done.message:
                text += f": {done.message.strip()}"
            reasons.append(text)
        elif state.waiting is not None and state.waiting.reason:
            reasons.append(f"{state.waiting.reason}: {state.waiting.message or ''}".rstrip(": "))
    if not reasons and pod.status is not None and pod.status.reason:
        reasons.append(f"{pod.status.reason}: {pod.status.message or ''}".rstrip(": "))
    return reasons


def _mask(text: str, ticket: JobTicket) -> str:
    """The pod's own log should hold no secret; mask the ticket's anyway before it is reported."""
    hidden = [ticket.run_token, *(v.value for v in ticket.spec.variables if v.sensitive)]
    hidden.extend(url for url in ticket.urls.values() if url)
    for value in sorted((h for h in hidden if len(h) >= 4), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _api_error(what: str, namespace: str, exc: Any) -> KubernetesError:
    status = int(exc.status) if exc.status else None
    message = exc.reason or ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        body = json.loads(exc.body)
        message = body.get("message") or message
    text = f"{what} in namespace {namespace} failed: {status} {exc.reason}: {message}"
    if status == 403:
        text += (
            " (the agent's service account needs the Role in docs/usage/agents.md, "
            "'Kubernetes': secrets and jobs create/get/delete, pods get/list, pods/log get)"
        )
    elif status == 409:
        text += " (an object of that name exists already)"
    return KubernetesError(text, status=status)


# --------------------------------------------------------------------------------------------
# Construction from the command line
# --------------------------------------------------------------------------------------------


def api_client_for(options: KubernetesOptions) -> Any:
    """An ``ApiClient`` for the cluster: ``options.kubeconfig``, else the in-cluster service
    account when running in a pod, else the default kubeconfig."""
    configuration = client.Configuration()
    try:
        if options.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=str(options.kubeconfig) if options.kubeconfig else None,
                context=options.context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError) as exc:
        raise KubernetesError(f"no Kubernetes credentials: {exc}") from None
    return client.ApiClient(configuration)


def build_kubernetes_executor(
    options: KubernetesOptions, job_client: Callable[[JobTicket], JobClient]
) -> KubernetesExecutor:
    """The executor ``terrapod agent --executor kubernetes`` runs jobs with; ``job_client``
    is the listener's (for the job heartbeat until a pod runs)."""
    return KubernetesExecutor(api_client_for(options), options, job_client)


def in_cluster_namespace() -> str | None:
    """The namespace of the pod this runs in, if it runs in one."""
    try:
        return Path(_NAMESPACE_FILE).read_text().strip() or None
    except OSError:
        return None
