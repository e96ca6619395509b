"""What only one back-end can show: file-system containment and layout, S3 placement, and
building a store from Settings."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import anyio
import pytest

from terrapod.config import Settings
from terrapod.storage import build_object_store
from terrapod.storage.base import InvalidKey, ObjectNotFound, StorageError
from terrapod.storage.filesystem import MD5_XATTR, FilesystemObjectStore
from terrapod.storage.s3 import S3ObjectStore
from tests.fixtures.s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    create_bucket,
    s3_client,
)

# -- filesystem -----------------------------------------------------------------------------


@pytest.fixture
def fs(tmp_path: Path) -> FilesystemObjectStore:
    return FilesystemObjectStore(tmp_path / "objects")


async def test_symlinked_directory_cannot_lead_outside(
    fs: FilesystemObjectStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not serve")
    os.symlink(outside, Path(fs.root) / "evil")

    with pytest.raises(InvalidKey):
        await fs.put_bytes("evil/planted", b"x")
    with pytest.raises(InvalidKey):
        await fs.open("evil/secret")
    with pytest.raises(InvalidKey):
        await fs.head("evil/secret")

    assert sorted(os.listdir(outside)) == ["secret"]
    assert [i.key async for i in fs.list("")] == []


async def test_symlinked_file_is_not_an_object(fs: FilesystemObjectStore, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"do not serve")
    os.symlink(target, Path(fs.root) / "link")

    assert await fs.head("link") is None
    with pytest.raises(ObjectNotFound):
        await fs.open("link")


async def test_files_are_private_and_carry_md5(fs: FilesystemObjectStore) -> None:
    await fs.put_bytes("workspaces/ws-1/state.tfstate", b"secret state")
    path = anyio.Path(fs.root, "workspaces", "ws-1", "state.tfstate")

    assert stat.S_IMODE((await path.stat()).st_mode) == 0o600
    assert stat.S_IMODE((await path.parent.stat()).st_mode) == 0o700
    assert os.getxattr(path, MD5_XATTR).decode() == hashlib.md5(b"secret state").hexdigest()


async def test_stray_temporary_files_are_invisible(fs: FilesystemObjectStore) -> None:
    await fs.put_bytes("d/real", b"x")
    await anyio.Path(fs.root, "d", ".tp-deadbeef.tmp").write_bytes(b"half-written by a crash")

    assert [i.key async for i in fs.list("")] == ["d/real"]


async def test_key_under_an_object_is_refused(fs: FilesystemObjectStore) -> None:
    await fs.put_bytes("a/b", b"object")
    await fs.put_bytes("x/y/z", b"object")

    with pytest.raises(InvalidKey):
        await fs.put_bytes("a/b/c", b"x")
    with pytest.raises(InvalidKey):
        await fs.put_bytes("x/y", b"x")

    assert [i.key async for i in fs.list("")] == ["a/b", "x/y/z"]


async def test_delete_prunes_empty_directories(fs: FilesystemObjectStore) -> None:
    await fs.put_bytes("p/q/r/one", b"1")
    await fs.put_bytes("p/two", b"2")

    await fs.delete("p/q/r/one")

    assert os.listdir(fs.root) == ["p"]
    assert os.listdir(Path(fs.root, "p")) == ["two"]
    await fs.put_bytes("p/q/r/one", b"again")  # directories come back on demand
    assert await fs.get_bytes("p/q/r/one") == b"again"


async def test_check_fails_when_root_is_unusable(fs: FilesystemObjectStore) -> None:
    await fs.check()
    os.rmdir(fs.root)
    await anyio.Path(fs.root).write_bytes(b"not a directory")

    with pytest.raises(StorageError, match="not writable"):
        await fs.check()


async def test_md5_is_none_without_xattr_support(fs: FilesystemObjectStore) -> None:
    fs._xattrs = False  # as on a file system without user xattrs

    info = await fs.put_bytes("k", b"v")
    head = await fs.head("k")

    assert info.md5 == hashlib.md5(b"v").hexdigest()
    assert head is not None and head.md5 is None


# -- S3 -------------------------------------------------------------------------------------


def _s3(endpoint: str, bucket: str, **kwargs: object) -> S3ObjectStore:
    return S3ObjectStore(
        bucket,
        endpoint_url=endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_s3_objects_live_under_the_prefix(moto_endpoint: str, s3_bucket: str) -> None:
    store = _s3(moto_endpoint, s3_bucket, prefix="/tenant-a/")
    try:
        await store.put_bytes("runs/run-1/plan.log", b"log")
        raw = store.client.head_object(Bucket=s3_bucket, Key="tenant-a/runs/run-1/plan.log")
    finally:
        await store.close()

    assert raw["ContentType"] == "application/octet-stream"
    assert raw["Metadata"]["md5"] == hashlib.md5(b"log").hexdigest()


async def test_s3_check_fails_for_a_missing_bucket(moto_endpoint: str) -> None:
    store = _s3(moto_endpoint, "no-such-bucket")
    try:
        with pytest.raises(StorageError, match="no-such-bucket"):
            await store.check()
    finally:
        await store.close()


def test_s3_part_size_has_a_floor(moto_endpoint: str) -> None:
    with pytest.raises(ValueError, match="part_size"):
        _s3(moto_endpoint, "b", part_size=1024)


# -- build_object_store ---------------------------------------------------------------------


async def test_build_filesystem_store_from_settings(tmp_path: Path) -> None:
    store = build_object_store(Settings(data_dir=tmp_path))

    assert isinstance(store, FilesystemObjectStore)
    assert Path(store.root) == (tmp_path / "objects").resolve()
    await store.check()


async def test_build_s3_store_from_settings(moto_endpoint: str) -> None:
    bucket = create_bucket(moto_endpoint)
    settings = Settings(
        storage={
            "backend": "s3",
            "s3": {
                "bucket": bucket,
                "endpoint_url": moto_endpoint,
                "access_key_id": ACCESS_KEY_ID,
                "secret_access_key": SECRET_ACCESS_KEY,
                "prefix": "terrapod",
            },
        }
    )

    store = build_object_store(settings)
    try:
        assert isinstance(store, S3ObjectStore)
        await store.check()
        await store.put_bytes("k", b"v")
        assert await store.get_bytes("k") == b"v"
    finally:
        await store.close()

    listing = s3_client(moto_endpoint).list_objects_v2(Bucket=bucket)
    keys = [o["Key"] for o in listing["Contents"]]
    assert keys == ["terrapod/k"]
