"""Object store on any S3-compatible service: the production shape's back-end.

boto3 is synchronous, so every call runs in a worker thread; the event loop only passes chunk
references around. Nothing reads a whole large object into memory:

* **Writes** buffer at most about two parts (``part_size``, default 8 MiB). An object that
  fits in one part is sent with a single ``PutObject``; a larger one becomes a multipart
  upload, with part *n* uploading while part *n+1* is being received. A failed, cancelled or
  oversized write aborts the multipart upload, so no part is billed or left behind, and the
  previous object stays in place (S3 replaces an object only when the upload completes).
  S3 allows 10,000 parts, so the largest object is 10,000 times ``part_size`` (78 GiB at 8 MiB).
* **Reads** use ``GetObject`` (with a ``Range`` header for offset/length) and read the body in
  1 MiB chunks.

The MD5 of the content is attached as ``x-amz-meta-md5`` to objects stored with a single
``PutObject``; multipart uploads cannot carry it (it is known only after the last part), so
:meth:`S3ObjectStore.head` gives ``md5=None`` for them. ``put`` always returns it.

Settings: ``storage.s3.{bucket,endpoint_url,region,access_key_id,secret_access_key,prefix,
multipart_chunk_size}``. Without keys, boto3's default credential chain applies (instance
roles, IRSA, environment).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from terrapod.storage.base import (
    Hasher,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStream,
    SizeLimiter,
    StorageError,
    single_chunk,
)
from terrapod.storage.keys import validate_key, validate_prefix

if TYPE_CHECKING:
    from terrapod.config import S3Settings

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MD5_METADATA = "md5"
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_DELETE_BATCH = 1000  # DeleteObjects' limit


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


async def _parts(
    chunks: AsyncIterable[bytes], part_size: int, limiter: SizeLimiter
) -> AsyncGenerator[bytearray, None]:
    """Cut ``chunks`` into parts of exactly ``part_size`` bytes (the last one shorter; one
    empty part for an empty body).

    Chunks are appended to a growing ``bytearray``: a received chunk is freed at once and a
    part is never joined (copied) again. Growth reallocates in place for large buffers
    (mremap), and a small object costs only its own size, not a whole part. Enforces the size
    limit chunk by chunk.
    """
    buffer = bytearray()
    yielded = False
    async for chunk in chunks:
        limiter.add(len(chunk))
        view = memoryview(chunk)
        while view:
            n = min(len(view), part_size - len(buffer))
            buffer += view[:n]
            view = view[n:]
            if len(buffer) == part_size:
                yield buffer
                yielded = True
                buffer = bytearray()
    if buffer or not yielded:
        yield buffer


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that made a task group fail (the group only wraps it)."""
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


class _Body:
    """Blocking reads from a GetObject body (for :class:`ObjectStream`)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, n: int) -> bytes:
        data: bytes = self._body.read(n)
        return data

    def close(self) -> None:
        self._body.close()


def _no_read(n: int) -> bytes:
    return b""


def _no_close() -> None:
    return None


class S3ObjectStore:
    """:class:`~terrapod.storage.base.ObjectStore` in ``bucket`` under ``prefix``."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        part_size: int = DEFAULT_PART_SIZE,
        max_pool_connections: int = 32,
        session: boto3.session.Session | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        prefix = prefix.strip("/")
        self._prefix = validate_prefix(prefix + "/") if prefix else ""
        self._bucket = bucket
        self._part_size = part_size
        config = Config(
            region_name=region,
            max_pool_connections=max_pool_connections,
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=120,
            # S3-compatible stores (MinIO, Ceph, R2, moto) do not all accept the CRC
            # trailers newer botocore adds by default; checksums only where the API demands
            # them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Path-style addressing works on every S3-compatible endpoint without wildcard
            # DNS; AWS itself keeps virtual-hosted style.
            s3={"addressing_style": "path"} if endpoint_url else {},
        )
        # A private Session unless one is given: boto3's default session is not safe to share
        # across threads. Passing one lets many stores share its loaded service models
        # (creating a client from a fresh session costs about half a second).
        session = session or boto3.session.Session()
        self._client: Any = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    @classmethod
    def from_settings(cls, s3: S3Settings) -> S3ObjectStore:
        if not s3.bucket:
            raise ValueError("storage.s3.bucket is not set")
        return cls(
            s3.bucket,
            endpoint_url=s3.endpoint_url,
            region=s3.region,
            access_key_id=s3.access_key_id,
            secret_access_key=(
                s3.secret_access_key.get_secret_value() if s3.secret_access_key else None
            ),
            prefix=s3.prefix,
            part_size=s3.multipart_chunk_size,
        )

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self._bucket!r}, prefix={self._prefix!r})"

    @property
    def client(self) -> Any:
        """The underlying boto3 client (for tests and tooling)."""
        return self._client

    def _full(self, key: str) -> str:
        return self._prefix + validate_key(key)

    # -- writing -----------------------------------------------------------------------------

    def _put_object(self, full: str, body: bytearray, md5: Hasher) -> str:
        md5.update(body)
        digest = md5.hexdigest()
        self._client.put_object(
            Bucket=self._bucket,
            Key=full,
            Body=body,
            ContentType="application/octet-stream",
            Metadata={MD5_METADATA: digest},
        )
        return digest

    def _upload_part(
        self, full: str, upload_id: str, number: int, holder: list[bytearray], md5: Hasher
    ) -> str:
        # The part travels in a list this thread empties: anyio's worker keeps its call's
        # arguments alive until a moment after the result is delivered, long enough for a
        # finished part to overlap the next two in memory.
        body = holder.pop()
        md5.update(body)
        response = self._client.upload_part(
            Bucket=self._bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body
        )
        return str(response["ETag"])

    def _abort(self, full: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=full, UploadId=upload_id)
        except (BotoCoreError, ClientError):
            # The bucket's lifecycle rule for incomplete uploads is the backstop.
            log.warning("could not abort multipart upload %s of %s", upload_id, full, exc_info=True)

    async def _multipart(
        self,
        full: str,
        pending: list[bytearray],
        rest: AsyncIterator[bytearray],
        md5: Hasher,
    ) -> None:
        """Upload ``pending`` and then ``rest`` as parts 1, 2, …; abort on any failure.

        ``pending`` is consumed (popped), so the caller holds no reference to a part once it
        is uploaded: memory stays at the part being uploaded plus the one being filled.
        """
        response = await anyio.to_thread.run_sync(
            lambda: self._client.create_multipart_upload(
                Bucket=self._bucket, Key=full, ContentType="application/octet-stream"
            )
        )
        upload_id: str = response["UploadId"]
        done: list[dict[str, Any]] = []

        # One uploader task behind an unbuffered channel: part n uploads while part n+1 is
        # being received, and the host cannot run further ahead than that. Parts (and md5
        # updates) go strictly in order.
        send, receive = anyio.create_memory_object_stream[tuple[int, bytearray]](0)

        async def uploader() -> None:
            async with receive:
                async for number, body in receive:
                    holder = [body]
                    del body  # the worker thread drops the last reference when done
                    etag = await anyio.to_thread.run_sync(
                        self._upload_part, full, upload_id, number, holder, md5
                    )
                    done.append({"ETag": etag, "PartNumber": number})

        try:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(uploader)
                    async with send:
                        number = 0
                        while pending:
                            number += 1
                            await send.send((number, pending.pop(0)))
                        async for part in rest:
                            number += 1
                            await send.send((number, part))
            except BaseExceptionGroup as group:
                # The task group wraps whatever failed (the body iterator, ObjectTooLarge, a
                # part upload); callers expect that error itself.
                error = _first_error(group)
                raise error from error.__cause__
            await anyio.to_thread.run_sync(
                lambda: self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                )
            )
        except BaseException:
            # Shielded: a cancelled upload must still be aborted.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._abort, full, upload_id)
            raise

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> ObjectInfo:
        full = self._full(key)
        limiter = SizeLimiter(key, max_size)
        md5 = hashlib.md5(usedforsecurity=False)
        async with aclosing(_parts(chunks, self._part_size, limiter)) as parts:
            pending = [await anext(parts)]  # _parts always yields at least once
            following = await anext(parts, None)
            if following is None:
                digest = await anyio.to_thread.run_sync(self._put_object, full, pending.pop(), md5)
            else:
                pending.append(following)
                del following
                await self._multipart(full, pending, parts, md5)
                digest = md5.hexdigest()
        # S3 does not return LastModified from a write; our clock is within a second of it.
        return ObjectInfo(key=key, size=limiter.size, md5=digest, updated_at=datetime.now(UTC))

    async def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return await self.put(key, single_chunk(data))

    # -- reading -----------------------------------------------------------------------------

    def _head(self, key: str, full: str) -> ObjectInfo | None:
        try:
            response = self._client.head_object(Bucket=self._bucket, Key=full)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            raise
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            md5=response.get("Metadata", {}).get(MD5_METADATA),
            updated_at=response["LastModified"].astimezone(UTC),
        )

    async def head(self, key: str) -> ObjectInfo | None:
        full = self._full(key)
        return await anyio.to_thread.run_sync(self._head, key, full)

    def _empty_stream(self, key: str, full: str, offset: int) -> ObjectStream:
        info = self._head(key, full)
        if info is None:
            raise ObjectNotFound(key)
        return ObjectStream(
            key=key,
            size=info.size,
            offset=min(offset, info.size),
            length=0,
            updated_at=info.updated_at,
            read=_no_read,
            close=_no_close,
        )

    def _open(self, key: str, full: str, offset: int, length: int | None) -> ObjectStream:
        if length == 0:
            return self._empty_stream(key, full, offset)
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": full}
        ranged = offset > 0 or length is not None
        if ranged:
            end = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{end}"
        try:
            response = self._client.get_object(**kwargs)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from exc
            if code in ("InvalidRange", "416"):
                # The offset is at or past the end (a log reader that has caught up).
                return self._empty_stream(key, full, offset)
            raise
        count = int(response["ContentLength"])
        size, start = count, 0
        content_range = response.get("ContentRange")
        if ranged and content_range:
            match = _CONTENT_RANGE.fullmatch(content_range)
            if match is None:
                response["Body"].close()
                raise StorageError(f"unexpected Content-Range {content_range!r} for {key}")
            start, size = int(match.group(1)), int(match.group(3))
        elif ranged and offset > 0:
            # Some S3-compatible stores ignore a Range covering the whole object and answer
            # 200; any other case would be a protocol error.
            response["Body"].close()
            raise StorageError(f"store ignored the Range request for {key}")
        body = _Body(response["Body"])
        return ObjectStream(
            key=key,
            size=size,
            offset=start,
            length=count,
            updated_at=response["LastModified"].astimezone(UTC),
            read=body.read,
            close=body.close,
        )

    async def open(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectStream:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        full = self._full(key)
        return await anyio.to_thread.run_sync(self._open, key, full, offset, length)

    async def get_bytes(self, key: str) -> bytes:
        """The whole object in memory; only for small objects (see the protocol)."""
        async with await self.open(key) as stream:
            return b"".join([chunk async for chunk in stream])

    # -- deleting and listing ------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        full = self._full(key)
        await anyio.to_thread.run_sync(
            lambda: self._client.delete_object(Bucket=self._bucket, Key=full)
        )

    def _list_page(self, full_prefix: str, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": full_prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page: dict[str, Any] = self._client.list_objects_v2(**kwargs)
        return page

    async def _pages(self, prefix: str) -> AsyncGenerator[list[dict[str, Any]], None]:
        full_prefix = self._prefix + validate_prefix(prefix)
        token: str | None = None
        while True:
            page = await anyio.to_thread.run_sync(self._list_page, full_prefix, token)
            yield page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def _delete_batch(self, keys: list[str]) -> None:
        response = self._client.delete_objects(
            Bucket=self._bucket,
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
        )
        errors = response.get("Errors") or []
        if errors:
            raise StorageError(
                f"could not delete {len(errors)} objects, first: {errors[0].get('Key')}: "
                f"{errors[0].get('Message')}"
            )

    async def delete_prefix(self, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise InvalidKey(f"delete_prefix needs a prefix ending with '/', got {prefix!r}")
        async with aclosing(self._pages(prefix)) as pages:
            async for contents in pages:
                keys = [item["Key"] for item in contents]
                for i in range(0, len(keys), _DELETE_BATCH):
                    await anyio.to_thread.run_sync(self._delete_batch, keys[i : i + _DELETE_BATCH])

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        async with aclosing(self._pages(prefix)) as pages:
            async for contents in pages:
                for item in contents:
                    key = item["Key"][len(self._prefix) :]
                    try:
                        validate_key(key)
                    except InvalidKey:
                        continue  # not written by the store (the filesystem back-end agrees)
                    yield ObjectInfo(
                        key=key,
                        size=int(item["Size"]),
                        md5=None,  # listings carry no metadata; see ObjectInfo
                        updated_at=item["LastModified"].astimezone(UTC),
                    )

    # -- health ------------------------------------------------------------------------------

    def _check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 bucket {self._bucket!r} is not reachable: {exc}") from exc

    async def check(self) -> None:
        await anyio.to_thread.run_sync(self._check)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._client.close)
