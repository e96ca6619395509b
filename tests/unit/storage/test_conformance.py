"""The ObjectStore contract, run against every back-end (filesystem and S3 on a moto server)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from terrapod.storage import keys
from terrapod.storage.base import (
    InvalidKey,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
)
from tests.unit.storage.conftest import PART_SIZE, Probe

MiB = 1024 * 1024


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """``data`` the way an ASGI server delivers a request body."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def failing_after(data: bytes, error: Exception) -> AsyncIterator[bytes]:
    async for chunk in chunked(data):
        yield chunk
    raise error


async def read_all(
    store: ObjectStore, key: str, *, offset: int = 0, length: int | None = None
) -> bytes:
    async with await store.open(key, offset=offset, length=length) as stream:
        return b"".join([chunk async for chunk in stream])


# -- round trips ----------------------------------------------------------------------------


async def test_put_then_read_back(store: ObjectStore) -> None:
    data = os.urandom(300_000)
    before = datetime.now(UTC) - timedelta(seconds=5)

    info = await store.put("a/b/object.bin", chunked(data))

    assert (info.key, info.size, info.md5) == ("a/b/object.bin", len(data), md5(data))
    assert info.updated_at.tzinfo is not None and info.updated_at.utcoffset() == timedelta(0)
    assert before <= info.updated_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert await store.get_bytes("a/b/object.bin") == data
    assert await read_all(store, "a/b/object.bin") == data


async def test_put_bytes_and_empty_object(store: ObjectStore) -> None:
    info = await store.put_bytes("empty.bin", b"")

    assert (info.size, info.md5) == (0, md5(b""))
    assert await store.get_bytes("empty.bin") == b""
    async with await store.open("empty.bin") as stream:
        assert (stream.size, stream.length) == (0, 0)
        assert [c async for c in stream] == []
    head = await store.head("empty.bin")
    assert head is not None and head.size == 0


async def test_multipart_sized_object_round_trips(store: ObjectStore) -> None:
    data = os.urandom(2 * PART_SIZE + 12345)  # three parts on S3

    info = await store.put("big/three-parts.bin", chunked(data))

    assert (info.size, info.md5) == (len(data), md5(data))
    assert md5(await read_all(store, "big/three-parts.bin")) == md5(data)


async def test_overwrite_replaces_content(store: ObjectStore) -> None:
    await store.put_bytes("state.tfstate", b"version one")
    info = await store.put_bytes("state.tfstate", b"v2")

    assert await store.get_bytes("state.tfstate") == b"v2"
    head = await store.head("state.tfstate")
    assert head is not None and (head.size, head.md5) == (2, info.md5)


async def test_chunks_are_between_64k_and_1m(store: ObjectStore) -> None:
    data = os.urandom(3 * MiB + 7)
    await store.put_bytes("chunks.bin", data)

    async with await store.open("chunks.bin") as stream:
        sizes = [len(c) async for c in stream]

    assert sum(sizes) == len(data)
    assert all(64 * 1024 <= s <= MiB for s in sizes[:-1]) and max(sizes) <= MiB


# -- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, None),
        (10, None),
        (10, 100),
        (0, 1),
        (MiB - 3, 10),  # spans a read-chunk boundary
        (0, 0),
        (1_500_000 - 5, 100),  # clipped at the end
        (1_500_000 - 1, None),
    ],
)
async def test_offset_and_length(store: ObjectStore, offset: int, length: int | None) -> None:
    data = os.urandom(1_500_000)
    await store.put_bytes("runs/run-x/plan.log", data)
    end = None if length is None else offset + length

    async with await store.open("runs/run-x/plan.log", offset=offset, length=length) as stream:
        body = b"".join([c async for c in stream])
        assert (stream.size, stream.offset, stream.length) == (len(data), offset, len(body))

    assert body == data[offset:end]


@pytest.mark.parametrize("offset", [5, 6, 1000])
async def test_offset_at_or_past_end_is_empty(store: ObjectStore, offset: int) -> None:
    # go-tfe's log reader asks for offset == bytes consumed so far until the log grows.
    await store.put_bytes("log", b"12345")

    async with await store.open("log", offset=offset) as stream:
        assert stream.length == 0
        assert [c async for c in stream] == []
    assert await read_all(store, "log", offset=offset, length=10) == b""


async def test_range_of_empty_object(store: ObjectStore) -> None:
    await store.put_bytes("empty", b"")

    assert await read_all(store, "empty", offset=3) == b""
    assert await read_all(store, "empty", offset=0, length=5) == b""


async def test_negative_range_is_rejected(store: ObjectStore) -> None:
    await store.put_bytes("x", b"abc")

    with pytest.raises(ValueError, match="negative"):
        await store.open("x", offset=-1)
    with pytest.raises(ValueError, match="negative"):
        await store.open("x", length=-1)


# -- head, delete, list ---------------------------------------------------------------------


async def test_head(store: ObjectStore) -> None:
    info = await store.put_bytes("h/one", b"hello")

    head = await store.head("h/one")

    assert head is not None
    assert (head.key, head.size, head.md5) == ("h/one", 5, md5(b"hello"))
    assert head.etag == head.md5
    assert abs(head.updated_at - info.updated_at) < timedelta(seconds=5)
    assert head.updated_at.utcoffset() == timedelta(0)


async def test_head_of_multipart_object_has_size_and_md5_if_known(store: ObjectStore) -> None:
    data = os.urandom(PART_SIZE + 1)
    info = await store.put("mp", chunked(data))

    head = await store.head("mp")

    assert head is not None and head.size == len(data)
    assert head.md5 in (None, info.md5)  # S3 cannot attach the MD5 to a multipart upload


async def test_missing_key(store: ObjectStore) -> None:
    assert await store.head("no/such/key") is None
    with pytest.raises(ObjectNotFound):
        await store.open("no/such/key")
    with pytest.raises(ObjectNotFound):
        await store.open("no/such/key", offset=10, length=0)
    with pytest.raises(ObjectNotFound):
        await store.get_bytes("no/such/key")


async def test_a_prefix_is_not_an_object(store: ObjectStore) -> None:
    await store.put_bytes("dir/file", b"x")

    assert await store.head("dir") is None
    with pytest.raises(ObjectNotFound):
        await store.open("dir")
    await store.delete("dir")
    assert await store.get_bytes("dir/file") == b"x"


async def test_delete_is_idempotent(store: ObjectStore, probe: Probe) -> None:
    await store.put_bytes("d/e/f", b"x")

    await store.delete("d/e/f")
    await store.delete("d/e/f")
    await store.delete("never/existed")

    assert await store.head("d/e/f") is None
    assert probe.raw_entries() == []


KEYS = ["a-b/x", "a/b/1", "a/b/2", "a/c", "ab", "b/z"]


async def _fill(store: ObjectStore) -> None:
    for key in reversed(KEYS):
        await store.put_bytes(key, key.encode())


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", KEYS),
        ("a", ["a-b/x", "a/b/1", "a/b/2", "a/c", "ab"]),
        ("a/", ["a/b/1", "a/b/2", "a/c"]),
        ("a/b", ["a/b/1", "a/b/2"]),
        ("a/b/", ["a/b/1", "a/b/2"]),
        ("a/b/1", ["a/b/1"]),
        ("nothing/", []),
    ],
)
async def test_list_prefix_in_key_order(
    store: ObjectStore, prefix: str, expected: list[str]
) -> None:
    await _fill(store)

    listed = [info async for info in store.list(prefix)]

    assert [i.key for i in listed] == expected
    assert all(i.size == len(i.key) for i in listed)
    assert all(i.md5 in (None, md5(i.key.encode())) for i in listed)
    assert all(i.updated_at.utcoffset() == timedelta(0) for i in listed)


async def test_list_many_objects(store: ObjectStore) -> None:
    # More than one filesystem listing batch (256).
    names = [f"many/{i:04d}" for i in range(300)]
    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(store.put_bytes, name, b"x")

    assert [info.key async for info in store.list("many/")] == names


async def test_delete_prefix(store: ObjectStore, probe: Probe) -> None:
    await _fill(store)

    await store.delete_prefix("a/")
    await store.delete_prefix("never/")

    assert [i.key async for i in store.list("")] == ["a-b/x", "ab", "b/z"]
    assert probe.raw_entries() == ["a-b/x", "ab", "b/z"]


async def test_delete_prefix_needs_a_whole_directory(store: ObjectStore) -> None:
    await _fill(store)

    with pytest.raises(InvalidKey):
        await store.delete_prefix("a")  # would also hit "ab" and "a-b/x"
    with pytest.raises(InvalidKey):
        await store.delete_prefix("")

    assert [i.key async for i in store.list("")] == KEYS


async def test_workspace_prefix_deletes_only_that_workspace(store: ObjectStore) -> None:
    mine = keys.state_version("ws-1", "sv-a")
    other = keys.state_version("ws-12", "sv-b")
    await store.put_bytes(mine, b"1")
    await store.put_bytes(other, b"2")

    await store.delete_prefix(keys.workspace_prefix("ws-1"))

    assert await store.head(mine) is None
    assert await store.get_bytes(other) == b"2"


# -- limits and atomicity -------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 3 * PART_SIZE])  # single put and multipart on S3
async def test_max_size_leaves_nothing_behind(store: ObjectStore, probe: Probe, size: int) -> None:
    consumed = 0
    limit = size - 1 if size < PART_SIZE else 2 * PART_SIZE + 10

    async def body() -> AsyncIterator[bytes]:
        nonlocal consumed
        chunk = b"x" * 100 if size < PART_SIZE else b"x" * MiB
        for _ in range(size // len(chunk)):
            consumed += len(chunk)
            yield chunk

    with pytest.raises(ObjectTooLarge) as caught:
        await store.put("too/big", body(), max_size=limit)

    assert caught.value.max_size == limit
    assert consumed <= limit + MiB  # stopped reading as soon as the limit was passed
    assert await store.head("too/big") is None
    assert probe.raw_entries() == []
    assert probe.pending_uploads() == []


async def test_max_size_exactly_is_fine(store: ObjectStore) -> None:
    info = await store.put("exact", chunked(b"y" * 5000), max_size=5000)

    assert info.size == 5000


@pytest.mark.parametrize("size", [1000, 2 * PART_SIZE + 1])
async def test_failed_write_keeps_previous_version(
    store: ObjectStore, probe: Probe, size: int
) -> None:
    await store.put_bytes("ws/state", b"previous")

    with pytest.raises(RuntimeError, match="connection reset"):
        await store.put(
            "ws/state", failing_after(os.urandom(size), RuntimeError("connection reset"))
        )

    assert await store.get_bytes("ws/state") == b"previous"
    assert probe.raw_entries() == ["ws/state"]
    assert probe.pending_uploads() == []


async def test_failed_first_write_leaves_no_object(store: ObjectStore, probe: Probe) -> None:
    with pytest.raises(OSError, match="gone"):
        await store.put("new/obj", failing_after(os.urandom(PART_SIZE + 5), OSError("gone")))

    assert await store.head("new/obj") is None
    assert probe.raw_entries() == []
    assert probe.pending_uploads() == []


async def test_cancelled_write_leaves_nothing_behind(store: ObjectStore, probe: Probe) -> None:
    await store.put_bytes("c/obj", b"previous")

    async def stalls() -> AsyncIterator[bytes]:
        yield os.urandom(PART_SIZE + 1)  # enough to start a multipart upload on S3
        yield b"more"
        await anyio.sleep_forever()
        yield b"never"

    with anyio.move_on_after(1.0) as scope:
        await store.put("c/obj", stalls())

    assert scope.cancelled_caught
    assert await store.get_bytes("c/obj") == b"previous"
    assert probe.raw_entries() == ["c/obj"]
    assert probe.pending_uploads() == []


async def test_open_stream_keeps_the_version_it_opened(store: ObjectStore) -> None:
    old, new = os.urandom(3 * MiB), os.urandom(MiB)
    await store.put_bytes("v", old)

    async with await store.open("v") as stream:
        first = await anext(stream)
        await store.put_bytes("v", new)
        rest = b"".join([c async for c in stream])

    assert first + rest == old
    assert await store.get_bytes("v") == new


# -- keys -----------------------------------------------------------------------------------

BAD_KEYS = [
    "",
    "/abs",
    "a/../b",
    "..",
    "../x",
    "a/./b",
    "a//b",
    "a/",
    "a\\b",
    "a\x00b",
    "line\nbreak",
    ".hidden",
    "dir/.tp-123.tmp",
    "x" * 1025,
]


@pytest.mark.parametrize("bad", BAD_KEYS)
async def test_invalid_keys_are_rejected_everywhere(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put_bytes(bad, b"x")
    with pytest.raises(InvalidKey):
        await store.put(bad, chunked(b"x"))
    with pytest.raises(InvalidKey):
        await store.open(bad)
    with pytest.raises(InvalidKey):
        await store.head(bad)
    with pytest.raises(InvalidKey):
        await store.get_bytes(bad)
    with pytest.raises(InvalidKey):
        await store.delete(bad)


@pytest.mark.parametrize("bad", ["/", "/a/", "../", "a/../", "a//"])
async def test_invalid_prefixes_are_rejected(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidKey):
        [i async for i in store.list(bad)]
    with pytest.raises(InvalidKey):
        await store.delete_prefix(bad)


async def test_unicode_and_odd_but_valid_keys(store: ObjectStore) -> None:
    key = "registry/modules/naïve name/v1.0.0+build/module.tar.gz"

    await store.put_bytes(key, b"zip")

    assert await store.get_bytes(key) == b"zip"
    assert [i.key async for i in store.list("registry/")] == [key]


# -- health ---------------------------------------------------------------------------------


async def test_check_passes_on_a_healthy_store(store: ObjectStore, probe: Probe) -> None:
    await store.check()

    assert probe.raw_entries() == []  # the probe file is cleaned up


# -- memory ---------------------------------------------------------------------------------

STREAM_SIZE = 200 * MiB
# S3 holds at most two parts (one uploading, one filling); the filesystem a 1 MiB batch and a
# 1 MiB read. The margin is for boto and the event loop, not for a third part.
MEMORY_BOUND = 2 * PART_SIZE + 4 * MiB


async def test_200mb_object_streams_in_bounded_memory(store: ObjectStore) -> None:
    # One pre-allocated chunk yielded over and over: the only large allocations tracemalloc
    # can see are the store's own buffers. (The S3 server runs in another process.)
    chunk = os.urandom(MiB)
    count = STREAM_SIZE // len(chunk)
    expected = hashlib.md5(usedforsecurity=False)
    for _ in range(count):
        expected.update(chunk)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield chunk

    tracemalloc.start()
    try:
        info = await store.put("big/200mb.bin", body())
        got = hashlib.md5(usedforsecurity=False)
        async with await store.open("big/200mb.bin") as stream:
            async for piece in stream:
                got.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await store.delete("big/200mb.bin")

    assert info.size == STREAM_SIZE
    assert info.md5 == got.hexdigest() == expected.hexdigest()
    assert peak < MEMORY_BOUND, f"peak traced memory {peak / MiB:.1f} MiB"
