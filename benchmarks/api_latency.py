#!/usr/bin/env python3
"""API latency and throughput benchmark for a real ``terrapod serve`` process.

Starts Terrapod in the embedded shape (SQLite in a scratch data dir) or against a scratch
PostgreSQL database, drives it over loopback with N concurrent keep-alive clients for a fixed
time per scenario, and prints requests/s, latency percentiles, errors, the server's CPU time
per request and its peak RSS. It prints a verdict against DESIGN.md's budget and asserts
nothing; see benchmarks/README.md.

The load generator is a small callback-driven HTTP/1.1 client on raw sockets (one asyncio
Protocol per connection, closed loop: the next request is written as soon as the previous
response is complete). It costs a few tens of microseconds per request, so on a 2-core box it
leaves the server a core of its own. ``--wrk`` additionally measures each scenario with wrk.

    .venv/bin/python benchmarks/api_latency.py
    .venv/bin/python benchmarks/api_latency.py --database-url postgresql://postgres@127.0.0.1:5432
    .venv/bin/python benchmarks/api_latency.py --tls --wrk --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# benchmarks/ is sys.path[0] when this file is run as a script.
from _harness import (
    ScratchPostgres,
    Server,
    cpu_seconds,
    loadavg,
    peak_rss_mib,
    rss_mib,
    start_server,
)

TARGET_P99_MS = 20.0
TARGET_CLIENTS = 50


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    auth: bool


SCENARIOS = [
    Scenario("ping", "/api/v2/ping", auth=False),
    Scenario("org-show", "/api/v2/organizations/default", auth=True),
    Scenario("account", "/api/v2/account/details", auth=True),
    Scenario("org-list", "/api/v2/organizations", auth=True),
]


# --------------------------------------------------------------------------------------------
# process accounting (/proc)
# --------------------------------------------------------------------------------------------


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every local process named ``postgres`` (the database's share of a run)."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            out[int(entry)] = cpu_seconds(int(entry))
        except (OSError, ValueError):
            continue
    return out


def postgres_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


# --------------------------------------------------------------------------------------------
# the load generator
# --------------------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.latencies = array("d")  # seconds, for responses completed inside the window
        self.statuses: dict[int, int] = {}
        self.errors = 0  # non-2xx responses
        self.protocol_errors: dict[str, int] = {}  # no Content-Length, chunked, reset, ...
        self.reconnects = 0
        self.recording = False

    def protocol_error(self, kind: str) -> None:
        self.protocol_errors[kind] = self.protocol_errors.get(kind, 0) + 1


class Connection(asyncio.Protocol):
    """One keep-alive connection running requests back to back from its callbacks."""

    def __init__(self, request: bytes, stats: Stats, done: asyncio.Future[None]) -> None:
        self.request = request
        self.stats = stats
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.header_end = -1
        self.body_len = 0
        self.status = 0
        self.close_after = False
        self.started = 0.0
        self.stopping = False

    # asyncio callbacks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.header_end < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                if not self._parse_head(bytes(buf[:end])):
                    return
                self.header_end = end + 4
            total = self.header_end + self.body_len
            if len(buf) < total:
                return
            del buf[:total]
            self.header_end = -1
            self._complete()
            if self.transport is None or self.transport.is_closing():
                return
            if not buf:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.done.done():
            if not self.stopping:
                self.stats.protocol_error("connection closed by server")
            self.done.set_result(None)

    # internals ----------------------------------------------------------------------------

    def _parse_head(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        try:
            self.status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            self.stats.protocol_error("bad status line")
            self._abort()
            return False
        length = None
        self.close_after = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                self.stats.protocol_error("chunked response (no Content-Length)")
                self._abort()
                return False
            elif name == b"connection" and value.strip().lower() == b"close":
                self.close_after = True
        if length is None:
            self.stats.protocol_error("response without Content-Length")
            self._abort()
            return False
        self.body_len = length
        return True

    def _complete(self) -> None:
        elapsed = time.perf_counter() - self.started
        stats = self.stats
        if stats.recording:
            stats.latencies.append(elapsed)
            stats.statuses[self.status] = stats.statuses.get(self.status, 0) + 1
            if not 200 <= self.status < 300:
                stats.errors += 1
        if self.stopping or self.close_after:
            if self.close_after and not self.stopping:
                stats.reconnects += 1
            self.stopping = True  # the close that follows is expected
            self._close()
            return
        self._send()

    def _send(self) -> None:
        if self.transport is None:
            return
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def stop(self) -> None:
        """Finish the request in flight, then close."""
        self.stopping = True


def build_request(host: str, port: int, path: str, token: str | None) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "User-Agent: terrapod-bench",
        "Accept: application/vnd.api+json",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _client(
    host: str,
    port: int,
    request: bytes,
    stats: Stats,
    stop_at: float,
    ssl_ctx: ssl.SSLContext | None,
) -> None:
    """Keeps one connection busy until ``stop_at`` (reconnecting if the server closes it)."""
    loop = asyncio.get_running_loop()
    while time.perf_counter() < stop_at:
        done: asyncio.Future[None] = loop.create_future()
        try:
            _, proto = await loop.create_connection(
                functools.partial(Connection, request, stats, done),
                host,
                port,
                ssl=ssl_ctx,
                server_hostname=host if ssl_ctx else None,
            )
        except OSError as exc:
            stats.protocol_error(f"connect: {type(exc).__name__}")
            await asyncio.sleep(0.05)
            continue
        remaining = stop_at - time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout=max(remaining, 0))
        except TimeoutError:
            proto.stop()
            # Let the request in flight finish (bounded), so we measure no truncated requests.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done, timeout=10)
            proto._close()
            return


async def run_load(
    host: str,
    port: int,
    path: str,
    token: str | None,
    clients: int,
    duration: float,
    warmup: float,
    ssl_ctx: ssl.SSLContext | None,
    server_pid: int,
    watch_postgres: bool,
) -> dict[str, Any]:
    stats = Stats()
    request = build_request(host, port, path, token)
    start = time.perf_counter()
    window_start = start + warmup
    stop_at = window_start + duration
    tasks = [
        asyncio.ensure_future(_client(host, port, request, stats, stop_at, ssl_ctx))
        for _ in range(clients)
    ]
    await asyncio.sleep(max(window_start - time.perf_counter(), 0))
    stats.recording = True
    t0 = time.perf_counter()
    srv_cpu0 = cpu_seconds(server_pid)
    loop_cpu0 = cpu_seconds(server_pid, server_pid)
    cli0 = resource.getrusage(resource.RUSAGE_SELF)
    pg0 = postgres_cpu() if watch_postgres else {}
    await asyncio.sleep(max(stop_at - time.perf_counter(), 0))
    stats.recording = False
    t1 = time.perf_counter()
    srv_cpu1 = cpu_seconds(server_pid)
    loop_cpu = cpu_seconds(server_pid, server_pid) - loop_cpu0
    cli1 = resource.getrusage(resource.RUSAGE_SELF)
    pg_cpu = postgres_cpu_delta(pg0, postgres_cpu()) if watch_postgres else None
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = t1 - t0
    client_cpu = (cli1.ru_utime + cli1.ru_stime) - (cli0.ru_utime + cli0.ru_stime)
    return summarize(
        stats.latencies,
        elapsed,
        errors=stats.errors,
        statuses=stats.statuses,
        protocol_errors=stats.protocol_errors,
        reconnects=stats.reconnects,
        server_cpu=srv_cpu1 - srv_cpu0,
        loop_cpu=loop_cpu,
        client_cpu=client_cpu,
        db_cpu=pg_cpu,
    )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def summarize(
    latencies: array[float],
    elapsed: float,
    *,
    errors: int,
    statuses: dict[int, int],
    protocol_errors: dict[str, int],
    reconnects: int,
    server_cpu: float,
    loop_cpu: float | None,
    client_cpu: float | None,
    db_cpu: float | None,
) -> dict[str, Any]:
    values = sorted(latencies)
    n = len(values)
    ms = 1000.0
    return {
        "requests": n,
        "seconds": round(elapsed, 3),
        "rps": n / elapsed if elapsed else 0.0,
        "p50_ms": percentile(values, 50) * ms,
        "p90_ms": percentile(values, 90) * ms,
        "p99_ms": percentile(values, 99) * ms,
        "max_ms": (values[-1] * ms) if values else float("nan"),
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "protocol_errors": protocol_errors,
        "reconnects": reconnects,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_req": server_cpu / n * 1e6 if n else float("nan"),
        "server_core_share": server_cpu / elapsed if elapsed else float("nan"),
        "loop_cpu_us_per_req": (loop_cpu / n * 1e6) if (n and loop_cpu is not None) else None,
        "client_cpu_us_per_req": (client_cpu / n * 1e6) if (n and client_cpu is not None) else None,
        "db_cpu_us_per_req": (db_cpu / n * 1e6) if (n and db_cpu is not None) else None,
    }


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        return float("nan")
    return float(m.group(1)) * _WRK_UNITS[m.group(2)]


def run_wrk(
    wrk: str,
    url: str,
    token: str | None,
    clients: int,
    duration: float,
    threads: int,
    server_pid: int,
    watch_postgres: bool,
) -> dict[str, Any]:
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{clients}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-H",
        "Accept: application/vnd.api+json",
    ]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    cmd.append(url)
    srv_cpu0 = cpu_seconds(server_pid)
    loop_cpu0 = cpu_seconds(server_pid, server_pid)
    pg0 = postgres_cpu() if watch_postgres else {}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    t1 = time.perf_counter()
    srv_cpu = cpu_seconds(server_pid) - srv_cpu0
    loop_cpu = cpu_seconds(server_pid, server_pid) - loop_cpu0
    pg_cpu = postgres_cpu_delta(pg0, postgres_cpu()) if watch_postgres else None
    out = proc.stdout
    result: dict[str, Any] = {"command": " ".join(cmd).replace(token or "\0", "<token>")}
    if proc.returncode != 0:
        result["failed"] = proc.stderr.strip() or out.strip()
        return result
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    lat = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = int(total.group(1)) if total else 0
    result.update(
        {
            "requests": n,
            "rps": float(rps.group(1)) if rps else float("nan"),
            "p50_ms": _wrk_ms(pct.get("50", "")),
            "p90_ms": _wrk_ms(pct.get("90", "")),
            "p99_ms": _wrk_ms(pct.get("99", "")),
            "max_ms": _wrk_ms(lat.group(3)) if lat else float("nan"),
            "errors": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
            "server_cpu_s": srv_cpu,
            "server_cpu_us_per_req": srv_cpu / n * 1e6 if n else float("nan"),
            "server_core_share": srv_cpu / (t1 - t0),
            "loop_cpu_us_per_req": loop_cpu / n * 1e6 if n else None,
            "db_cpu_us_per_req": (pg_cpu / n * 1e6) if (n and pg_cpu is not None) else None,
        }
    )
    return result


# --------------------------------------------------------------------------------------------
# the server under test
# --------------------------------------------------------------------------------------------


def probe(server: Server, path: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
    conn = server.connection(timeout=10)
    headers = {"Accept": "application/vnd.api+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


# --------------------------------------------------------------------------------------------
# py-spy (optional profile of one measurement window)
# --------------------------------------------------------------------------------------------


# Where a sample's CPU goes: the first rule matching a frame, walking from the leaf up. Stacks
# that resume inside an SQLAlchemy greenlet start at the greenlet, so they match by file too.
PROFILE_BUCKETS = [
    ("logging (structlog, stdlib logging)", r"\((structlog|logging)/"),
    ("metrics (prometheus_client)", r"\(prometheus_client/"),
    (
        "JSON:API serialization (serialize, iso, permissions, orjson)",
        r"^(serialize\w*|iso|permissions_for|resource|ref|refs|document|_default|JSONAPIResponse\.\w+"
        r"|Response\.__init__|Response\.init_headers|pagination|page_params) ",
    ),
    (
        "token lookup (hash, principal cache)",
        r"^(hash_token|PrincipalCache\.\w+|bearer_token|UsageRecorder\.touch) ",
    ),
    (
        "SQLAlchemy + DB driver (Python, event-loop thread)",
        r"\((sqlalchemy|aiosqlite|asyncpg|greenlet)/",
    ),
    ("FastAPI dependency resolution", r"\(fastapi/dependencies/"),
    ("Terrapod middleware", r"\(terrapod/observability/"),
    ("Terrapod routes and services", r"\(terrapod/"),
    ("FastAPI/Starlette routing and middleware stack", r"\((fastapi|starlette|anyio)/"),
    ("uvicorn HTTP protocol (Python)", r"\(uvicorn/"),
    (
        "event loop in C (uvloop, httptools, socket syscalls)",
        r"^(Runner\.run|run) \((asyncio|uvloop)/",
    ),
]


def summarize_py_spy(path: Path) -> list[tuple[str, int]]:
    """Busy samples per bucket of a py-spy ``--format raw`` (collapsed stacks) file."""
    buckets: dict[str, int] = {}
    rules = [(name, re.compile(rx)) for name, rx in PROFILE_BUCKETS]
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if leaf.startswith("_connection_worker_thread (aiosqlite/core.py"):
            # aiosqlite's worker: waiting on its queue is idle; inside function() it runs
            # sqlite3's C code (with the GIL released) on the other core.
            if "tx.get" in leaf or leaf.endswith(":59)"):
                continue
            name = "sqlite3 C calls (aiosqlite worker threads)"
        elif frames[0].startswith("Thread._bootstrap"):
            name = "other threads (Python)"
        else:
            name = next(
                (n for f in reversed(frames) for n, rx in rules if rx.search(f)),
                "other (asyncio, stdlib)",
            )
        buckets[name] = buckets.get(name, 0) + int(count)
    return sorted(buckets.items(), key=lambda kv: -kv[1])


def print_profile(path: Path, us_per_req: float) -> None:
    buckets = summarize_py_spy(path)
    busy = sum(n for _, n in buckets)
    if not busy:
        return
    print(
        f"  py-spy {path.name}: {busy} busy samples; share of the server's CPU, and that share "
        f"of {us_per_req:.0f} us/request:"
    )
    for name, n in buckets:
        print(f"    {n / busy * 100:5.1f}%  {n / busy * us_per_req:6.0f} us  {name}")


def start_py_spy(pid: int, out: Path, duration: float, rate: int) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("  (py-spy not found: pip install py-spy into the venv to profile)", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(duration))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def fmt_row(name: str, r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"{name:<10} FAILED: {r['failed'][:100]}"
    db = r.get("db_cpu_us_per_req")
    db_s = f"{db:9.0f}" if db is not None else f"{'-':>9}"
    lp = r.get("loop_cpu_us_per_req")
    lp_s = f"{lp:8.0f}" if lp is not None else f"{'-':>8}"
    return (
        f"{name:<10} {r['rps']:9.1f} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} "
        f"{r['max_ms']:8.2f} {r['errors']:7d} {r['server_cpu_us_per_req']:10.0f} {lp_s} "
        f"{r['server_core_share'] * 100:6.0f}% {db_s} {r['peak_rss_mib']:8.1f}"
    )


HEADER = (
    f"{'scenario':<10} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
    f"{'non-2xx':>7} {'srv us/req':>10} {'loop us':>8} {'srv cpu':>7} {'db us/req':>9} "
    f"{'peak MiB':>8}"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--clients", type=int, default=TARGET_CLIENTS, help="concurrent connections (50)"
    )
    p.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per scenario (10)"
    )
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each (2)")
    p.add_argument("--tls", action="store_true", help="serve with --dev-tls and verify its CA")
    p.add_argument(
        "--database-url",
        help="PostgreSQL server, e.g. postgresql://postgres@127.0.0.1:5432: a scratch database "
        "terrapod_bench_<hex> is created on it and dropped afterwards (default: SQLite)",
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=[s.name for s in SCENARIOS],
        help="run only these scenarios (repeatable; default all)",
    )
    p.add_argument("--wrk", action="store_true", help="also measure every scenario with wrk")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    p.add_argument("--no-raw", action="store_true", help="skip the built-in client (with --wrk)")
    p.add_argument(
        "--py-spy-dir",
        type=Path,
        help="record a py-spy profile (collapsed stacks) of each measured window here",
    )
    p.add_argument("--py-spy-rate", type=int, default=100, help="py-spy samples/s (100)")
    p.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    p.add_argument("--keep-data", action="store_true", help="keep the scratch data dir")
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra argument for 'terrapod serve' (repeatable)",
    )
    p.add_argument(
        "--exe",
        type=Path,
        help="server executable to run instead of the venv's 'terrapod' (A/B experiments)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server, e.g. TERRAPOD_DATABASE__POOL_SIZE=4",
    )
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="TERRAPOD_LOG_LEVEL of the server (warning; 'info' adds the access log)",
    )
    return p.parse_args(argv)


def client_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM (and SIGINT where a non-interactive shell ignores it) end the run like Ctrl-C,
    # so the ``finally`` below stops the server and drops the scratch database.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    scenarios = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    token = "tpod.bench-" + secrets.token_urlsafe(36)  # 48+ chars, chosen by us
    wrk = shutil.which("wrk") if args.wrk else None
    if args.wrk and wrk is None:
        print("wrk is not installed (apt-get install -y wrk); running without it", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="terrapod-bench-"))
    data_dir = workdir / "data"
    loop = new_event_loop()
    scratch: ScratchPostgres | None = None
    server: Server | None = None
    report: dict[str, Any] = {"config": {}, "raw": {}, "wrk": {}}
    try:
        if args.database_url:
            pg = ScratchPostgres(args.database_url)
            pg.create()
            scratch = pg
        t_start = time.monotonic()
        server = start_server(
            data_dir,
            token,
            database=scratch,
            tls=args.tls,
            serve_args=args.serve_arg,
            exe=args.exe,
            log_level=args.log_level,
            extra_env=dict(e.split("=", 1) for e in args.env),
            log_path=workdir / "server.log",
            # A session of its own: Ctrl-C in the terminal reaches only this script, which
            # then stops the server in its ``finally``.
            new_session=True,
        )
        startup = time.monotonic() - t_start
        pid = server.pid
        db_label = f"PostgreSQL ({scratch.name})" if scratch else "SQLite (embedded)"
        cmd = " ".join(server.command)
        print(f"server:   {cmd}" + "".join(f" [{e}]" for e in args.env))
        print(
            f"          pid {pid}, {db_label}, {server.scheme}, ready in {startup:.1f}s, "
            f"RSS {rss_mib(pid):.1f} MiB"
        )
        print(f"machine:  load average {loadavg()} at start")
        print(
            f"load:     {args.clients} keep-alive connections, {args.warmup:g}s warm-up + "
            f"{args.duration:g}s measured per scenario; client loop {client_loop_name()}; "
            f"{os.cpu_count()} CPUs"
        )
        report["config"] = {
            "server_command": cmd,
            "database": db_label,
            "scheme": server.scheme,
            "clients": args.clients,
            "duration": args.duration,
            "warmup": args.warmup,
            "cpus": os.cpu_count(),
            "startup_s": startup,
        }
        for s in scenarios:
            status, headers, body = probe(server, s.path, token if s.auth else None)
            cl = "content-length" in headers
            if not 200 <= status < 300 or not cl:
                print(
                    f"  warning: {s.name}: probe got HTTP {status}, Content-Length "
                    f"{'present' if cl else 'MISSING'}: {body[:200]!r}"
                )
        watch_pg = scratch is not None
        if not args.no_raw:
            print("\nbuilt-in raw-socket client")
            print(HEADER)
            for s in scenarios:
                spy = None
                if args.py_spy_dir:
                    args.py_spy_dir.mkdir(parents=True, exist_ok=True)
                    # Start after the warm-up so the profile covers the measured window only.
                    spy_out = args.py_spy_dir / f"{'pg' if scratch else 'sqlite'}-{s.name}.txt"
                r_task = loop.create_task(
                    run_load(
                        "127.0.0.1",
                        server.port,
                        s.path,
                        token if s.auth else None,
                        args.clients,
                        args.duration,
                        args.warmup,
                        server.ssl_ctx,
                        pid,
                        watch_pg,
                    )
                )
                if args.py_spy_dir:
                    loop.run_until_complete(asyncio.sleep(args.warmup))
                    spy = start_py_spy(pid, spy_out, args.duration, args.py_spy_rate)
                r = loop.run_until_complete(r_task)
                if spy is not None:
                    spy.wait(timeout=args.duration + 30)
                    r["py_spy"] = str(spy_out)
                r["peak_rss_mib"] = peak_rss_mib(pid)
                report["raw"][s.name] = r
                print(fmt_row(s.name, r))
                if spy is not None and spy_out.exists():
                    print_profile(spy_out, r["server_cpu_us_per_req"])
                if r["protocol_errors"] or r["reconnects"]:
                    print(f"  protocol errors {r['protocol_errors']}, reconnects {r['reconnects']}")
                if r["errors"]:
                    print(f"  statuses {r['statuses']}")
            cli = [
                r["client_cpu_us_per_req"]
                for r in report["raw"].values()
                if r["client_cpu_us_per_req"]
            ]
            if cli:
                print(f"(load generator's own CPU: {min(cli):.0f}-{max(cli):.0f} us/request)")
        if wrk:
            print(f"\nwrk ({args.wrk_threads} thread(s), {args.clients} connections)")
            print(HEADER)
            for s in scenarios:
                url = f"{server.scheme}://127.0.0.1:{server.port}{s.path}"
                r = run_wrk(
                    wrk,
                    url,
                    token if s.auth else None,
                    args.clients,
                    args.duration,
                    args.wrk_threads,
                    pid,
                    watch_pg,
                )
                r["peak_rss_mib"] = peak_rss_mib(pid)
                report["wrk"][s.name] = r
                print(fmt_row(s.name, r))
                if r.get("socket_errors"):
                    print(f"  wrk socket errors: {r['socket_errors']}")
        print(
            f"\nserver peak RSS (VmHWM) {peak_rss_mib(pid):.1f} MiB, "
            f"RSS now {rss_mib(pid):.1f} MiB; load average {loadavg()} at end"
        )
        print(verdict(report, args.clients))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # the server did not start
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        if server is not None:
            server.stop()
        if scratch is not None:
            with contextlib.suppress(Exception):
                scratch.drop()
        loop.close()
        if args.keep_data:
            print(f"data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


def verdict(report: dict[str, Any], clients: int) -> str:
    results = [
        (f"{tool}:{name}", r)
        for tool in ("raw", "wrk")
        for name, r in report[tool].items()
        if r.get("requests")
    ]
    if not results:
        return "VERDICT: no results"
    worst_name, worst = max(results, key=lambda kv: kv[1]["p99_ms"])
    errors = sum(r["errors"] for _, r in results)
    ok = worst["p99_ms"] < TARGET_P99_MS and errors == 0
    at = "" if clients == TARGET_CLIENTS else f" (measured at {clients}, not {TARGET_CLIENTS})"
    return (
        f"VERDICT: {'PASS' if ok else 'FAIL'} - target p99 < {TARGET_P99_MS:g} ms at "
        f"{TARGET_CLIENTS} concurrent clients{at}; worst p99 {worst['p99_ms']:.1f} ms "
        f"({worst_name}), {errors} non-2xx"
    )


if __name__ == "__main__":
    sys.exit(main())
