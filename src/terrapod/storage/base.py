"""The object-store contract every back-end implements, and the pieces they share.

Objects are opaque byte strings addressed by a key built in :mod:`terrapod.storage.keys`.
Everything is streamed: a back-end never holds a whole object in memory, so a multi-gigabyte
state file, log or provider archive costs a few megabytes of RAM to write or read.

Blocking I/O (file system calls, boto3) runs in worker threads through
:func:`anyio.to_thread.run_sync`; the event loop only shuffles chunk references.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import anyio.to_thread

# Size of the chunks an ObjectStream yields. Large enough that the per-chunk thread hop is
# noise (a hop costs tens of microseconds), small enough that many concurrent downloads
# stay cheap.
READ_CHUNK_SIZE = 1024 * 1024


class StorageError(Exception):
    """Base of every error the object store raises on purpose."""


class InvalidKey(StorageError, ValueError):
    """The key (or prefix) is not one :mod:`terrapod.storage.keys` could have built."""


class ObjectNotFound(StorageError):
    """No object exists under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object not found: {key}")
        self.key = key


class ObjectTooLarge(StorageError):
    """A streamed write went past its ``max_size``; nothing was stored."""

    def __init__(self, key: str, max_size: int) -> None:
        super().__init__(f"object {key} is larger than {max_size} bytes")
        self.key = key
        self.max_size = max_size


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What the store knows about one stored object.

    ``md5`` is the lowercase hex MD5 of the content. :meth:`ObjectStore.put` always sets it
    (it is computed while streaming). :meth:`ObjectStore.head` and :meth:`ObjectStore.list`
    set it only when the back-end has it without reading the object, and give ``None``
    otherwise: S3 cannot attach the MD5 to an object uploaded in several parts (it is only
    known once the last part is sent), and S3 listings carry no metadata at all. Callers that
    need the MD5 of an object later record the value ``put`` returned.

    ``updated_at`` is timezone-aware UTC.
    """

    key: str
    size: int
    md5: str | None
    updated_at: datetime

    @property
    def etag(self) -> str | None:
        """Alias of ``md5`` (what HTTP and S3 call an entity tag for a single-part object)."""
        return self.md5


class ObjectStream:
    """An open object: an async iterator of ``bytes`` chunks with its size known up front.

    Returned by :meth:`ObjectStore.open` *after* the object was found, so a caller can answer
    404 (or set ``Content-Length``) before it starts a response. ``length`` is the number of
    bytes the iterator will yield (the requested range clipped to the object); ``size`` is the
    whole object's size. The stream reads one fixed version of the object: an overwrite that
    lands while it is being read does not change what it yields.

    The underlying file or HTTP response is released when the iterator is exhausted, on
    :meth:`aclose`, on leaving ``async with``, or at the latest when the stream is
    garbage-collected.
    """

    def __init__(
        self,
        *,
        key: str,
        size: int,
        offset: int,
        length: int,
        updated_at: datetime,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        chunk_size: int = READ_CHUNK_SIZE,
    ) -> None:
        self.key = key
        self.size = size
        self.offset = offset
        self.length = length
        self.updated_at = updated_at
        # ``read(n)`` is blocking and returns up to n bytes (b"" at end); it always runs in a
        # worker thread. ``close()`` is blocking too but cheap enough to call from __del__.
        self._read = read
        self._close = close
        self._remaining = length
        self._chunk_size = chunk_size
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0 or self._closed:
            await self.aclose()
            raise StopAsyncIteration
        want = min(self._chunk_size, self._remaining)
        try:
            data = await anyio.to_thread.run_sync(self._read, want)
        except BaseException:
            await self.aclose()
            raise
        if not data:
            await self.aclose()
            raise StorageError(
                f"object {self.key} ended {self._remaining} bytes early (modified outside "
                "the store?)"
            )
        self._remaining -= len(data)
        return data

    async def aclose(self) -> None:
        """Release the underlying file or connection; idempotent."""
        if not self._closed:
            self._closed = True
            await anyio.to_thread.run_sync(self._close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            # Nothing useful can be done with an error at collection time.
            with contextlib.suppress(Exception):
                self._close()


@runtime_checkable
class ObjectStore(Protocol):
    """Streaming, atomic key/value storage for large opaque objects.

    Every key is validated (see :func:`terrapod.storage.keys.validate_key`); a bad one raises
    :class:`InvalidKey`. Keys are always built by :mod:`terrapod.storage.keys`, which never
    makes one key a "directory" prefix of another (``a/b`` and ``a/b/c``): the filesystem
    back-end cannot hold both.
    """

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> ObjectInfo:
        """Store the concatenated ``chunks`` under ``key``, replacing any previous object.

        Atomic: readers see the previous object (or none) until the new one is complete,
        and never a partial one. If ``chunks`` raises, the error propagates unchanged and the
        previous object is untouched. If more than ``max_size`` bytes arrive,
        :class:`ObjectTooLarge` is raised as soon as that is known, the rest of ``chunks`` is
        not consumed, and nothing of the new object remains. Returns the new object's info,
        with ``md5`` always set.
        """
        ...

    async def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """:meth:`put` for data already in memory."""
        ...

    async def open(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectStream:
        """Open ``key`` for reading ``length`` bytes (default: to the end) from ``offset``.

        Raises :class:`ObjectNotFound` here, before any byte is yielded. A range past the end
        is clipped: an ``offset`` at or beyond the size gives an empty stream (a log reader
        that has caught up). Negative ``offset`` or ``length`` raise :class:`ValueError`.
        """
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or ``None`` when it does not exist."""
        ...

    async def get_bytes(self, key: str) -> bytes:
        """The whole object in memory. Only for objects known to be small (a few MB at most:
        JSON documents, small state files); stream everything else with :meth:`open`.
        Raises :class:`ObjectNotFound`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with ``prefix``.

        ``prefix`` must end with ``/`` (a whole "directory"), so that removing
        ``workspaces/ws-1/`` can never touch ``workspaces/ws-12/``.
        """
        ...

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a plain string prefix; ``""`` for
        all), in lexicographic key order. ``md5`` may be ``None`` (see :class:`ObjectInfo`).
        """
        ...

    async def check(self) -> None:
        """Raise if the store cannot serve reads and writes (used by ``/ready``)."""
        ...

    async def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
        ...


class Hasher(Protocol):
    """The part of :mod:`hashlib`'s hash objects the back-ends use."""

    def update(self, data: bytes | bytearray, /) -> None: ...

    def hexdigest(self) -> str: ...


class SizeLimiter:
    """Counts bytes of a streamed write and enforces ``max_size``.

    Kept in the event loop (an integer add per chunk); hashing happens in worker threads.
    """

    def __init__(self, key: str, max_size: int | None) -> None:
        self.key = key
        self.max_size = max_size
        self.size = 0

    def add(self, n: int) -> None:
        self.size += n
        if self.max_size is not None and self.size > self.max_size:
            raise ObjectTooLarge(self.key, self.max_size)


async def single_chunk(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a one-chunk async iterable (for ``put_bytes``)."""
    yield data
