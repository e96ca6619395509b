"""Object-store throughput and memory: put/get of 1 MB, 10 MB, 100 MB and 1 GB objects.

    .venv/bin/python benchmarks/storage_throughput.py [--backends filesystem,s3]
                                                      [--sizes 1,10,100,1000] [--dir PATH]

Writes stream in 64 KiB chunks (what an ASGI server hands a request handler); reads iterate
the store's own chunks and discard them. Rates are MB/s with MB = 10^6 bytes, the median of a
few repetitions (one for 1 GB). After the timed runs it prints the process's peak RSS, then
repeats a 100 MB put+get per back-end under tracemalloc (slow, so not timed) to report the
peak of Python allocations.

The S3 figures are against moto's server in a child process: a pure-Python S3 that keeps
objects in memory, so they measure moto more than Terrapod. The filesystem figures include an
fsync per object. The 1 GB S3 case is skipped when it runs over --s3-budget seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

# The moto helpers live with the tests; make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    create_bucket,
    start_moto_server,
)

from terrapod.storage.base import ObjectStore
from terrapod.storage.filesystem import FilesystemObjectStore
from terrapod.storage.s3 import S3ObjectStore

MB = 1_000_000
CHUNK = 64 * 1024
_BLOCK = os.urandom(1024 * 1024)


async def body(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes in CHUNK-sized pieces, each a fresh bytes object like a socket read."""
    sent = 0
    offset = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        if offset + n > len(_BLOCK):
            offset = 0
        yield _BLOCK[offset : offset + n]
        offset += n
        sent += n


async def timed_put(store: ObjectStore, key: str, size: int) -> float:
    start = time.perf_counter()
    info = await store.put(key, body(size))
    elapsed = time.perf_counter() - start
    assert info.size == size
    return elapsed


async def timed_get(store: ObjectStore, key: str, size: int) -> float:
    start = time.perf_counter()
    received = 0
    async with await store.open(key) as stream:
        async for chunk in stream:
            received += len(chunk)
    elapsed = time.perf_counter() - start
    assert received == size
    return elapsed


def repetitions(size: int) -> int:
    return 9 if size <= 10 * MB else 3 if size <= 100 * MB else 1


async def measure(
    name: str, store: ObjectStore, sizes: list[int], budget: float | None
) -> list[tuple[str, int, float | None, float | None]]:
    rows: list[tuple[str, int, float | None, float | None]] = []
    for size in sizes:
        key = f"bench/{size}.bin"
        puts: list[float] = []
        gets: list[float] = []
        skipped = False
        for _ in range(repetitions(size)):
            limit = budget if (budget is not None and size >= 1000 * MB) else None
            with anyio.move_on_after(limit) as scope:
                puts.append(await timed_put(store, key, size))
                gets.append(await timed_get(store, key, size))
            if scope.cancelled_caught:
                skipped = True
                break
        await store.delete(key)
        if skipped:
            print(f"{name:<11} {size / MB:>7.0f} MB  skipped: over {budget:.0f} s", flush=True)
            rows.append((name, size, None, None))
            continue
        put_rate = size / MB / statistics.median(puts)
        get_rate = size / MB / statistics.median(gets)
        rates = f"put {put_rate:>8.1f} MB/s   get {get_rate:>8.1f} MB/s"
        print(f"{name:<11} {size / MB:>7.0f} MB  {rates}", flush=True)
        rows.append((name, size, put_rate, get_rate))
    return rows


async def traced_peak(store: ObjectStore, size: int) -> int:
    tracemalloc.start()
    try:
        await timed_put(store, "bench/traced.bin", size)
        await timed_get(store, "bench/traced.bin", size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await store.delete("bench/traced.bin")
    return peak


async def main(args: argparse.Namespace) -> None:
    sizes = [int(s) * MB for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    stores: dict[str, ObjectStore] = {}
    async with AsyncExitStack() as stack:
        if "filesystem" in backends:
            directory = stack.enter_context(tempfile.TemporaryDirectory(dir=args.dir))
            stores["filesystem"] = FilesystemObjectStore(directory)
        if "s3" in backends:
            server = start_moto_server()
            stack.callback(server.stop)
            bucket = create_bucket(server.endpoint_url)
            s3 = S3ObjectStore(
                bucket,
                endpoint_url=server.endpoint_url,
                region=REGION,
                access_key_id=ACCESS_KEY_ID,
                secret_access_key=SECRET_ACCESS_KEY,
            )
            stack.push_async_callback(s3.close)
            stores["s3 (moto)"] = s3

        print(f"chunks in: {CHUNK // 1024} KiB; MB = 10^6 bytes; median of repetitions")
        for name, store in stores.items():
            budget = args.s3_budget if name.startswith("s3") else None
            await measure(name, store, sizes, budget)

        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"peak RSS of this process: {rss_kib / 1024:.1f} MiB")
        for name, store in stores.items():
            peak = await traced_peak(store, 100 * MB)
            print(f"tracemalloc peak, 100 MB put+get, {name}: {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="filesystem,s3")
    parser.add_argument("--sizes", default="1,10,100,1000", help="object sizes in MB")
    parser.add_argument("--dir", default=None, help="parent of the filesystem store's directory")
    parser.add_argument("--s3-budget", type=float, default=120.0, help="seconds for 1 GB on S3")
    anyio.run(main, parser.parse_args())
