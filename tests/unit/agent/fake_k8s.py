"""A fake Kubernetes API server with a fake kubelet, for the Kubernetes executor's tests.

It speaks the API for exactly the calls the executor makes (Secrets create/get/delete, Jobs
create/get/status/delete, pods list by label, a pod's log), keeps objects in memory and answers
with real Kubernetes shapes: the objects as the API server returns them (uid, resourceVersion,
creationTimestamp, status) and ``Status`` objects for errors (404 NotFound, 409 AlreadyExists,
403 Forbidden, 422 Invalid, 400 BadRequest).

Request bodies are checked against the official client's models: a body must deserialize into
its model (required fields present) and serialize back to exactly itself (no unknown or
misspelt field), like the API server's strict field validation. A few of the API server's
semantic checks that a mistake in the executor could trip are done too.

The **kubelet**: when a Job is created it makes the Job's pod, waits (as a real kubelet does)
until every Secret the pod mounts exists, writes their files into a temporary directory, and
runs the container's command as a local subprocess, with every argument and environment value
under a volume's mount path rewritten to that directory. It records the exit code and the
output as the pod's log and moves the pod and the Job to their end as the job controller
would: ``Complete`` on exit 0; ``Failed`` with reason ``PodFailurePolicy`` (or
``BackoffLimitExceeded``) otherwise; ``DeadlineExceeded`` (and the pod deleted) when the Job
outlives ``activeDeadlineSeconds``. How an image behaves is set in :attr:`FakeKubernetes.images`
(a command to run instead, an image pull error, OOM kills); by default the command runs as
written, with ``terrapod`` taken from this virtualenv, so a test can run a real
``terrapod agent run-job``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client

BIN_DIR = Path(sys.executable).parent

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("secrets", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/secrets(?:/(?P<name>[^/]+))?$")),
    (
        "jobs",
        re.compile(
            r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+)(?P<sub>/status)?)?$"
        ),
    ),
    (
        "pods",
        re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+)(?P<sub>/log)?)?$"),
    ),
]
# The Role of docs/usage/agents.md ("Kubernetes", "Permissions").
AGENT_ROLE = frozenset(
    {
        ("create", "jobs"),
        ("get", "jobs"),
        ("delete", "jobs"),
        ("create", "secrets"),
        ("get", "secrets"),
        ("delete", "secrets"),
        ("get", "pods"),
        ("list", "pods"),
        ("get", "pods/log"),
    }
)
_KINDS = {"secrets": ("", "Secret", "V1Secret"), "jobs": ("batch", "Job", "V1Job")}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeImage:
    """How the fake kubelet runs a container of an image."""

    run: Callable[[list[str]], list[str]] | None = None
    """Maps the container's command (paths already rewritten) to what runs instead; None runs
    it as written (``terrapod`` from this virtualenv)."""
    pull_error: str | None = None
    """``ErrImagePull``, ``ImagePullBackOff``…: the container never starts."""
    oom: bool = False
    """A process killed by SIGKILL is reported as the kernel's OOM kill (exit 137)."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class _Pod:
    obj: dict[str, Any]
    job_key: tuple[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    exit_code: int | None = None


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


class FakeKubernetes:
    def __init__(self, workdir: Path, *, service_account: str = "terrapod-agent") -> None:
        self.workdir = workdir
        self.service_account = service_account
        self.images: dict[str, FakeImage] = {}
        self.role: set[tuple[str, str]] = set(AGENT_ROLE)
        """What the agent's service account may do (RBAC: ``(verb, resource)``, subresources
        as ``pods/log``); anything else is 403, as with the Role in docs/usage/agents.md."""
        self.forbidden: set[tuple[str, str]] = set()
        """``(verb, resource)`` pairs answered 403 although the Role allows them."""
        self.unanswered: set[tuple[str, str]] = set()
        """``(method, last path segment)`` of a request to carry out once without answering,
        e.g. ``("POST", "jobs")``: the client sees the connection drop."""
        self.unavailable: dict[tuple[str, str], int] = {}
        """``(method, last path segment)`` -> how many such requests to answer 503 first (an
        API server restarting)."""
        self.requests: list[Request] = []
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.configmaps: dict[tuple[str, str], dict[str, str]] = {}
        """ConfigMaps' data, put here by a test (the executor never creates one)."""
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.deleted: list[tuple[str, str, dict[str, Any]]] = []
        """``(resource, name, options)`` of every delete, in order."""
        self.exits: dict[str, int] = {}
        """Exit codes of the commands the kubelet ran, by Job name."""
        self.changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._closing = False

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def configuration(self) -> client.Configuration:
        return client.Configuration(host=self.url)

    def api_client(self) -> client.ApiClient:
        return client.ApiClient(self.configuration())

    @contextmanager
    def running(self) -> Iterator[FakeKubernetes]:
        fake = self

        class Handler(_Handler):
            kube = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            with self.changed:
                self._closing = True
                for pod in self.pods.values():
                    self._kill(pod, graceful=False)
                self.changed.notify_all()
            self._server.shutdown()
            self._server.server_close()
            for t in self._threads:
                t.join(timeout=30)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Block until ``predicate()`` (checked on every change of the fake's objects)."""
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise TimeoutError("the fake cluster did not reach the expected state")

    # -- the API -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Any:
        body = json.loads(raw) if raw else None
        with self.changed:
            self.requests.append(Request(method, path, query, body))
        for resource, pattern in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            ns, name = match["ns"], match["name"]
            sub = match.groupdict().get("sub")
            verb = {
                "POST": "create",
                "GET": "get" if name else "list",
                "DELETE": "delete",
            }.get(method)
            if verb is None:
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
            checked = resource + (sub or "")
            if (verb, checked) in self.forbidden or (verb, checked) not in self.role:
                group = _KINDS.get(resource, ("",))[0]
                raise ApiError(
                    403,
                    "Forbidden",
                    f"{resource}{'.' + group if group else ''} is forbidden: User "
                    f'"system:serviceaccount:{ns}:{self.service_account}" cannot {verb} '
                    f'resource "{checked}" in API group "{group}" in the namespace "{ns}"',
                    {"kind": resource, "group": group},
                )
            with self.changed:
                try:
                    if resource == "pods":
                        return self._pods_call(ns, name, sub, query)
                    if method == "POST" and name is None:
                        return self._create(resource, ns, body)
                    if method == "GET" and name is not None:
                        return 200, self._get(resource, ns, name)
                    if method == "DELETE" and name is not None:
                        return 200, self._delete(resource, ns, name, query, body)
                finally:
                    self.changed.notify_all()
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _create(self, resource: str, ns: str, body: Any) -> tuple[int, dict[str, Any]]:
        group, _kind, model = _KINDS[resource]
        _validate(body, model)
        name = (body.get("metadata") or {}).get("name") or ""
        if body["metadata"].get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", "the namespace of the object does not match")
        self._semantic_checks(resource, body)
        store = self.secrets if resource == "secrets" else self.jobs
        if (ns, name) in store:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{resource}{"." + group if group else ""} "{name}" already exists',
                {"name": name, "group": group, "kind": resource},
            )
        obj = json.loads(json.dumps(body))
        meta = obj["metadata"]
        meta.update(
            namespace=ns,
            uid=str(uuid.uuid4()),
            resourceVersion=str(len(self.requests)),
            creationTimestamp=_now(),
        )
        store[(ns, name)] = obj
        if resource == "jobs":
            spec = obj["spec"]
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            obj["status"] = {"startTime": _now(), "active": 1}
            obj["_started"] = time.monotonic()
            thread = threading.Thread(target=self._kubelet, args=(ns, name), daemon=True)
            self._threads.append(thread)
            thread.start()
        return 201, _public(obj)

    def _get(self, resource: str, ns: str, name: str) -> dict[str, Any]:
        store = self.secrets if resource == "secrets" else self.jobs
        if (ns, name) not in store:
            group = _KINDS[resource][0]
            raise ApiError(
                404,
                "NotFound",
                f'{resource}{"." + group if group else ""} "{name}" not found',
                {"name": name, "group": group, "kind": resource},
            )
        return _public(store[(ns, name)])

    def _delete(
        self, resource: str, ns: str, name: str, query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        obj = self._get(resource, ns, name)
        options = dict(body or {})
        for key in ("propagationPolicy", "gracePeriodSeconds"):
            if key in query:
                options[key] = query[key][0]
        self.deleted.append((resource, name, options))
        if resource == "secrets":
            del self.secrets[(ns, name)]
        else:
            del self.jobs[(ns, name)]
            graceful = str(options.get("gracePeriodSeconds", "30")) != "0"
            for key, pod in list(self.pods.items()):
                if pod.job_key == (ns, name):
                    self._kill(pod, graceful=graceful)
                    del self.pods[key]
            # The garbage collector: dependents of the Job go with it.
            uid = obj["metadata"]["uid"]
            for key, secret in list(self.secrets.items()):
                owners = secret["metadata"].get("ownerReferences") or []
                if any(o.get("uid") == uid for o in owners):
                    del self.secrets[key]
        group = _KINDS[resource][0]
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": name,
                "group": group,
                "kind": resource,
                "uid": obj["metadata"]["uid"],
            },
        }

    def _pods_call(
        self, ns: str, name: str | None, sub: str | None, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        if name is None:
            wanted = dict(
                part.split("=", 1)
                for part in (query.get("labelSelector") or [""])[0].split(",")
                if "=" in part
            )
            items = [
                p.obj
                for (pod_ns, _), p in self.pods.items()
                if pod_ns == ns
                and all(p.obj["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            ]
            return 200, {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(len(self.requests))},
                "items": json.loads(json.dumps(items)),
            }
        pod = self.pods.get((ns, name))
        if pod is None:
            raise ApiError(
                404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}
            )
        if sub != "/log":
            return 200, json.loads(json.dumps(pod.obj))
        container = (query.get("container") or ["run-job"])[0]
        if container != pod.obj["spec"]["containers"][0]["name"]:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if pod.log_path is None:
            raise ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: '
                + _waiting_reason(pod.obj),
            )
        lines = pod.log_path.read_bytes().splitlines(keepends=True)
        if "tailLines" in query:
            lines = lines[-int(query["tailLines"][0]) :] if int(query["tailLines"][0]) else []
        return 200, b"".join(lines)

    def _semantic_checks(self, resource: str, body: dict[str, Any]) -> None:
        name = body["metadata"].get("name") or ""
        limit = 63 if resource == "jobs" else 253
        if not _NAME.match(name) or len(name) > limit:
            raise _invalid(resource, name, "metadata.name", "a lowercase RFC 1123 name")
        for key, value in (body["metadata"].get("labels") or {}).items():
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                raise _invalid(resource, name, f"metadata.labels.{key}", "a valid label value")
        if resource == "secrets":
            for key, value in (body.get("data") or {}).items():
                try:
                    base64.b64decode(value, validate=True)
                except ValueError:
                    raise _invalid(resource, name, f"data[{key}]", "base64") from None
            return
        spec = body["spec"]
        pod = spec["template"]["spec"]
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            raise _invalid(resource, name, "spec.template.spec.restartPolicy", "Never or OnFailure")
        if spec.get("podFailurePolicy") and pod["restartPolicy"] != "Never":
            raise _invalid(resource, name, "spec.podFailurePolicy", "restartPolicy Never")
        volumes = {v["name"] for v in pod.get("volumes") or []}
        for container in pod["containers"]:
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in volumes:
                    raise _invalid(resource, name, "volumeMounts.name", "a volume of the pod")

    # -- the kubelet and the job controller --------------------------------------------------

    def _kubelet(self, ns: str, job_name: str) -> None:
        with self.changed:
            job = self.jobs.get((ns, job_name))
            if job is None:
                return
            template = job["spec"]["template"]
            pod_name = (
                f"{job_name}-{''.join(secrets.choice(string.ascii_lowercase) for _ in range(5))}"
            )
            container = template["spec"]["containers"][0]
            labels = {
                **(template["metadata"].get("labels") or {}),
                "job-name": job_name,
                "batch.kubernetes.io/job-name": job_name,
                "controller-uid": job["metadata"]["uid"],
                "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
            }
            obj = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": ns,
                    "uid": str(uuid.uuid4()),
                    "labels": labels,
                    "creationTimestamp": _now(),
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": job_name,
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": json.loads(json.dumps(template["spec"])),
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        _container_status(
                            container,
                            {"waiting": {"reason": "ContainerCreating"}},
                        )
                    ],
                },
            }
            pod = _Pod(obj=obj, job_key=(ns, job_name))
            self.pods[(ns, pod_name)] = pod
            self.changed.notify_all()
            image = self.images.get(container["image"], FakeImage())
            deadline = job["_started"] + job["spec"].get("activeDeadlineSeconds", 10**9)

            if image.pull_error is not None:
                obj["status"]["containerStatuses"][0]["state"] = {
                    "waiting": {
                        "reason": image.pull_error,
                        "message": f'Back-off pulling image "{container["image"]}"',
                    }
                }
                self.changed.notify_all()
                self._wait_until_gone_or_deadline(ns, job_name, pod, deadline)
                return

            # A pod waits for the Secrets and ConfigMaps it mounts.
            volumes = template["spec"].get("volumes") or []
            needed = [v["secret"]["secretName"] for v in volumes if v.get("secret")]
            maps = [v["configMap"]["name"] for v in volumes if v.get("configMap")]

            def mountable() -> bool:
                return all((ns, s) in self.secrets for s in needed) and all(
                    (ns, m) in self.configmaps for m in maps
                )

            def ready() -> bool:
                return self._closing or (ns, job_name) not in self.jobs or mountable()

            self.changed.wait_for(ready, max(0.0, deadline - time.monotonic()))
            if self._closing or (ns, job_name) not in self.jobs:
                return
            if not mountable():
                self._deadline_exceeded(ns, job_name, pod)
                return
            root = Path(tempfile.mkdtemp(prefix=f"{pod_name}-", dir=self.workdir))
            mounts = self._materialize(ns, template["spec"], container, root)
            argv = [_rewrite(a, mounts) for a in container.get("command") or []]
            argv += [_rewrite(a, mounts) for a in container.get("args") or []]
            env = {"PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
            env.update(
                {
                    e["name"]: _rewrite(e.get("value", ""), mounts)
                    for e in container.get("env") or []
                }
            )
            if image.run is not None:
                argv = image.run(argv)
            elif argv and argv[0] == "terrapod":
                argv[0] = str(BIN_DIR / "terrapod")
            pod.log_path = root / "container.log"
            with pod.log_path.open("wb") as log_file:
                pod.process = subprocess.Popen(
                    argv,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=root,
                    start_new_session=True,
                )
            started = _now()
            obj["status"].update(phase="Running", startTime=started)
            obj["status"]["containerStatuses"][0].update(
                state={"running": {"startedAt": started}}, ready=True, started=True
            )
            job["status"].update(ready=1)
            self.changed.notify_all()
            waiter = threading.Thread(target=self._reap, args=(pod,), daemon=True)
            self._threads.append(waiter)
            waiter.start()

            self.changed.wait_for(
                lambda: pod.exit_code is not None or self._closing,
                max(0.0, deadline - time.monotonic()),
            )
            if (ns, job_name) not in self.jobs or self._closing:
                return  # deleted: the pod went with it
            if pod.exit_code is None:
                self._kill(pod, graceful=False)
                self._deadline_exceeded(ns, job_name, pod)
                return
            self._finish(ns, job_name, pod, image)

    def _reap(self, pod: _Pod) -> None:
        assert pod.process is not None
        code = pod.process.wait()
        with self.changed:
            pod.exit_code = code
            self.changed.notify_all()

    def _wait_until_gone_or_deadline(
        self, ns: str, job_name: str, pod: _Pod, deadline: float
    ) -> None:
        self.changed.wait_for(
            lambda: self._closing or (ns, job_name) not in self.jobs,
            max(0.0, deadline - time.monotonic()),
        )
        if not self._closing and (ns, job_name) in self.jobs:
            self._deadline_exceeded(ns, job_name, pod)

    def _materialize(
        self, ns: str, pod_spec: dict[str, Any], container: dict[str, Any], root: Path
    ) -> dict[str, Path]:
        volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            target = root / "volumes" / mount["name"]
            target.mkdir(parents=True)
            if volume.get("secret") or volume.get("configMap"):
                if volume.get("secret"):
                    source = volume["secret"]
                    encoded = self.secrets[(ns, source["secretName"])].get("data") or {}
                    data = {k: base64.b64decode(v) for k, v in encoded.items()}
                else:
                    source = volume["configMap"]
                    data = {k: v.encode() for k, v in self.configmaps[(ns, source["name"])].items()}
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    path = target / item["path"]
                    path.write_bytes(data[item["key"]])
                    path.chmod(item.get("mode", source.get("defaultMode", 0o644)))
                if mount.get("readOnly"):
                    target.chmod(0o500)
            mounts[mount["mountPath"]] = target
        return mounts

    def _finish(self, ns: str, job_name: str, pod: _Pod, image: FakeImage) -> None:
        job = self.jobs[(ns, job_name)]
        code = pod.exit_code
        assert code is not None
        reason = "Completed" if code == 0 else "Error"
        if code < 0:
            if image.oom and code == -signal.SIGKILL:
                reason = "OOMKilled"
            code = 128 - code
        self.exits[job_name] = code
        finished = _now()
        status = pod.obj["status"]
        status["phase"] = "Succeeded" if code == 0 else "Failed"
        status["containerStatuses"][0].update(
            ready=False,
            started=False,
            state={
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": status.get("startTime"),
                    "finishedAt": finished,
                }
            },
        )
        job["status"].pop("active", None)
        job["status"]["ready"] = 0
        if code == 0:
            job["status"].update(
                succeeded=1,
                completionTime=finished,
                conditions=[
                    _condition(
                        "SuccessCriteriaMet",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                    ),
                    _condition(
                        "Complete",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                    ),
                ],
            )
            return
        rules = (job["spec"].get("podFailurePolicy") or {}).get("rules") or []
        reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        for index, rule in enumerate(rules):
            on = rule.get("onExitCodes") or {}
            values = on.get("values") or []
            matches = code in values if on.get("operator") == "In" else code not in values
            if on and matches and rule["action"] == "FailJob":
                container = pod.obj["spec"]["containers"][0]["name"]
                pod_ref = f"{ns}/{pod.obj['metadata']['name']}"
                reason = "PodFailurePolicy"
                message = (
                    f"Container {container} for pod {pod_ref} failed with exit code {code} "
                    f"matching FailJob rule at index {index}"
                )
                break
        job["status"].update(
            failed=1,
            conditions=[
                _condition("FailureTarget", reason, message),
                _condition("Failed", reason, message),
            ],
        )

    def _deadline_exceeded(self, ns: str, job_name: str, pod: _Pod) -> None:
        """The job controller fails the Job and deletes its active pods."""
        job = self.jobs[(ns, job_name)]
        message = "Job was active longer than specified deadline"
        job["status"].pop("active", None)
        job["status"].update(
            failed=1,
            conditions=[
                _condition("FailureTarget", "DeadlineExceeded", message),
                _condition("Failed", "DeadlineExceeded", message),
            ],
        )
        self.pods.pop((ns, pod.obj["metadata"]["name"]), None)
        self.changed.notify_all()

    def _kill(self, pod: _Pod, *, graceful: bool) -> None:
        if pod.process is not None and pod.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(pod.process.pid, signal.SIGTERM if graceful else signal.SIGKILL)


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKubernetes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        key = (self.command, parts.path.rsplit("/", 1)[-1])
        try:
            if self.kube.unavailable.get(key, 0) > 0:
                self.kube.unavailable[key] -= 1
                raise ApiError(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                )
            code, body = self.kube.handle(self.command, parts.path, parse_qs(parts.query), raw)
        except ApiError as exc:
            code, body = exc.code, exc.status()
        if (self.command, parts.path.rsplit("/", 1)[-1]) in self.kube.unanswered:
            # Done, but the answer is lost: the connection drops.
            self.kube.unanswered.discard((self.command, parts.path.rsplit("/", 1)[-1]))
            self.close_connection = True
            return
        if isinstance(body, bytes):
            data, content_type = body, "text/plain"
        else:
            data, content_type = json.dumps(body).encode(), "application/json"
        self.send_response(code, HTTPStatus(code).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve  # noqa: N815 - http.server's names


class _Response:
    def __init__(self, data: str) -> None:
        self.data = data


def _validate(body: Any, model: str) -> None:
    """The body must be the model, exactly: deserialize, serialize back, compare."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body must be a JSON object")
    api = client.ApiClient()
    try:
        obj = api.deserialize(_Response(json.dumps(body)), model)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "Invalid", f"{model}: {exc}") from None
    again = api.sanitize_for_serialization(obj)
    if again != body:
        raise ApiError(
            400,
            "BadRequest",
            f"strict decoding error: the body is not a valid {model} (unknown or misspelt field)",
        )
    if not (body.get("metadata") or {}).get("name"):
        raise ApiError(422, "Invalid", "metadata.name: Required value: name is required")


def _invalid(resource: str, name: str, path: str, wanted: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{resource} "{name}" is invalid: {path}: Invalid value: must be {wanted}',
        {"name": name, "kind": resource},
    )


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in obj.items() if not k.startswith("_")}))


def _condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    now = _now()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def _container_status(container: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": state,
    }


def _waiting_reason(pod: dict[str, Any]) -> str:
    state = pod["status"]["containerStatuses"][0]["state"]
    return str((state.get("waiting") or {}).get("reason", "PodInitializing"))


def _rewrite(value: str, mounts: dict[str, Path]) -> str:
    for mount_path, local in sorted(mounts.items(), key=lambda m: len(m[0]), reverse=True):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return str(local) + value[len(mount_path.rstrip("/")) :]
    return value
