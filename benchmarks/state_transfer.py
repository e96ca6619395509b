#!/usr/bin/env python3
"""State upload/download throughput and server memory against a real ``terrapod serve``.

Starts Terrapod (SQLite in a scratch data dir, or a scratch PostgreSQL database) and saves
and reads states of 1 MB, 10 MB and 100 MB the way Terraform 1.15 does:

  1. POST /api/v2/organizations/default/workspaces, POST /workspaces/:id/actions/lock
  2. POST /workspaces/:id/state-versions with serial, md5 and lineage only
     -> ``hosted-state-upload-url``
  3. PUT the raw state there (no Authorization header, application/octet-stream), streamed
  4. poll GET /api/v2/state-versions/:id until ``status`` is ``finalized``
  5. GET ``hosted-state-download-url`` (with the Bearer token, as terraform sends it), streamed

Upload MB/s covers steps 3+4 (the server stores the body and then parses the stored state in
one streaming pass before it answers the PUT); download MB/s covers step 5 up to the last
byte. MB = 10^6 bytes; figures are the median of --repeat runs. Memory is the server
process's VmHWM from /proc/<pid>/status: the peak is reset (``clear_refs`` 5) before each
size, so each row shows the peak reached while transferring that size, next to the RSS
before it; a server that streams shows the same peak for every size.

It also times Terraform 1.0's path (the whole state base64-encoded inside the POST body) for
1 MB and 10 MB, reported separately. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/state_transfer.py
    .venv/bin/python benchmarks/state_transfer.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/state_transfer.py --sizes 1,10 --repeat 5
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

# benchmarks/ is sys.path[0] when this file is run as a script.
from _harness import cpu_seconds, loadavg, proc_status, table, terrapod_server

MB = 1_000_000
MIB = 1024 * 1024
UPLOAD_PIECE = 256 * 1024  # what the body generator yields per write
JSONAPI = "application/vnd.api+json"

# --------------------------------------------------------------------------------------------
# the server's memory
# --------------------------------------------------------------------------------------------


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5). False when not permitted."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# real-shaped Terraform state (format version 4)
# --------------------------------------------------------------------------------------------

PROVIDER = 'provider["terraform.io/builtin/terraform"]'
_FILLER = base64.b64encode(hashlib.shake_256(b"terrapod-bench").digest(3 * MIB)).decode()


def _resource(i: int, pad: int) -> bytes:
    """One ``terraform_data`` resource whose ``input`` attribute carries ``pad`` characters."""
    start = (i * 7919) % (len(_FILLER) - pad) if pad < len(_FILLER) else 0
    filler = (_FILLER * (pad // len(_FILLER) + 1))[start : start + pad]
    doc = {
        "mode": "managed",
        "type": "terraform_data",
        "name": f"r{i:06d}",
        "provider": PROVIDER,
        "instances": [
            {
                "schema_version": 0,
                "attributes": {
                    "id": str(uuid.UUID(int=i + 1)),
                    "input": {"value": filler, "type": "string"},
                    "output": {"value": f"out-{i:06d}", "type": "string"},
                    "triggers_replace": None,
                },
                "sensitive_attributes": [],
                "identity_schema_version": 0,
            }
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class StateDoc:
    """A state of ``size`` bytes kept as chunks; only the header changes with the serial."""

    size: int
    lineage: str
    body: list[bytes]  # everything after the header
    resources: int

    def header(self, serial: int) -> bytes:
        outputs = {
            "endpoint": {"value": "https://bench.example.com", "type": "string"},
            "instance_count": {"value": self.resources, "type": "number"},
            "db_password": {"value": "hunter2", "type": "string", "sensitive": True},
        }
        head = {
            "version": 4,
            "terraform_version": "1.15.5",
            "serial": serial,
            "lineage": self.lineage,
            "outputs": outputs,
        }
        # Fixed-width serial keeps the total size identical for every serial.
        text = json.dumps(head, separators=(",", ":"))[:-1]
        text = text.replace(f'"serial":{serial}', f'"serial":{serial:>9}', 1)
        return (text + ',"resources":[').encode()

    def chunks(self, serial: int) -> list[bytes]:
        return [self.header(serial), *self.body]

    def md5(self, serial: int) -> str:
        h = hashlib.md5()
        for c in self.chunks(serial):
            h.update(c)
        return h.hexdigest()

    def joined(self, serial: int) -> bytes:
        return b"".join(self.chunks(serial))


def make_state(size: int, per_resource: int, lineage: str) -> StateDoc:
    """A format-4 state of exactly ``size`` bytes, ~``per_resource`` bytes per resource."""
    tail = b'],"check_results":null}'
    probe = StateDoc(size, lineage, [], 0)
    head_len = len(probe.header(1))
    overhead = len(_resource(0, 0)) + 1  # + the separating comma
    if per_resource - overhead < 0:
        raise SystemExit(f"--resource-bytes must be at least {overhead}")
    pad = per_resource - overhead
    # The header holds the resource count (an output), so settle the count first.
    doc = StateDoc(size, lineage, [], max(1, (size - head_len - len(tail)) // per_resource))
    budget = size - len(doc.header(1)) - len(tail)
    doc.resources = count = max(1, budget // per_resource)
    budget = size - len(doc.header(1)) - len(tail)
    # The first resource has no comma before it; the last absorbs the remainder so the
    # total is exact.
    last_pad = budget - (count - 1) * per_resource - overhead + 1
    pieces: list[bytes] = []
    buf: list[bytes] = []
    buf_len = 0
    for i in range(count):
        item = _resource(i, last_pad if i == count - 1 else pad)
        if i:
            item = b"," + item
        buf.append(item)
        buf_len += len(item)
        if buf_len >= MIB:
            pieces.append(b"".join(buf))
            buf, buf_len = [], 0
    buf.append(tail)
    pieces.append(b"".join(buf))
    doc.body = pieces
    total = len(doc.header(1)) + sum(map(len, pieces))
    if total != size:
        raise AssertionError(f"generated {total} bytes, wanted {size}")
    return doc


def body_generator(chunks: list[bytes]) -> Iterator[bytes]:
    """The upload body, written UPLOAD_PIECE bytes at a time."""
    for chunk in chunks:
        view = memoryview(chunk)
        for off in range(0, len(view), UPLOAD_PIECE):
            yield bytes(view[off : off + UPLOAD_PIECE])


# --------------------------------------------------------------------------------------------
# the Terraform 1.15 and 1.0 flows
# --------------------------------------------------------------------------------------------


class ApiError(RuntimeError):
    pass


def _check(resp: httpx.Response, *ok: int) -> httpx.Response:
    if resp.status_code not in ok:
        raise ApiError(
            f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text[:500]}"
        )
    return resp


def create_locked_workspace(api: httpx.Client, name: str) -> str:
    body = {"data": {"type": "workspaces", "attributes": {"name": name}}}
    ws = _check(api.post("/api/v2/organizations/default/workspaces", json=body), 201)
    ws_id: str = ws.json()["data"]["id"]
    lock = {"data": {"type": "", "attributes": {"reason": "benchmark"}}}
    _check(api.post(f"/api/v2/workspaces/{ws_id}/actions/lock", json=lock), 200)
    return ws_id


@dataclass
class Transfer:
    create_s: float
    put_s: float
    finalize_s: float  # polling after the PUT answered
    polls: int
    download_s: float
    downloaded: int


def save_and_read(
    api: httpx.Client, raw: httpx.Client, ws_id: str, doc: StateDoc, serial: int, token: str
) -> Transfer:
    md5 = doc.md5(serial)
    t0 = time.perf_counter()
    attrs = {"serial": serial, "md5": md5, "lineage": doc.lineage}
    sv = _check(
        api.post(
            f"/api/v2/workspaces/{ws_id}/state-versions",
            json={"data": {"type": "state-versions", "attributes": attrs}},
        ),
        201,
    ).json()["data"]
    create_s = time.perf_counter() - t0
    upload_url = sv["attributes"]["hosted-state-upload-url"]
    if not upload_url:
        raise ApiError("no hosted-state-upload-url in the state version")
    chunks = doc.chunks(serial)

    t1 = time.perf_counter()
    _check(
        raw.put(
            upload_url,
            content=body_generator(chunks),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(doc.size)},
        ),
        200,
    )
    t2 = time.perf_counter()
    polls = 0
    while True:
        polls += 1
        cur = _check(api.get(f"/api/v2/state-versions/{sv['id']}"), 200).json()["data"]
        if cur["attributes"]["status"] == "finalized":
            break
        if time.perf_counter() - t2 > 300:
            raise ApiError(f"state version {sv['id']} not finalized after 300 s")
        time.sleep(0.05)
    t3 = time.perf_counter()
    download_url = cur["attributes"]["hosted-state-download-url"]

    t4 = time.perf_counter()
    got = 0
    with raw.stream("GET", download_url, headers={"Authorization": f"Bearer {token}"}) as resp:
        _check(resp, 200)
        for piece in resp.iter_raw(MIB):
            got += len(piece)
    t5 = time.perf_counter()
    if got != doc.size:
        raise ApiError(f"downloaded {got} bytes, uploaded {doc.size}")
    return Transfer(create_s, t2 - t1, t3 - t2, polls, t5 - t4, got)


def verify_download(api: httpx.Client, raw: httpx.Client, ws_id: str, md5: str, token: str) -> None:
    cur = _check(api.get(f"/api/v2/workspaces/{ws_id}/current-state-version"), 200).json()
    url = cur["data"]["attributes"]["hosted-state-download-url"]
    h = hashlib.md5()
    with raw.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as resp:
        _check(resp, 200)
        for piece in resp.iter_raw(MIB):
            h.update(piece)
    if h.hexdigest() != md5:
        raise ApiError(f"downloaded state md5 {h.hexdigest()} != uploaded {md5}")


def legacy_save(api: httpx.Client, ws_id: str, doc: StateDoc, serial: int) -> tuple[float, float]:
    """Terraform 1.0: the state inline, base64, in the create body. (seconds, body MB)"""
    content = doc.joined(serial)
    attrs = {
        "serial": serial,
        "md5": hashlib.md5(content).hexdigest(),
        "lineage": doc.lineage,
        "state": base64.b64encode(content).decode(),
    }
    body = json.dumps({"data": {"type": "state-versions", "attributes": attrs}}).encode()
    del content
    t0 = time.perf_counter()
    resp = _check(
        api.post(
            f"/api/v2/workspaces/{ws_id}/state-versions",
            content=body,
            headers={"Content-Type": JSONAPI},
        ),
        201,
    )
    elapsed = time.perf_counter() - t0
    if resp.json()["data"]["attributes"]["status"] != "finalized":
        raise ApiError("inline state version was not finalized by the POST")
    return elapsed, len(body) / MB


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------


def mib(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def run(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    legacy_sizes = [int(s) for s in args.legacy_sizes.split(",") if s]
    print("generating states ...", flush=True)
    docs = {
        s: make_state(s * MB, args.resource_bytes, str(uuid.uuid4()))
        for s in sorted(set(sizes + legacy_sizes))
    }
    with terrapod_server(args.database_url, keep=args.keep) as server:
        print(f"server: {server.base} pid {server.pid}, {server.label}, data {server.data_dir}")
        print(f"load average at start: {loadavg()} ({os.cpu_count()} cores)")
        start = proc_status(server.pid)
        print(f"server RSS after start: {mib(start['VmRSS'])} MiB (peak {mib(start['VmHWM'])})\n")
        auth = {"Authorization": f"Bearer {server.token}", "Content-Type": JSONAPI}
        timeout = httpx.Timeout(600, connect=10)
        with (
            httpx.Client(base_url=server.base, headers=auth, timeout=timeout) as api,
            httpx.Client(timeout=timeout) as raw,
        ):
            rows: list[list[str]] = []
            detail: list[list[str]] = []
            peak_so_far = start["VmHWM"]
            for size in sizes:
                doc = docs[size]
                ws_id = create_locked_workspace(api, f"state-{size}mb-{secrets.token_hex(3)}")
                before = proc_status(server.pid)
                resettable = reset_peak(server.pid)
                cpu0 = cpu_seconds(server.pid)
                runs = [
                    save_and_read(api, raw, ws_id, doc, serial, server.token)
                    for serial in range(1, args.repeat + 1)
                ]
                cpu = cpu_seconds(server.pid) - cpu0
                after = proc_status(server.pid)
                peak_so_far = max(peak_so_far, after["VmHWM"])
                verify_download(api, raw, ws_id, doc.md5(args.repeat), server.token)
                up = statistics.median(doc.size / MB / (r.put_s + r.finalize_s) for r in runs)
                down = statistics.median(doc.size / MB / r.download_s for r in runs)
                rows.append(
                    [
                        f"{size} MB",
                        f"{doc.resources}",
                        f"{up:.1f}",
                        f"{down:.1f}",
                        f"{statistics.median(r.create_s for r in runs) * 1000:.1f}",
                        mib(before["VmRSS"]),
                        mib(after["VmHWM"]) if resettable else "n/a",
                        mib(peak_so_far),
                        mib(after["VmRSS"]),
                        f"{cpu / args.repeat / (doc.size / MB) * 1000:.1f}",
                    ]
                )
                for i, r in enumerate(runs, 1):
                    detail.append(
                        [
                            f"{size} MB",
                            str(i),
                            f"{r.create_s * 1000:.1f}",
                            f"{r.put_s:.3f}",
                            f"{r.finalize_s * 1000:.1f}",
                            str(r.polls),
                            f"{r.download_s:.3f}",
                            f"{doc.size / MB / (r.put_s + r.finalize_s):.1f}",
                            f"{doc.size / MB / r.download_s:.1f}",
                        ]
                    )
                print(
                    f"  {size} MB done: upload {up:.1f} MB/s, download {down:.1f} MB/s", flush=True
                )
                _check(api.post(f"/api/v2/workspaces/{ws_id}/actions/unlock"), 200)

            legacy_rows: list[list[str]] = []
            for size in legacy_sizes:
                doc = docs[size]
                ws_id = create_locked_workspace(api, f"legacy-{size}mb-{secrets.token_hex(3)}")
                before = proc_status(server.pid)
                resettable = reset_peak(server.pid)
                timings = []
                body_mb = 0.0
                for serial in range(1, args.repeat + 1):
                    elapsed, body_mb = legacy_save(api, ws_id, doc, serial)
                    timings.append(elapsed)
                after = proc_status(server.pid)
                verify_download(api, raw, ws_id, doc.md5(args.repeat), server.token)
                med = statistics.median(timings)
                legacy_rows.append(
                    [
                        f"{size} MB",
                        f"{body_mb:.1f}",
                        f"{med * 1000:.0f}",
                        f"{doc.size / MB / med:.1f}",
                        mib(before["VmRSS"]),
                        mib(after["VmHWM"]) if resettable else "n/a",
                        mib(after["VmRSS"]),
                    ]
                )
                print(f"  legacy {size} MB done: {doc.size / MB / med:.1f} MB/s", flush=True)
                _check(api.post(f"/api/v2/workspaces/{ws_id}/actions/unlock"), 200)

        print()
        print(
            f"== Terraform 1.15 path ({server.label}; median of {args.repeat}; "
            f"MB = 10^6 B; memory in MiB) =="
        )
        print(
            table(
                [
                    "state",
                    "resources",
                    "upload MB/s",
                    "download MB/s",
                    "create ms",
                    "RSS before",
                    "peak (this size)",
                    "peak since start",
                    "RSS after",
                    "server CPU ms/MB",
                ],
                rows,
            )
        )
        print()
        print(
            "per run: create = POST state-versions; put = PUT until its 200 (store + parse); "
            "finalize = polling after the PUT"
        )
        print(
            table(
                [
                    "state",
                    "run",
                    "create ms",
                    "put s",
                    "finalize ms",
                    "polls",
                    "download s",
                    "up MB/s",
                    "down MB/s",
                ],
                detail,
            )
        )
        if legacy_rows:
            print()
            print(f"== Terraform 1.0 path: base64 state inline in POST ({server.label}) ==")
            print(
                table(
                    [
                        "state",
                        "body MB",
                        "POST ms",
                        "state MB/s",
                        "RSS before",
                        "peak (this size)",
                        "RSS after",
                    ],
                    legacy_rows,
                )
            )
        print(f"\nload average at end: {loadavg()}")
        final = proc_status(server.pid)
        print(
            f"\nserver RSS at the end: {mib(final['VmRSS'])} MiB; peaks are VmHWM, reset "
            "with clear_refs before each size (n/a: reset not permitted)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server: a scratch "
        "terrapod_bench_<hex> database is created on it and dropped after",
    )
    parser.add_argument("--sizes", default="1,10,100", help="state sizes in MB (10^6 B)")
    parser.add_argument(
        "--legacy-sizes",
        default="1,10",
        help="sizes for the Terraform 1.0 inline-state path ('' to skip)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="saves per size")
    parser.add_argument(
        "--resource-bytes",
        type=int,
        default=4096,
        help="approximate bytes per resource in the generated state",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
