#!/usr/bin/env python3
"""Workspace list and read latency with 10,000 workspaces in one organization.

Starts a real ``terrapod serve`` (SQLite in a scratch data dir, or a scratch PostgreSQL
database), fills the organization ``default`` with workspaces, and drives it with N
concurrent keep-alive clients for a fixed time per scenario:

  list-p1      GET /api/v2/organizations/default/workspaces?page[size]=20 (page 1)
  list-mid     ... page 250 (the middle of 10,000)
  list-last    ... the last page (500)
  by-name      GET /api/v2/organizations/default/workspaces/<name> (names rotate)
  by-id        GET /api/v2/workspaces/<id> (ids rotate)
  search-few   ... ?search[name]=<4 digits> (about 11 hits; substrings rotate)
  search-all   ... ?search[name]=ws- (every workspace matches; page 1)

and, to show that a page's cost does not depend on the total, list-p1 at 100, 1,000 and
10,000 workspaces. It prints requests/s, p50/p90/p99 latency, errors and the server's CPU
time per request (utime+stime from /proc/<pid>/stat over the measured window).

Workspaces are created with the project's own service layer (``terrapod.workspaces.service``
with SYSTEM, on a session from ``terrapod.db.engine`` against the same database), which is
much faster than the API; the first 100 go through the API so both rates are printed.

The load client is a closed-loop HTTP/1.1 client on raw asyncio sockets (one Protocol per
connection; the next request is written when the previous response is complete). On a
2-core machine it still competes with the server for CPU, hence the CPU-per-request column.

    .venv/bin/python benchmarks/workspace_list.py
    .venv/bin/python benchmarks/workspace_list.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/workspace_list.py --count 10000 --clients 10,50 --duration 8 \\
        --profile list-last --explain

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

# benchmarks/ is sys.path[0] when this file is run as a script.
from _harness import Server, cpu_seconds, loadavg, rss_mib, table, terrapod_server

PAGE_SIZE = 20
LIST = "/api/v2/organizations/default/workspaces"

# --------------------------------------------------------------------------------------------
# CPU accounting (/proc)
# --------------------------------------------------------------------------------------------


def box_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return float(sum(parts) - idle), float(sum(parts))


def db_backend_cpu(db_name: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving ``db_name`` (found by process title)."""
    out: dict[int, float] = {}
    if not db_name:
        return out
    needle = f" {db_name} ".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                title = f.read()
            if needle not in title.replace(b"\0", b" ") + b" ":
                continue
            out[int(entry.name)] = cpu_seconds(int(entry.name))
        except OSError:
            continue
    return out


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# --------------------------------------------------------------------------------------------
# seeding
# --------------------------------------------------------------------------------------------


def ws_name(i: int) -> str:
    return f"ws-{i:05d}"


async def seed_via_api(server: Server, start: int, stop: int, concurrency: int = 16) -> list[str]:
    """POST /organizations/default/workspaces from ``concurrency`` clients; returns ids."""
    headers = {
        "Authorization": f"Bearer {server.token}",
        "Content-Type": "application/vnd.api+json",
    }
    ids: list[str] = []
    todo = iter(range(start, stop))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=server.base, headers=headers, limits=limits, timeout=60
    ) as client:

        async def worker() -> None:
            for i in todo:
                body = {"data": {"type": "workspaces", "attributes": {"name": ws_name(i)}}}
                resp = await client.post(LIST, json=body)
                if resp.status_code != 201:
                    raise RuntimeError(f"create {ws_name(i)}: {resp.status_code} {resp.text}")
                ids.append(resp.json()["data"]["id"])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


async def seed_via_service(server: Server, start: int, stop: int, batch: int = 500) -> list[str]:
    """The project's own service layer against the server's database, ``batch`` per commit."""
    from terrapod.access.principal import SYSTEM
    from terrapod.config import load_settings
    from terrapod.db.engine import WRITE_OPTION, create_engine, create_sessionmaker
    from terrapod.organizations import service as organizations
    from terrapod.workspaces import service

    settings = load_settings(
        data_dir=server.data_dir,
        database={"url": server.database_url} if server.database_url else None,
    )
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    ids: list[str] = []
    try:
        for lo in range(start, stop, batch):
            async with sessionmaker() as session:
                await session.connection(execution_options={WRITE_OPTION: True})
                org = await organizations.get_by_name(session, SYSTEM, "default")
                for i in range(lo, min(lo + batch, stop)):
                    ws = await service.create(session, SYSTEM, org, {"name": ws_name(i)})
                    ids.append(ws.id)
                await session.commit()
    finally:
        await engine.dispose()
    return ids


# --------------------------------------------------------------------------------------------
# load client: closed loop over raw keep-alive sockets
# --------------------------------------------------------------------------------------------

_HEADER_END = b"\r\n\r\n"
_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.IGNORECASE)


class _Conn(asyncio.Protocol):
    def __init__(self, run: _Run, offset: int) -> None:
        self.run = run
        self.index = offset
        self.buf = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send()

    def _send(self) -> None:
        reqs = self.run.requests
        self.index = (self.index + 1) % len(reqs)
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(reqs[self.index])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(_HEADER_END)
            if end < 0:
                return
            head = bytes(self.buf[: end + 2])
            m = _CL.search(head)
            if m is not None:
                total = end + 4 + int(m.group(1))
                if len(self.buf) < total:
                    return
            elif _CHUNKED.search(head):
                last = self.buf.find(b"\r\n0\r\n\r\n", end)
                if last < 0:
                    return
                total = last + 7
            else:
                self._fail("response without Content-Length")
                return
            status = int(head[9:12])
            del self.buf[:total]
            self._completed(status)
            if self.done.done():
                return

    def _completed(self, status: int) -> None:
        now = time.perf_counter()
        run = self.run
        if run.measure_from <= self.sent_at and now <= run.measure_until:
            run.latencies.append((now - self.sent_at) * 1000.0)
            if not 200 <= status < 300:
                run.errors[status] += 1
        if now >= run.measure_until:
            self._finish()
        else:
            self._send()

    def _fail(self, why: str) -> None:
        self.run.errors[why] += 1
        self._finish()

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.run.errors["connection lost"] += 1
            self.done.set_result(None)


@dataclass
class _Run:
    requests: list[bytes]
    measure_from: float
    measure_until: float
    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: collections.Counter[Any] = field(default_factory=collections.Counter)


@dataclass
class Result:
    scenario: str
    clients: int
    requests: int
    seconds: float
    p50: float
    p90: float
    p99: float
    max: float
    errors: dict[Any, int]
    cpu_ms_per_req: float
    db_cpu_ms_per_req: float | None  # PostgreSQL backends; None on SQLite (in-process)
    server_cpu_pct: float
    client_cpu_pct: float
    box_busy_pct: float  # whole machine, in % of one core (2 cores = 200)
    response_bytes: int


def _pct(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def build_request(server: Server, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
        f"Authorization: Bearer {server.token}\r\nAccept: application/vnd.api+json\r\n"
        "User-Agent: terrapod-bench\r\n\r\n"
    ).encode()


async def load(
    server: Server,
    scenario: str,
    paths: list[str],
    clients: int,
    duration: float,
    warmup: float,
) -> Result:
    # Check the scenario answers 200 before loading it.
    async with httpx.AsyncClient(
        base_url=server.base, headers={"Authorization": f"Bearer {server.token}"}
    ) as check:
        resp = await check.get(paths[0])
        if resp.status_code != 200:
            raise RuntimeError(f"{scenario}: GET {paths[0]} -> {resp.status_code} {resp.text}")
        size = len(resp.content)
    loop = asyncio.get_running_loop()
    now = time.perf_counter()
    run = _Run(
        requests=[build_request(server, p) for p in paths],
        measure_from=now + warmup,
        measure_until=now + warmup + duration,
    )
    cpu_marks: list[tuple[float, float, tuple[float, float], dict[int, float]]] = []

    def mark() -> None:
        cpu_marks.append(
            (cpu_seconds(server.pid), own_cpu(), box_cpu(), db_backend_cpu(server.db_name))
        )

    loop.call_later(warmup, mark)
    loop.call_later(warmup + duration, mark)
    conns = []
    for k in range(clients):
        _, proto = await loop.create_connection(
            lambda k=k: _Conn(run, random.randrange(len(paths)) if len(paths) > 1 else k),
            server.host,
            server.port,
        )
        conns.append(proto)
    await asyncio.wait_for(asyncio.gather(*(c.done for c in conns)), warmup + duration + 60)
    while len(cpu_marks) < 2:  # noqa: ASYNC110 - the last mark is a timer a moment away
        await asyncio.sleep(0.01)
    lat = sorted(run.latencies)
    n = len(lat)
    cpu = cpu_marks[1][0] - cpu_marks[0][0]
    client_cpu = cpu_marks[1][1] - cpu_marks[0][1]
    db0, db1 = cpu_marks[0][3], cpu_marks[1][3]
    db_cpu = sum(v - db0.get(pid, 0.0) for pid, v in db1.items())
    (b0, t0), (b1, t1) = cpu_marks[0][2], cpu_marks[1][2]
    ncpu = os.cpu_count() or 1
    box_busy = (b1 - b0) / (t1 - t0) * 100 * ncpu if t1 > t0 else float("nan")
    return Result(
        scenario=scenario,
        clients=clients,
        requests=n,
        seconds=duration,
        p50=_pct(lat, 0.50),
        p90=_pct(lat, 0.90),
        p99=_pct(lat, 0.99),
        max=lat[-1] if lat else float("nan"),
        errors=dict(run.errors),
        cpu_ms_per_req=cpu / n * 1000 if n else float("nan"),
        db_cpu_ms_per_req=(db_cpu / n * 1000 if n else float("nan")) if server.db_name else None,
        server_cpu_pct=cpu / duration * 100,
        client_cpu_pct=client_cpu / duration * 100,
        box_busy_pct=box_busy,
        response_bytes=size,
    )


# --------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------


def page_path(number: int, extra: str = "") -> str:
    return f"{LIST}?page%5Bsize%5D={PAGE_SIZE}&page%5Bnumber%5D={number}{extra}"


def scenarios(count: int, ids: list[str], rng: random.Random) -> dict[str, list[str]]:
    last = max(1, -(-count // PAGE_SIZE))
    names = [ws_name(rng.randrange(count)) for _ in range(500)]
    picked_ids = [ids[rng.randrange(len(ids))] for _ in range(500)]
    digits = [f"{rng.randrange(count // 10):04d}" for _ in range(200)]
    return {
        "list-p1": [page_path(1)],
        "list-mid": [page_path(max(1, last // 2))],
        "list-last": [page_path(last)],
        "by-name": [f"{LIST}/{n}" for n in names],
        "by-id": [f"/api/v2/workspaces/{i}" for i in picked_ids],
        "search-few": [page_path(1, "&search%5Bname%5D=" + quote(d)) for d in digits],
        "search-all": [page_path(1, "&search%5Bname%5D=ws-")],
    }


def fmt(v: float, digits: int = 1) -> str:
    return f"{v:.{digits}f}"


def result_row(r: Result, label: str | None = None) -> list[str]:
    errors = ",".join(f"{k}:{v}" for k, v in r.errors.items()) or "0"
    return [
        label or r.scenario,
        str(r.clients),
        str(r.requests),
        fmt(r.requests / r.seconds),
        fmt(r.p50),
        fmt(r.p90),
        fmt(r.p99),
        fmt(r.max),
        fmt(r.cpu_ms_per_req, 2),
        "-" if r.db_cpu_ms_per_req is None else fmt(r.db_cpu_ms_per_req, 2),
        fmt(r.server_cpu_pct, 0),
        fmt(r.client_cpu_pct, 0),
        fmt(r.box_busy_pct, 0),
        str(r.response_bytes),
        errors,
    ]


HEADERS = [
    "scenario",
    "clients",
    "requests",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "srv CPU ms/req",
    "PG CPU ms/req",
    "srv CPU %",
    "client CPU %",
    "box busy %",
    "resp B",
    "errors",
]


# --------------------------------------------------------------------------------------------
# evidence: py-spy and query plans
# --------------------------------------------------------------------------------------------


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number.
    m = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{func} ({path})"


_PACKAGES = (
    "terrapod",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "sqlite3",
    "starlette",
    "fastapi",
    "uvicorn",
    "pydantic",
    "orjson",
    "structlog",
    "prometheus_client",
    "asyncio",
    "typer",
)


def _package(frame: str) -> str:
    path = frame.rsplit("(", 1)[-1]
    for pkg in _PACKAGES:
        if path.startswith((pkg + "/", pkg + ".")) or f"/{pkg}/" in path:
            return pkg
    return "other"


def summarize_profile(raw_path: Path, top: int = 20) -> str:
    """Summarise py-spy raw (collapsed) stacks recorded with --gil: every sample is a moment
    a thread held the GIL, i.e. Python CPU time."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        for f in set(frames):
            inclusive[f] += count
        own[frames[-1]] += count
        by_package[_package(frames[-1])] += count
    if not total:
        return "(no samples)"
    lines = [f"GIL-holding samples: {total}", "", "own time by package:"]
    lines += [f"  {c / total * 100:5.1f}%  {p}" for p, c in by_package.most_common()]
    lines += ["", "inclusive time, terrapod and database-layer entry points:"]
    shown = 0
    for f, c in inclusive.most_common():
        if (
            "terrapod/" in f
            or "AsyncSession.execute" in f
            or "render" in f
            or "commit" in f.lower()
            or "_connection_for_bind" in f
        ) and "cli.py" not in f:
            lines.append(f"  {c / total * 100:5.1f}%  {f}")
            shown += 1
            if shown >= top:
                break
    lines += ["", "top by own time:"]
    lines += [f"  {c / total * 100:5.1f}%  {f}" for f, c in own.most_common(top)]
    return "\n".join(lines)


def profile(
    server: Server, scenario: str, paths: list[str], clients: int, duration: float, out_dir: Path
) -> str:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        found = shutil.which("py-spy")
        if not found:
            return "py-spy not installed"
        spy = Path(found)
    raw_path = out_dir / f"profile-{scenario}.txt"
    proc = subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(server.pid),
            "--duration",
            str(int(duration)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw_path),
            "--gil",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    result = asyncio.run(load(server, scenario, paths, clients, duration, 0.0))
    _, err = proc.communicate(timeout=duration + 60)
    if not raw_path.exists():
        return f"py-spy failed: {err.decode()[-2000:]}"
    head = f"({result.requests / result.seconds:.0f} req/s under py-spy, {clients} clients)\n"
    return head + summarize_profile(raw_path)


# The statements the list route issues (see terrapod.workspaces.service.list_in_org and
# tags_for), written out so their plans can be shown; the organization id is bound below.
def list_queries(offset: int, search: str | None) -> list[tuple[str, str]]:
    like = f" AND lower(name) LIKE '%{search}%' ESCAPE '\\'" if search else ""
    where = f"organization_id = :org{like}"
    return [
        ("count", f"SELECT count(*) FROM workspaces WHERE {where}"),
        (
            "page",
            f"SELECT * FROM workspaces WHERE {where} ORDER BY name "
            f"LIMIT {PAGE_SIZE} OFFSET {offset}",
        ),
    ]


async def explain_postgres(url: str, count: int) -> str:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
        org_id = await conn.fetchval("SELECT id FROM organizations WHERE name = 'default'")
        out: list[str] = []
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'workspaces'"
        )
        out.append("indexes on workspaces:")
        out += [f"  {r['indexdef']}" for r in indexes]
        last_offset = (max(1, -(-count // PAGE_SIZE)) - 1) * PAGE_SIZE
        cases = [
            ("page 1", 0, None),
            ("last page", last_offset, None),
            ("search[name]=0123", 0, "0123"),
        ]
        for label, offset, search in cases:
            for what, template in list_queries(offset, search):
                sql = template.replace(":org", "$1")
                plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", org_id)
                out.append(f"\n-- {label}: {what}\n{sql}")
                out += [f"  {r[0]}" for r in plan]
        sql = "SELECT count(*) FROM workspaces WHERE organization_id = $1 AND lower(name) = $2"
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", org_id, "new-name")
        out.append(f"\n-- create: the name check (workspaces.service._ensure_name_free)\n{sql}")
        out += [f"  {r[0]}" for r in plan]
        sql = (
            "SELECT w.*, o.* FROM workspaces w JOIN organizations o ON o.id = "
            "w.organization_id WHERE o.name = 'default' AND w.name = $1"
        )
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", ws_name(count // 2))
        out.append(f"\n-- by name\n{sql}")
        out += [f"  {r[0]}" for r in plan]
        return "\n".join(out)
    finally:
        await conn.close()


def explain_sqlite(db_path: Path, count: int) -> str:
    import sqlite3

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        org_id = conn.execute("SELECT id FROM organizations WHERE name = 'default'").fetchone()[0]
        out = ["indexes on workspaces:"]
        out += [
            f"  {r[0]}"
            for r in conn.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'workspaces' AND type = 'index'"
            )
            if r[0]
        ] or ["  (none created explicitly)"]
        out += [f"  autoindex {r[1]}" for r in conn.execute("PRAGMA index_list('workspaces')")]
        last_offset = (max(1, -(-count // PAGE_SIZE)) - 1) * PAGE_SIZE
        for label, offset, search in [
            ("page 1", 0, None),
            ("last page", last_offset, None),
            ("search[name]=0123", 0, "0123"),
        ]:
            for what, sql in list_queries(offset, search):
                sql_q = sql.replace(":org", "?")
                plan = conn.execute(f"EXPLAIN QUERY PLAN {sql_q}", (org_id,)).fetchall()
                t0 = time.perf_counter()
                reps = 20
                for _ in range(reps):
                    conn.execute(sql_q, (org_id,)).fetchall()
                ms = (time.perf_counter() - t0) / reps * 1000
                out.append(f"\n-- {label}: {what}  ({ms:.2f} ms in sqlite3 directly)\n{sql_q}")
                out += [f"  {r[3]}" for r in plan]
        sql_q = "SELECT count(*) FROM workspaces WHERE organization_id = ? AND lower(name) = ?"
        plan = conn.execute(f"EXPLAIN QUERY PLAN {sql_q}", (org_id, "new-name")).fetchall()
        t0 = time.perf_counter()
        for _ in range(20):
            conn.execute(sql_q, (org_id, "new-name")).fetchall()
        ms = (time.perf_counter() - t0) / 20 * 1000
        out.append(
            f"\n-- create: the name check (workspaces.service._ensure_name_free)  "
            f"({ms:.2f} ms in sqlite3 directly)\n{sql_q}"
        )
        out += [f"  {r[3]}" for r in plan]
        return "\n".join(out)
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    clients = [int(c) for c in args.clients.split(",") if c]
    steps = sorted({s for s in (100, 1000, args.count) if s <= args.count})
    rng = random.Random(42)
    with terrapod_server(args.database_url, keep=args.keep) as server:
        print(f"server: {server.base} pid {server.pid}, {server.label}, data {server.data_dir}")
        print(f"load average at start: {loadavg()} ({os.cpu_count()} cores)")
        ids: list[str] = []
        seeded = 0
        seed_rows: list[list[str]] = []
        scale_rows: list[list[str]] = []
        main_rows: list[list[str]] = []
        for step in steps:
            n_api = min(step, args.api_seed) - seeded if seeded < args.api_seed else 0
            if n_api > 0:
                t0 = time.perf_counter()
                ids += asyncio.run(seed_via_api(server, seeded, seeded + n_api))
                dt = time.perf_counter() - t0
                seed_rows.append(
                    ["API, 16 concurrent POSTs", str(n_api), fmt(dt, 2), fmt(n_api / dt, 0)]
                )
                seeded += n_api
            if step > seeded:
                t0 = time.perf_counter()
                ids += asyncio.run(seed_via_service(server, seeded, step))
                dt = time.perf_counter() - t0
                seed_rows.append(
                    [
                        "service layer in-process, 500/commit",
                        str(step - seeded),
                        fmt(dt, 2),
                        fmt((step - seeded) / dt, 0),
                    ]
                )
                seeded = step
            print(f"  {seeded} workspaces", flush=True)
            for c in clients:
                r = asyncio.run(
                    load(server, "list-p1", [page_path(1)], c, args.duration, args.warmup)
                )
                scale_rows.append(result_row(r, f"list-p1 @ {seeded}"))
                print(
                    f"    list-p1 @ {seeded}, {c} clients: {r.requests / r.seconds:.0f} req/s "
                    f"p99 {r.p99:.1f} ms",
                    flush=True,
                )
        wanted = args.scenarios.split(",") if args.scenarios else None
        for name, paths in scenarios(seeded, ids, rng).items():
            if wanted and name not in wanted:
                continue
            for c in clients:
                r = asyncio.run(load(server, name, paths, c, args.duration, args.warmup))
                main_rows.append(result_row(r))
                print(
                    f"    {name}, {c} clients: {r.requests / r.seconds:.0f} req/s "
                    f"p99 {r.p99:.1f} ms",
                    flush=True,
                )
        rss = rss_mib(server.pid)
        hwm = rss_mib(server.pid, "VmHWM")

        print()
        print(f"== seeding ({server.label}) ==")
        print(table(["how", "workspaces", "seconds", "per second"], seed_rows))
        print()
        print(
            f"== page 1 (page[size]={PAGE_SIZE}) against the total count ({server.label}; "
            f"{args.duration:g} s per row after {args.warmup:g} s warm-up) =="
        )
        print(table(HEADERS, scale_rows))
        print()
        print(f"== {seeded} workspaces ({server.label}) ==")
        print(table(HEADERS, main_rows))
        print(
            "srv CPU = utime+stime of the server process over the window; PG CPU = the same for "
            "the PostgreSQL backends serving the scratch database; box busy % = all "
            f"processes on the machine ({os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}"
            "%), including PostgreSQL, this client and anything else running"
        )
        print(f"\nserver RSS {rss:.0f} MiB, peak {hwm:.0f} MiB; load average at end: {loadavg()}")

        if args.profile:
            all_paths = scenarios(seeded, ids, rng)
            out_dir = Path(tempfile.mkdtemp(prefix="terrapod-bench-prof-"))
            for name in args.profile.split(","):
                print(
                    f"\n== py-spy: {name}, {clients[0]} clients, {args.duration:g} s "
                    f"(raw stacks in {out_dir}) =="
                )
                print(profile(server, name, all_paths[name], clients[0], args.duration, out_dir))
        if args.explain:
            print(f"\n== query plans ({server.label}) ==")
            if server.database_url:
                print(asyncio.run(explain_postgres(server.database_url, seeded)))
            else:
                print(explain_sqlite(server.data_dir / "terrapod.db", seeded))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server: a scratch "
        "terrapod_bench_<hex> database is created on it and dropped after",
    )
    parser.add_argument("--count", type=int, default=10_000, help="workspaces in the end")
    parser.add_argument("--clients", default="10,50", help="concurrent connections, e.g. 10,50")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument(
        "--api-seed",
        type=int,
        default=100,
        help="how many of the first workspaces to create through the API",
    )
    parser.add_argument("--scenarios", default="", help="subset of the 10k scenarios to run")
    parser.add_argument(
        "--profile",
        default="",
        help="scenarios to run once more under py-spy (e.g. list-last,by-id)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print query plans (EXPLAIN ANALYZE on PostgreSQL, "
        "EXPLAIN QUERY PLAN + direct timings on SQLite)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
