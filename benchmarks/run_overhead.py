#!/usr/bin/env python3
"""What Terrapod adds to a remote plan and apply, against a real ``terrapod serve``.

Starts Terrapod with ``--dev-tls`` (SQLite in a scratch data dir; with ``--postgres`` also a
scratch PostgreSQL database) and measures, with the real Terraform CLI (the venv's
``terrapod-terraform``, Terraform 1.15.5) and the API:

  1. apply: ``terraform apply -auto-approve`` through a ``cloud {}`` block (a new workspace
     for every run, so each starts from an empty state) against the same configuration
     applied with the default local backend by the same binary; 1 and 50 ``terraform_data``
     resources; median of --runs, remote and local runs alternating;
  2. Terrapod's share: API-driven auto-apply runs (a new workspace each); from the run's
     ``created-at`` to the plan's ``finished-at``, minus the time the engine processes of that
     plan ran (traced in the server, see below); also minus a local replay of the runner's
     engine calls (init, plan -out, show -json || providers schema -json) for comparison;
  3. first log byte: from POST /runs to the first bytes readable at the plan's log-read-url;
  4. throughput: --throughput-runs auto-apply runs (1 resource) queued across
     --throughput-workspaces workspaces; runs completed per minute on the built-in agent at
     each --concurrency (TERRAPOD_RUNS__AGENT_CONCURRENCY);

and prints where the time of one remote apply goes (the CLI's requests, the run's
status-timestamps, the agent's jobs and the engine calls, on one timeline).

Engine calls are traced by configuring the server's engine for 1.15.5
(TERRAPOD_RUNS__ENGINES) as a small bash wrapper that runs the real binary and appends
``run id, start, end, exit code, arguments`` ($EPOCHREALTIME) to a file. The wrapper costs a
bash start (a few ms) per call; its start-up counts as Terrapod's time, not the engine's.
``--no-trace`` runs the real binary directly (no engine breakdown then).

Prints figures; asserts nothing. Takes about 1.5 minutes on SQLite with the defaults on an
idle machine; --postgres doubles that.

    .venv/bin/python benchmarks/run_overhead.py
    .venv/bin/python benchmarks/run_overhead.py --postgres
    .venv/bin/python benchmarks/run_overhead.py --runs 3 --concurrency 1,2,4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# benchmarks/ is sys.path[0] when this file is run as a script.
from _harness import (
    TERRAFORM_BIN,
    Server,
    TerraformCLI,
    children_cpu_seconds,
    cloud_block,
    config_tarball,
    covered_seconds,
    cpu_seconds,
    epoch,
    loadavg,
    table,
    terrapod_server,
)

ORG = "default"
JSONAPI = "application/vnd.api+json"
FINAL = frozenset(
    {"applied", "planned_and_finished", "discarded", "errored", "canceled", "force_canceled"}
)
# What the runner adds in front of the engine's output in every phase log (execute._header).
LOG_HEADER_END = b"Initializing plugins and modules...\n"
RUN_DEADLINE_SECONDS = 300.0

# --------------------------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------------------------


def resources(count: int, value: str = "value") -> str:
    """``count`` terraform_data resources (built into Terraform: nothing to download) whose
    input is ``value`` (another value on the next run in a workspace: something to apply)."""
    if count == 1:
        return f'resource "terraform_data" "r" {{\n  input = "{value}"\n}}\n'
    return (
        'resource "terraform_data" "r" {\n'
        f"  count = {count}\n"
        f'  input = "{value}-${{count.index}}"\n'
        "}\n"
    )


# --------------------------------------------------------------------------------------------
# engine tracing
# --------------------------------------------------------------------------------------------

_TRACER = """#!/bin/bash
# Written by benchmarks/run_overhead.py: runs the real engine, then records when it ran.
started=$EPOCHREALTIME
{real} "$@"
code=$?
ended=$EPOCHREALTIME
printf '%s\\t%s\\t%s\\t%s\\t%s\\n' "${{TFC_RUN_ID:-}}" "$started" "$ended" "$code" "$*" >> {trace}
exit $code
"""


@dataclass(frozen=True)
class EngineCall:
    run_id: str
    start: float
    end: float
    code: int
    args: str

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def command(self) -> str:
        words = self.args.split()
        if words[:2] == ["providers", "schema"]:
            return "providers schema"
        return words[0] if words else "?"


class EngineTrace:
    """The wrapper script and the file it appends to."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "engine-trace.tsv"
        self.wrapper = directory / "terraform-traced"
        self.path.touch()
        self.wrapper.write_text(
            _TRACER.format(real=_sh_quote(str(TERRAFORM_BIN)), trace=_sh_quote(str(self.path)))
        )
        self.wrapper.chmod(0o755)

    def calls(self, run_id: str | None = None) -> list[EngineCall]:
        out = []
        for line in self.path.read_text().splitlines():
            parts = line.split("\t", 4)
            if len(parts) != 5:
                continue
            call = EngineCall(parts[0], float(parts[1]), float(parts[2]), int(parts[3]), parts[4])
            if run_id is None or call.run_id == run_id:
                out.append(call)
        return sorted(out, key=lambda c: c.start)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------------------------
# the API
# --------------------------------------------------------------------------------------------


class ApiError(RuntimeError):
    pass


def _check(resp: httpx.Response, *ok: int) -> httpx.Response:
    if resp.status_code not in ok:
        raise ApiError(
            f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text[:500]}"
        )
    return resp


@dataclass
class RunInfo:
    """A run with its plan and apply, as ``GET /runs/:id?include=plan,apply`` shows them."""

    id: str
    status: str
    created: float
    stamps: dict[str, float]  # the run's status-timestamps
    plan: dict[str, float]  # the plan's status-timestamps (queued-at, started-at, …)
    apply: dict[str, float]
    plan_id: str
    apply_id: str

    def plan_finished(self) -> float | None:
        return self.plan.get("finished-at")

    def end(self) -> float | None:
        """When the run reached its final status."""
        key = self.status.replace("_", "-") + "-at"
        return self.stamps.get(key)


class Api:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=server.base,
            verify=server.ssl_ctx if server.ssl_ctx is not None else True,
            headers={"Authorization": f"Bearer {server.token}", "Content-Type": JSONAPI},
            timeout=httpx.Timeout(60, connect=10),
            trust_env=False,
        )
        # go-tfe reads logs without Authorization: the signed URL is the credential.
        self.anonymous = httpx.Client(
            verify=server.ssl_ctx if server.ssl_ctx is not None else True,
            timeout=httpx.Timeout(60, connect=10),
            trust_env=False,
        )

    def close(self) -> None:
        self.http.close()
        self.anonymous.close()

    def create_workspace(self, name: str) -> str:
        body = {"data": {"type": "workspaces", "attributes": {"name": name}}}
        resp = _check(self.http.post(f"/api/v2/organizations/{ORG}/workspaces", json=body), 201)
        return str(resp.json()["data"]["id"])

    def upload_configuration(self, workspace_id: str, files: dict[str, str]) -> str:
        body = {
            "data": {
                "type": "configuration-versions",
                "attributes": {"auto-queue-runs": False, "speculative": False},
            }
        }
        cv = _check(
            self.http.post(f"/api/v2/workspaces/{workspace_id}/configuration-versions", json=body),
            201,
        ).json()["data"]
        _check(
            self.anonymous.put(
                cv["attributes"]["upload-url"],
                content=config_tarball(files),
                headers={"Content-Type": "application/octet-stream"},
            ),
            200,
        )
        deadline = time.monotonic() + 60
        while True:
            got = _check(self.http.get(f"/api/v2/configuration-versions/{cv['id']}"), 200)
            status = got.json()["data"]["attributes"]["status"]
            if status == "uploaded":
                return str(cv["id"])
            if status == "errored" or time.monotonic() > deadline:
                raise ApiError(f"configuration version {cv['id']} is {status}")
            time.sleep(0.05)

    def create_run(
        self, workspace_id: str, cv_id: str, *, auto_apply: bool = True
    ) -> dict[str, Any]:
        body = {
            "data": {
                "type": "runs",
                "attributes": {"auto-apply": auto_apply},
                "relationships": {
                    "workspace": {"data": {"type": "workspaces", "id": workspace_id}},
                    "configuration-version": {
                        "data": {"type": "configuration-versions", "id": cv_id}
                    },
                },
            }
        }
        return dict(_check(self.http.post("/api/v2/runs", json=body), 201).json()["data"])

    def status(self, run_id: str) -> str:
        got = _check(self.http.get(f"/api/v2/runs/{run_id}"), 200)
        return str(got.json()["data"]["attributes"]["status"])

    def run(self, run_id: str) -> RunInfo:
        doc = _check(self.http.get(f"/api/v2/runs/{run_id}", params={"include": "plan,apply"}), 200)
        data = doc.json()
        attrs = data["data"]["attributes"]
        included = {item["type"]: item for item in data.get("included", [])}

        def stamps(raw: dict[str, str] | None) -> dict[str, float]:
            return {k: epoch(v) for k, v in (raw or {}).items() if v}

        rel = data["data"]["relationships"]
        return RunInfo(
            id=run_id,
            status=attrs["status"],
            created=epoch(attrs["created-at"]),
            stamps=stamps(attrs.get("status-timestamps")),
            plan=stamps(included.get("plans", {}).get("attributes", {}).get("status-timestamps")),
            apply=stamps(
                included.get("applies", {}).get("attributes", {}).get("status-timestamps")
            ),
            plan_id=rel["plan"]["data"]["id"],
            apply_id=rel["apply"]["data"]["id"],
        )

    def log_url(self, plan_id: str) -> str:
        got = _check(self.http.get(f"/api/v2/plans/{plan_id}"), 200)
        return str(got.json()["data"]["attributes"]["log-read-url"])

    def read_log(self, url: str, offset: int = 0, limit: int = 65536) -> bytes:
        resp = _check(self.anonymous.get(url, params={"offset": offset, "limit": limit}), 200)
        return resp.content

    def wait_final(self, run_id: str, poll: float = 0.2) -> str:
        deadline = time.monotonic() + RUN_DEADLINE_SECONDS
        while True:
            status = self.status(run_id)
            if status in FINAL:
                return status
            if time.monotonic() > deadline:
                raise ApiError(f"run {run_id} still {status} after {RUN_DEADLINE_SECONDS:.0f} s")
            time.sleep(poll)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------------------------
# the server's log (JSON lines at TERRAPOD_LOG_LEVEL=info)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEvent:
    at: float  # when it was logged (a request: when it ended)
    event: str
    fields: dict[str, Any]


def server_events(server: Server, since: float, until: float) -> list[LogEvent]:
    out = []
    try:
        lines = server.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
            at = epoch(doc["timestamp"])
        except (ValueError, KeyError):
            continue
        if since <= at <= until:
            out.append(LogEvent(at, str(doc.get("event", "")), doc))
    return out


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    got = list(values)
    return statistics.median(got) if got else float("nan")


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.0f}"  # noqa: PLR0124 - NaN test


def secs(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds:.2f}"  # noqa: PLR0124 - NaN test


def load_line() -> str:
    return f"load average {loadavg()} ({os.cpu_count()} cores)"


_RUN_URL = re.compile(r"/runs/(run-[A-Za-z0-9]+)")


@dataclass
class PlanSplit:
    """One run's time from creation to applied, cut at the engine calls."""

    run: RunInfo
    calls: list[EngineCall]

    @property
    def plan_calls(self) -> list[EngineCall]:
        finished = self.run.plan_finished() or float("inf")
        return [c for c in self.calls if c.start < finished]

    @property
    def apply_calls(self) -> list[EngineCall]:
        finished = self.run.plan_finished() or float("inf")
        return [c for c in self.calls if c.start >= finished]

    def to_plan_finished(self) -> float:
        finished = self.run.plan_finished()
        return finished - self.run.created if finished else float("nan")

    def plan_engine(self) -> float:
        """Engine time in the plan; NaN without a trace."""
        if not self.calls:
            return float("nan")
        return covered_seconds([(c.start, c.end) for c in self.plan_calls])

    def apply_window(self) -> float:
        finished, applied = self.run.plan_finished(), self.run.stamps.get("applied-at")
        return applied - finished if finished and applied else float("nan")

    def apply_engine(self) -> float:
        if not self.calls:
            return float("nan")
        return covered_seconds([(c.start, c.end) for c in self.apply_calls])

    def segments(self) -> list[tuple[str, float]]:
        """(label, seconds) from run creation to applied, in order; engine segments are
        marked with ``engine:``. Needs the engine trace."""
        r = self.run
        created = r.created
        p_start, p_end = r.plan.get("started-at"), r.plan.get("finished-at")
        a_start, a_end = r.apply.get("started-at"), r.stamps.get("applied-at")
        plan_calls, apply_calls = self.plan_calls, self.apply_calls
        if not (p_start and p_end and a_start and a_end and plan_calls and apply_calls):
            return []
        out: list[tuple[str, float]] = [("created -> plan job claimed", p_start - created)]
        cursor, label = p_start, "plan job: fetch state + config, unpack, write files"
        groups = _overlapping(plan_calls)
        for group in groups:
            begin, end = group[0].start, max(c.end for c in group)
            out.append((label, begin - cursor))
            names = " || ".join(c.command for c in group)
            out.append((f"engine: {names}", end - begin))
            cursor = end
            label = {
                "init": "plan job: variable files, start the plan",
                "plan": "plan job: between plan and show/schema",
            }.get(group[-1].command, "plan job: between engine calls")
        out.append(("plan job: JSON plan + redaction, store plan, finish job", p_end - cursor))
        out.append(("plan finished -> apply job claimed", a_start - p_end))
        cursor, label = a_start, "apply job: fetch state + plan file"
        for group in _overlapping(apply_calls):
            begin, end = group[0].start, max(c.end for c in group)
            out.append((label, begin - cursor))
            out.append((f"engine: {' || '.join(c.command for c in group)}", end - begin))
            cursor, label = end, "apply job: between engine calls"
        out.append(("apply job: persist state, finish job", a_end - cursor))
        return out


def _overlapping(calls: Sequence[EngineCall]) -> list[list[EngineCall]]:
    """Calls grouped where they run side by side (show -json || providers schema -json)."""
    groups: list[list[EngineCall]] = []
    for call in sorted(calls, key=lambda c: c.start):
        if groups and call.start < max(c.end for c in groups[-1]):
            groups[-1].append(call)
        else:
            groups.append([call])
    return groups


def merge_segments(splits: Sequence[PlanSplit]) -> list[list[str]]:
    """Median per segment over runs whose segments line up (same labels)."""
    all_segments = [s.segments() for s in splits]
    all_segments = [s for s in all_segments if s]
    if not all_segments:
        return []
    labels = [label for label, _ in all_segments[0]]
    same = [s for s in all_segments if [label for label, _ in s] == labels]
    rows = []
    for i, label in enumerate(labels):
        values = [s[i][1] for s in same]
        kind = "engine" if label.startswith("engine:") else "terrapod"
        rows.append(
            [
                label.removeprefix("engine: "),
                kind,
                ms(median(values)),
                ms(min(values)),
                ms(max(values)),
            ]
        )
    return rows


# --------------------------------------------------------------------------------------------
# 1. remote vs local apply with the CLI
# --------------------------------------------------------------------------------------------


@dataclass
class CliApply:
    result_seconds: float
    started: float
    ended: float
    run_id: str
    upload_wait: float = float("nan")  # the upload's PUT answered -> the CLI's first CV poll
    idle: float = float("nan")  # the CLI's pauses of >= IDLE_GAP between two requests


# Terraform 1.15's cloud backend: 500 ms before it first reads the uploaded configuration
# version, and waitForRun's first backoff (1 s) before it first reads the run, once after
# POST /runs and once before the apply (internal/cloud/backend_plan.go, backend_common.go).
CLI_FIXED_SLEEPS = 0.5 + 1.0 + 1.0
IDLE_GAP = 0.4


def idle_gaps(events: Sequence[LogEvent]) -> float:
    """The sum of the pauses of at least IDLE_GAP between one request's end and the next
    one's start: the client sleeping between polls."""
    spans = sorted(
        (ev.at - float(ev.fields.get("duration_ms", 0)) / 1000, ev.at)
        for ev in events
        if ev.event == "request"
    )
    total, last_end = 0.0, None
    for start, end in spans:
        if last_end is not None and start - last_end >= IDLE_GAP:
            total += start - last_end
        last_end = end if last_end is None else max(last_end, end)
    return total


def upload_wait(events: Sequence[LogEvent]) -> float:
    """From the end of the configuration upload (PUT /objects/…) to the start of the CLI's
    first GET /configuration-versions/:id (the CLI sleeps before it polls)."""
    put_end = None
    for ev in events:
        if ev.event != "request":
            continue
        route, method = ev.fields.get("route"), ev.fields.get("method")
        if method == "PUT" and route == "/objects/{token}":
            put_end = ev.at
        elif (
            put_end is not None
            and method == "GET"
            and route == "/api/v2/configuration-versions/{cv_id}"
        ):
            return ev.at - float(ev.fields.get("duration_ms", 0)) / 1000 - put_end
    return float("nan")


@dataclass
class ApplyResults:
    count: int
    remote: list[CliApply] = field(default_factory=list)
    local: list[float] = field(default_factory=list)
    splits: list[PlanSplit] = field(default_factory=list)


def remote_apply(server: Server, tf: TerraformCLI, work: Path, count: int, tag: str) -> CliApply:
    name = unique(f"apply{count}-{tag}")
    cwd = work / name
    cwd.mkdir(parents=True)
    (cwd / "main.tf").write_text(cloud_block(server.tf_hostname, ORG, name) + resources(count))
    init = tf.run(["init", "-input=false", "-no-color"], cwd)
    if init.returncode:
        raise RuntimeError(init.describe())
    result = tf.run(["apply", "-auto-approve", "-input=false", "-no-color"], cwd)
    if result.returncode:
        raise RuntimeError(result.describe())
    found = _RUN_URL.findall(result.stdout)
    if not found:
        raise RuntimeError("no run URL in the CLI's output:\n" + result.describe())
    return CliApply(result.seconds, result.started, result.started + result.seconds, found[-1])


def local_apply(tf: TerraformCLI, cwd: Path) -> float:
    for leftover in ("terraform.tfstate", "terraform.tfstate.backup"):
        (cwd / leftover).unlink(missing_ok=True)
    result = tf.run(["apply", "-auto-approve", "-input=false", "-no-color"], cwd)
    if result.returncode:
        raise RuntimeError(result.describe())
    return result.seconds


def prepare_local(tf: TerraformCLI, work: Path, count: int) -> Path:
    cwd = work / f"local-{count}"
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "main.tf").write_text(resources(count))
    init = tf.run(["init", "-input=false", "-no-color"], cwd)
    if init.returncode:
        raise RuntimeError(init.describe())
    return cwd


def measure_applies(
    server: Server,
    api: Api,
    remote_tf: TerraformCLI,
    local_tf: TerraformCLI,
    trace: EngineTrace | None,
    work: Path,
    counts: Sequence[int],
    runs: int,
) -> list[ApplyResults]:
    out = []
    for count in counts:
        local_dir = prepare_local(local_tf, work, count)
        res = ApplyResults(count)
        for i in range(runs):
            # Alternating, so a change in the machine's load hits both sides alike.
            applied = remote_apply(server, remote_tf, work, count, str(i))
            events = server_events(server, applied.started, applied.ended)
            applied.upload_wait = upload_wait(events)
            applied.idle = idle_gaps(events)
            res.remote.append(applied)
            res.local.append(local_apply(local_tf, local_dir))
            info = api.run(applied.run_id)
            res.splits.append(PlanSplit(info, trace.calls(info.id) if trace else []))
            print(
                f"  {count} resource(s), run {i + 1}/{runs}: remote {applied.result_seconds:.2f} s,"
                f" local {res.local[-1]:.2f} s ({info.status})",
                flush=True,
            )
        out.append(res)
    return out


def cli_phases(applied: CliApply, info: RunInfo) -> tuple[float, float, float]:
    """(CLI start -> run created, run created -> applied, applied -> CLI exit) in seconds."""
    applied_at = info.stamps.get("applied-at", float("nan"))
    return (
        info.created - applied.started,
        applied_at - info.created,
        applied.ended - applied_at,
    )


def print_applies(results: Sequence[ApplyResults], runs: int) -> None:
    print(
        f"\n== 1. terraform apply -auto-approve: remote (Terrapod) vs local backend "
        f"(median of {runs}; seconds) =="
    )
    rows = []
    for res in results:
        remote = median(a.result_seconds for a in res.remote)
        local = median(res.local)
        rows.append(
            [
                str(res.count),
                secs(remote),
                secs(local),
                secs(remote - local),
                secs(remote - local - CLI_FIXED_SLEEPS),
                f"{min(a.result_seconds for a in res.remote):.2f}-"
                f"{max(a.result_seconds for a in res.remote):.2f}",
                f"{min(res.local):.2f}-{max(res.local):.2f}",
            ]
        )
    print(
        table(
            [
                "resources",
                "remote",
                "local",
                "added by Terrapod",
                "beyond the CLI's fixed sleeps",
                "remote min-max",
                "local min-max",
            ],
            rows,
        )
    )
    print(
        f"target: added by Terrapod <= 2 s. The CLI itself sleeps {CLI_FIXED_SLEEPS:.1f} s in "
        "every remote auto-approved apply however fast the server is: 0.5 s before it reads "
        "the uploaded configuration, 1 s before its first read of the run, 1 s before it "
        "looks at the apply\n"
    )
    print("the remote apply's wall time, cut at the run's created-at and applied-at (median, s):")
    rows = []
    for res in results:
        cut = [cli_phases(a, s.run) for a, s in zip(res.remote, res.splits, strict=True)]
        engine = [s.plan_engine() + s.apply_engine() for s in res.splits]
        rows.append(
            [
                str(res.count),
                secs(median(c[0] for c in cut)),
                secs(median(a.upload_wait for a in res.remote)),
                secs(median(c[1] for c in cut)),
                secs(median(engine)),
                secs(median(c[1] - e for c, e in zip(cut, engine, strict=True))),
                secs(median(c[2] for c in cut)),
                secs(median(a.idle for a in res.remote)),
            ]
        )
    print(
        table(
            [
                "resources",
                "CLI start -> run created",
                "upload poll wait",
                "created -> applied",
                "engine",
                "Terrapod",
                "applied -> CLI exit",
                "CLI idle",
            ],
            rows,
        )
    )
    print(
        "upload poll wait: the configuration's PUT answered -> the CLI's first GET of it; "
        "engine: the traced engine processes of the run (overlaps once); Terrapod: the rest "
        "of created -> applied; CLI idle: the CLI's pauses of >= 0.4 s between two requests"
    )


# --------------------------------------------------------------------------------------------
# 2. Terrapod's share of run creation -> plan finished
# --------------------------------------------------------------------------------------------


@dataclass
class Replay:
    init: float
    plan: float
    show_and_schema: float
    show: float
    schema: float
    apply: float

    @property
    def plan_phase(self) -> float:
        return self.init + self.plan + self.show_and_schema


def replay_engine(tf: TerraformCLI, work: Path, count: int) -> Replay:
    """The runner's engine calls for one plan and its apply, run here on the same
    configuration, each timed (execute._Job.plan / apply)."""
    from terrapod.runner.workdir import write_backend_override

    root = Path(tempfile.mkdtemp(prefix=f"replay{count}-", dir=work))
    module = root / "config"
    module.mkdir()
    (module / "main.tf").write_text(resources(count))
    write_backend_override(module, root / "terraform.tfstate")
    plan_file = root / "plan.tfplan"

    def timed(args: list[str]) -> float:
        result = tf.run(args, module)
        if result.returncode:
            raise RuntimeError(result.describe())
        return result.seconds

    init = timed(["init", "-input=false"])
    plan = timed(["plan", "-input=false", f"-out={plan_file}", "-json"])
    env = tf.env()
    t0 = time.perf_counter()
    with open(root / "show.out", "wb") as show_out, open(root / "schema.out", "wb") as schema_out:
        procs = [
            (
                subprocess.Popen(
                    [str(tf.binary), *args],
                    cwd=module,
                    env=env,
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL,
                ),
                args[0],
            )
            for args, out in (
                (["show", "-json", str(plan_file)], show_out),
                (["providers", "schema", "-json"], schema_out),
            )
        ]
        ended: dict[str, float] = {}
        while len(ended) < len(procs):
            for proc, name in procs:
                if name not in ended and proc.poll() is not None:
                    ended[name] = time.perf_counter() - t0
            time.sleep(0.002)
    both = time.perf_counter() - t0
    apply = timed(["apply", "-input=false", "-json", str(plan_file)])
    shutil.rmtree(root, ignore_errors=True)
    return Replay(init, plan, both, ended["show"], ended["providers"], apply)


def engine_startup(tf: TerraformCLI, cwd: Path, times: int) -> float:
    """Median wall time of ``terraform version``: starting an engine process at all."""
    seconds = []
    for _ in range(times):
        result = tf.run(["version"], cwd)
        if result.returncode:
            raise RuntimeError(result.describe())
        seconds.append(result.seconds)
    return median(seconds)


def api_run(api: Api, count: int, poll: float = 0.2) -> RunInfo:
    ws = api.create_workspace(unique(f"share{count}"))
    cv = api.upload_configuration(ws, {"main.tf": resources(count)})
    run = api.create_run(ws, cv, auto_apply=True)
    api.wait_final(run["id"], poll)
    return api.run(run["id"])


def measure_share(
    api: Api,
    local_tf: TerraformCLI,
    trace: EngineTrace | None,
    work: Path,
    counts: Sequence[int],
    runs: int,
) -> list[tuple[int, list[PlanSplit], list[Replay]]]:
    out = []
    for count in counts:
        splits, replays = [], []
        for i in range(runs):
            info = api_run(api, count)
            splits.append(PlanSplit(info, trace.calls(info.id) if trace else []))
            replays.append(replay_engine(local_tf, work, count))
            print(
                f"  {count} resource(s), run {i + 1}/{runs}: created -> plan finished "
                f"{splits[-1].to_plan_finished() * 1000:.0f} ms ({info.status})",
                flush=True,
            )
        out.append((count, splits, replays))
    return out


def print_share(
    results: Sequence[tuple[int, list[PlanSplit], list[Replay]]], traced: bool, startup: float
) -> None:
    print(
        "\n== 2. Terrapod's share: run created -> plan finished, minus the engine "
        "(API-driven auto-apply runs; median; ms) =="
    )
    rows = []
    for count, splits, replays in results:
        total = median(s.to_plan_finished() for s in splits)
        engine = median(s.plan_engine() for s in splits) if traced else float("nan")
        share = median(s.to_plan_finished() - s.plan_engine() for s in splits)
        replay = median(r.plan_phase for r in replays)
        share_replay = median(s.to_plan_finished() for s in splits) - replay
        a_window = median(s.apply_window() for s in splits)
        a_engine = median(s.apply_engine() for s in splits) if traced else float("nan")
        a_share = median(s.apply_window() - s.apply_engine() for s in splits)
        rows.append(
            [
                str(count),
                ms(total),
                ms(engine),
                ms(share) if traced else "n/a",
                ms(replay),
                ms(share_replay),
                ms(a_window),
                ms(a_engine),
                ms(a_share) if traced else "n/a",
            ]
        )
    print(
        table(
            [
                "resources",
                "created->plan finished",
                "engine (traced)",
                "Terrapod share",
                "engine (local replay)",
                "share vs replay",
                "plan fin.->applied",
                "apply engine",
                "apply share",
            ],
            rows,
        )
    )
    print("target: Terrapod share <= 300 ms (created -> plan finished)")
    print(
        f"starting an engine process (`terrapod-terraform version`, median): {ms(startup)} ms; "
        "a remote run starts 5 (init, plan, show, providers schema, apply), a local apply 1"
    )
    for count, _, rp in results:

        def med(pick: Callable[[Replay], float], rp: list[Replay] = rp) -> str:
            return ms(median(pick(r) for r in rp))

        print(
            f"local replay, {count} resource(s), median ms: init {med(lambda r: r.init)}, "
            f"plan {med(lambda r: r.plan)}, show || schema {med(lambda r: r.show_and_schema)} "
            f"(show {med(lambda r: r.show)}, schema {med(lambda r: r.schema)}), "
            f"apply {med(lambda r: r.apply)}"
        )
    if traced:
        for count, splits, _ in results:
            rows = merge_segments(splits)
            if rows:
                print(f"\nwhere a run's time goes, {count} resource(s) (API-driven; ms over runs):")
                print(table(["segment", "whose", "median", "min", "max"], rows, left={0, 1}))
                calls: dict[str, list[float]] = {}
                for s in splits:
                    for c in s.calls:
                        calls.setdefault(c.command, []).append(c.seconds)
                print(
                    "engine calls (traced, median ms): "
                    + ", ".join(f"{k} {ms(median(v))}" for k, v in calls.items())
                )


# --------------------------------------------------------------------------------------------
# 3. first log byte
# --------------------------------------------------------------------------------------------


@dataclass
class FirstBytes:
    stx: float  # the log's first byte (STX, written when the job is claimed)
    header: float  # the runner's three header lines
    engine: float  # the first byte of the engine's own output
    claimed: float  # plan started-at - POST sent (server's clock)
    polls: int


def first_log_bytes(api: Api, count: int, poll: float) -> FirstBytes:
    ws = api.create_workspace(unique(f"log{count}"))
    cv = api.upload_configuration(ws, {"main.tf": resources(count)})
    sent_wall = time.time()
    t0 = time.perf_counter()
    run = api.create_run(ws, cv, auto_apply=True)
    url = api.log_url(run["relationships"]["plan"]["data"]["id"])
    marks: dict[str, float] = {}
    polls = 0
    deadline = t0 + RUN_DEADLINE_SECONDS
    while len(marks) < 3:
        data = api.read_log(url)
        polls += 1
        now = time.perf_counter() - t0
        if data:
            marks.setdefault("stx", now)
        end = data.find(LOG_HEADER_END)
        if end >= 0:
            marks.setdefault("header", now)
            if len(data) > end + len(LOG_HEADER_END):
                marks.setdefault("engine", now)
        if b"\x03" in data:  # the phase ended before we saw more
            for key in ("stx", "header", "engine"):
                marks.setdefault(key, now)
        if time.perf_counter() > deadline:
            raise ApiError(f"no plan log for run {run['id']}")
        if len(marks) < 3:
            time.sleep(poll)
    api.wait_final(run["id"])
    info = api.run(run["id"])
    return FirstBytes(
        marks["stx"],
        marks["header"],
        marks["engine"],
        info.plan.get("started-at", float("nan")) - sent_wall,
        polls,
    )


def print_first_bytes(found: Sequence[FirstBytes], poll: float) -> None:
    print(
        f"\n== 3. POST /runs -> first bytes at the plan's log-read-url (median of {len(found)}; "
        f"ms; polled every {poll * 1000:.0f} ms) =="
    )
    print(
        table(
            [
                "first byte (STX)",
                "runner header",
                "first engine output",
                "plan started-at",
                "polls",
            ],
            [
                [
                    ms(median(f.stx for f in found)),
                    ms(median(f.header for f in found)),
                    ms(median(f.engine for f in found)),
                    ms(median(f.claimed for f in found)),
                    str(round(median(f.polls for f in found))),
                ]
            ],
        )
    )
    print(
        "first byte and header include POST /runs, GET /plans/:id (for the URL) and up to one "
        "poll interval; the first engine output comes after `terraform init` and the plan's start"
    )


# --------------------------------------------------------------------------------------------
# 4. throughput
# --------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    concurrency: int
    runs: int
    workspaces: int
    seconds: float
    statuses: dict[str, int]
    waits: list[float]  # created -> plan started
    plan_jobs: list[float]
    apply_jobs: list[float]
    server_cpu: float
    engine_cpu: float
    load: str

    @property
    def per_minute(self) -> float:
        return self.runs * 60 / self.seconds


def measure_throughput(
    api: Api, server: Server, concurrency: int, runs: int, workspaces: int
) -> Throughput:
    names = [api.create_workspace(unique(f"tput{concurrency}")) for _ in range(workspaces)]
    targets = [names[i % workspaces] for i in range(runs)]
    cvs = [
        api.upload_configuration(ws, {"main.tf": resources(1, f"value-{i}")})
        for i, ws in enumerate(targets)
    ]
    cpu0, child0 = cpu_seconds(server.pid), children_cpu_seconds(server.pid)
    start = time.time()
    queued: list[tuple[str, str]] = []  # (workspace, run)
    for ws, cv in zip(targets, cvs, strict=True):
        queued.append((ws, api.create_run(ws, cv, auto_apply=True)["id"]))
    # Runs in one workspace end in order: watch only the oldest unfinished one of each.
    waiting = {ws: [r for w, r in queued if w == ws] for ws in names}
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while any(waiting.values()):
        for ws_runs in waiting.values():
            while ws_runs and api.status(ws_runs[0]) in FINAL:
                ws_runs.pop(0)
        if time.monotonic() > deadline:
            raise ApiError(f"runs still unfinished after {RUN_DEADLINE_SECONDS:.0f} s")
        time.sleep(0.5)
    server_cpu = cpu_seconds(server.pid) - cpu0
    engine_cpu = children_cpu_seconds(server.pid) - child0
    infos = [api.run(r) for _, r in queued]
    statuses: dict[str, int] = {}
    for info in infos:
        statuses[info.status] = statuses.get(info.status, 0) + 1
    end = max(info.end() or info.created for info in infos)
    return Throughput(
        concurrency=concurrency,
        runs=runs,
        workspaces=workspaces,
        seconds=end - start,
        statuses=statuses,
        waits=[i.plan["started-at"] - i.created for i in infos if "started-at" in i.plan],
        plan_jobs=[
            i.plan["finished-at"] - i.plan["started-at"]
            for i in infos
            if "finished-at" in i.plan and "started-at" in i.plan
        ],
        apply_jobs=[
            i.apply["finished-at"] - i.apply["started-at"]
            for i in infos
            if "finished-at" in i.apply and "started-at" in i.apply
        ],
        server_cpu=server_cpu,
        engine_cpu=engine_cpu,
        load=loadavg(),
    )


def print_throughput(results: Sequence[Throughput]) -> None:
    print("\n== 4. runs completed per minute on the built-in agent (auto-apply, 1 resource) ==")
    rows = [
        [
            str(t.concurrency),
            f"{t.runs} / {t.workspaces}",
            f"{t.seconds:.1f}",
            f"{t.per_minute:.1f}",
            " ".join(f"{k}:{v}" for k, v in sorted(t.statuses.items())),
            ms(median(t.waits)),
            ms(max(t.waits) if t.waits else float("nan")),
            ms(median(t.plan_jobs)),
            ms(median(t.apply_jobs)),
            ms(t.server_cpu / t.runs),
            ms(t.engine_cpu / t.runs),
            f"{(os.cpu_count() or 1) * 60 * t.runs / (t.server_cpu + t.engine_cpu):.0f}",
            t.load,
        ]
        for t in results
    ]
    print(
        table(
            [
                "AGENT_CONCURRENCY",
                "runs / workspaces",
                "seconds",
                "runs/min",
                "statuses",
                "queue wait p50 ms",
                "queue wait max ms",
                "plan job ms",
                "apply job ms",
                "server CPU ms/run",
                "engine CPU ms/run",
                "CPU-bound runs/min",
                "load at end",
            ],
            rows,
        )
    )
    print(
        "seconds: first POST /runs -> last run final (its status timestamp); queue wait: "
        "created -> plan started-at; CPU: the server process and its engine children; "
        "CPU-bound runs/min: what all cores could complete at that CPU per run"
    )


# --------------------------------------------------------------------------------------------
# the timeline of one remote apply
# --------------------------------------------------------------------------------------------


def print_timeline(events: Sequence[LogEvent], applied: CliApply, split: PlanSplit) -> None:
    info = split.run
    t0 = applied.started
    rows: list[tuple[float, str, str, str]] = [(t0, "cli", "terraform apply starts", "")]
    for ev in events:
        f = ev.fields
        if ev.event == "request":
            dur = float(f.get("duration_ms", 0)) / 1000
            route = str(f.get("route", "?"))
            rows.append(
                (ev.at - dur, "http", f"{f.get('method')} {route} -> {f.get('status')}", ms(dur))
            )
        elif ev.event in ("job started", "job ended") and f.get("run") == info.id:
            what = f.get("phase") or f.get("outcome")
            rows.append((ev.at, "agent", f"{ev.event} ({what})", ""))
    for key, at in info.stamps.items():
        rows.append((at, "run", f"status {key}", ""))
    rows.append((info.created, "run", "created-at", ""))
    for phase, stamps in (("plan", info.plan), ("apply", info.apply)):
        for key, at in stamps.items():
            rows.append((at, phase, key, ""))
    rows.extend(
        (c.start, "engine", f"terraform {c.command} (exit {c.code})", ms(c.seconds))
        for c in split.calls
    )
    rows.append((applied.ended, "cli", "terraform apply exits", ""))
    rows.sort(key=lambda r: r[0])
    # Collapse runs of identical polls so the table stays readable.
    shown: list[list[str]] = []
    previous = ""
    repeat = 0
    for at, source, what, dur in rows:
        key = f"{source}|{what}"
        if key == previous and source == "http":
            repeat += 1
            shown[-1][3] = f"{dur} (x{repeat + 1})"
            continue
        previous, repeat = key, 0
        shown.append([f"{(at - t0) * 1000:.0f}", source, what, dur])
    print(
        f"\n== where the time goes: one remote apply, 1 resource ({info.id}, "
        f"{applied.result_seconds:.2f} s) =="
    )
    print("ms since the CLI started; http rows start at the request's arrival; dur in ms")
    print(table(["+ms", "source", "event", "dur"], shown, left={1, 2}))
    segments = split.segments()
    if segments:
        print("\nthe same run, created -> applied, cut at the engine calls (ms):")
        print(
            table(
                ["segment", "whose", "ms"],
                [
                    [
                        label.removeprefix("engine: "),
                        "engine" if label.startswith("engine:") else "terrapod",
                        ms(sec),
                    ]
                    for label, sec in segments
                ],
                left={0, 1},
            )
        )


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def bench_database(args: argparse.Namespace, database_url: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="terrapod-runbench-"))
    trace = None if args.no_trace else EngineTrace(work / "trace")
    concurrencies = _ints(args.concurrency)
    extra = {
        "TERRAPOD_RUNS__AGENT_CONCURRENCY": str(concurrencies[0]),
        "TERRAPOD_LOG_FORMAT": "json",
    }
    if trace is not None:
        extra["TERRAPOD_RUNS__ENGINES"] = json.dumps({"1.15.5": str(trace.wrapper)})
    try:
        with terrapod_server(
            database_url, keep=args.keep, extra_env=extra, tls=True, log_level="info"
        ) as server:
            print(f"\n######## {server.label} ########")
            print(f"server: {server.base} pid {server.pid}, data {server.data_dir}")
            print(
                f"TERRAPOD_RUNS__AGENT_CONCURRENCY={concurrencies[0]}; engine: Terraform 1.15.5 "
                f"({'traced wrapper' if trace else 'the embedded binary'}); {load_line()}"
            )
            api = Api(server)
            remote_tf = TerraformCLI(work / "home-remote", server, server.token)
            local_tf = TerraformCLI(work / "home-local")
            try:
                print("warm-up (one remote and one local apply, not counted) ...", flush=True)
                remote_apply(server, remote_tf, work, 1, "warmup")
                local_apply(local_tf, prepare_local(local_tf, work, 1))
                timed = _run_all(args, server, api, remote_tf, local_tf, trace, work)
                throughput = []
                if args.throughput_runs:
                    print("throughput ...", flush=True)
                    throughput.append(
                        measure_throughput(
                            api,
                            server,
                            concurrencies[0],
                            args.throughput_runs,
                            args.throughput_workspaces,
                        )
                    )
            finally:
                api.close()
            load_after = load_line()
            cpu = cpu_seconds(server.pid)
        for concurrency in concurrencies[1:] if args.throughput_runs else []:
            env = {**extra, "TERRAPOD_RUNS__AGENT_CONCURRENCY": str(concurrency)}
            env.pop("TERRAPOD_RUNS__ENGINES", None)
            with terrapod_server(database_url, extra_env=env, tls=True) as other:
                print(f"throughput at concurrency {concurrency} (a fresh server) ...", flush=True)
                other_api = Api(other)
                try:
                    throughput.append(
                        measure_throughput(
                            other_api,
                            other,
                            concurrency,
                            args.throughput_runs,
                            args.throughput_workspaces,
                        )
                    )
                finally:
                    other_api.close()
        print(f"\n######## results: {server.label} ########")
        timed()
        if throughput:
            print_throughput(throughput)
        print(f"\n{load_after} at the end; server CPU {cpu:.1f} s in all")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: {work}")


def _run_all(
    args: argparse.Namespace,
    server: Server,
    api: Api,
    remote_tf: TerraformCLI,
    local_tf: TerraformCLI,
    trace: EngineTrace | None,
    work: Path,
) -> Callable[[], None]:
    """Scenarios 1-3; returns the function that prints their results."""
    counts = _ints(args.resources)
    print(f"1. remote vs local apply ({load_line()}) ...", flush=True)
    applies = measure_applies(server, api, remote_tf, local_tf, trace, work, counts, args.runs)
    print(f"2. Terrapod's share ({load_line()}) ...", flush=True)
    share = measure_share(api, local_tf, trace, work, counts, args.runs)
    print(f"3. first log byte ({load_line()}) ...", flush=True)
    poll = args.log_poll_ms / 1000
    first = [first_log_bytes(api, 1, poll) for _ in range(args.runs)]
    startup = engine_startup(local_tf, work, max(args.runs, 5))

    # The timeline of the median remote apply of the first size; the server's log goes with
    # its data dir, so its lines are read now.
    one = applies[0]
    order = sorted(range(len(one.remote)), key=lambda i: one.remote[i].result_seconds)
    typical = order[len(order) // 2]
    applied = one.remote[typical]
    events = server_events(server, applied.started - 0.01, applied.ended + 0.01)

    def report() -> None:
        print_applies(applies, args.runs)
        print_share(share, trace is not None, startup)
        print_first_bytes(first, poll)
        print_timeline(events, applied, one.splits[typical])

    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--resources", default="1,50", help="resource counts, comma-separated")
    parser.add_argument(
        "--concurrency",
        default="2",
        help="TERRAPOD_RUNS__AGENT_CONCURRENCY values for the throughput figure; the first "
        "is the main server's, each other one gets a fresh server",
    )
    parser.add_argument("--throughput-runs", type=int, default=20, help="0 skips throughput")
    parser.add_argument("--throughput-workspaces", type=int, default=5)
    parser.add_argument("--log-poll-ms", type=float, default=25, help="log-read-url poll interval")
    parser.add_argument(
        "--postgres", action="store_true", help="also measure on PostgreSQL (scratch database)"
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--no-trace", action="store_true", help="run the engine untraced")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and server logs")
    args = parser.parse_args()
    print(f"run_overhead: {load_line()}")
    started = time.monotonic()
    if not args.skip_sqlite:
        bench_database(args, None)
    if args.postgres:
        bench_database(args, args.postgres_url)
    print(f"\ntotal {time.monotonic() - started:.0f} s; {load_line()}")


if __name__ == "__main__":
    main()
