"""Object store on a local directory: the embedded shape's back-end.

An object ``a/b/c.log`` is the file ``<root>/a/b/c.log`` (mode 0600, directories 0700: state
files hold secrets). Writes go to a dot-file in the target's directory and are renamed over
the target with :func:`os.replace` once complete and fsynced, so a reader sees the old file or
the new one, never a mix; a reader that already opened the old file keeps reading it. The MD5
is stored in the ``user.terrapod.md5`` extended attribute of the temporary file *before* the
rename, so it changes atomically with the content; on file systems without user xattrs
:meth:`FilesystemObjectStore.head` reports ``md5=None``.

Every blocking call runs in a worker thread. Keys are validated and every resolved path is
checked to stay under the root (a symlinked directory cannot lead outside it; final
components are opened with ``O_NOFOLLOW``).

Temporary files of a process killed mid-write stay behind as ``.tp-*.tmp`` dot-files; they
are invisible to :meth:`list` and harmless.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import secrets
import shutil
import stat
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread

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

MD5_XATTR = "user.terrapod.md5"
_TEMP_PREFIX = ".tp-"
# Bytes buffered per write call: one thread hop per MiB instead of one per ASGI chunk.
WRITE_BATCH_SIZE = 1024 * 1024
_LIST_BATCH = 256
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, UTC)


async def _batches(
    chunks: AsyncIterable[bytes], threshold: int, limiter: SizeLimiter
) -> AsyncGenerator[list[bytes], None]:
    """Regroup ``chunks`` into lists of at least ``threshold`` bytes (the last may be smaller;
    one empty list for an empty body).

    ASGI servers hand request bodies over in ~64 KiB pieces; writing each separately would
    cost a thread hop per piece. Lists, not joined bytes, so nothing is copied. Enforces the
    size limit chunk by chunk, so an oversized upload is refused before more is buffered.
    """
    batch: list[bytes] = []
    buffered = 0
    yielded = False
    async for chunk in chunks:
        if not chunk:
            continue
        limiter.add(len(chunk))
        batch.append(chunk)
        buffered += len(chunk)
        if buffered >= threshold:
            yield batch
            yielded = True
            batch, buffered = [], 0
    if batch or not yielded:
        yield batch


class _FileReader:
    """Blocking positional reads from an open descriptor (for :class:`ObjectStream`)."""

    def __init__(self, fd: int, position: int) -> None:
        self._fd = fd
        self._position = position

    def read(self, n: int) -> bytes:
        data = os.pread(self._fd, n, self._position)
        self._position += len(data)
        return data

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class _TempFile:
    """The temporary file a ``put`` writes before renaming it into place."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def write(self, parts: list[bytes], md5: Hasher) -> None:
        # hashlib releases the GIL for large buffers, so hashing here, in the worker thread,
        # keeps the event loop free.
        for part in parts:
            md5.update(part)
            view = memoryview(part)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class FilesystemObjectStore:
    """:class:`~terrapod.storage.base.ObjectStore` under ``root`` (created if missing)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        write_batch_size: int = WRITE_BATCH_SIZE,
    ) -> None:
        Path(root).mkdir(parents=True, exist_ok=True, mode=0o700)
        # realpath once, so the containment check compares like with like.
        self._root = os.path.realpath(root)
        # fsync makes a completed put survive a power cut; tests may turn it off for speed.
        self._fsync = fsync
        self._write_batch_size = write_batch_size
        self._xattrs = hasattr(os, "setxattr")

    @property
    def root(self) -> str:
        return self._root

    def __repr__(self) -> str:
        return f"FilesystemObjectStore({self._root!r})"

    # -- paths -------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        validate_key(key)
        # Segments are validated (no '..', '/', '\\', NUL), so this join cannot climb out
        # lexically; _check_inside covers symlinks.
        return os.path.join(self._root, *key.split("/"))

    def _check_inside(self, path: str) -> None:
        real = os.path.realpath(path)
        if real != self._root and not real.startswith(self._root + os.sep):
            raise InvalidKey(f"{path!r} resolves outside the storage root")

    # -- writing -----------------------------------------------------------------------------

    def _create_temp(self, key: str, path: str) -> _TempFile:
        directory = os.path.dirname(path)
        # A concurrent delete may prune the directory between makedirs and open; retry.
        for _ in range(5):
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
                self._check_inside(directory)
                temp = os.path.join(directory, f"{_TEMP_PREFIX}{secrets.token_hex(8)}.tmp")
                fd = os.open(
                    temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW, 0o600
                )
                return _TempFile(fd, temp)
            except FileNotFoundError:
                continue
            except (FileExistsError, NotADirectoryError) as exc:
                raise InvalidKey(f"key {key!r} lies under an existing object") from exc
        raise StorageError(f"could not create a temporary file in {directory!r}")

    def _commit(self, key: str, temp: _TempFile, path: str, md5: str) -> os.stat_result:
        if self._xattrs:
            try:
                os.setxattr(temp.fd, MD5_XATTR, md5.encode())
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                    raise
                self._xattrs = False  # this file system has no user xattrs; stop trying
        if self._fsync:
            os.fsync(temp.fd)
        st = os.fstat(temp.fd)
        temp.close()
        try:
            os.replace(temp.path, path)
        except IsADirectoryError as exc:
            raise InvalidKey(f"key {key!r} is a prefix of other objects") from exc
        if self._fsync:
            self._fsync_dir(os.path.dirname(path))
        return st

    @staticmethod
    def _fsync_dir(directory: str) -> None:
        # Makes the rename itself durable. Best effort: not every platform can open a
        # directory for fsync.
        try:
            fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_size: int | None = None
    ) -> ObjectInfo:
        path = self._path(key)
        limiter = SizeLimiter(key, max_size)
        md5 = hashlib.md5(usedforsecurity=False)
        temp = await anyio.to_thread.run_sync(self._create_temp, key, path)
        try:
            async with aclosing(_batches(chunks, self._write_batch_size, limiter)) as batches:
                async for batch in batches:
                    await anyio.to_thread.run_sync(temp.write, batch, md5)
            digest = md5.hexdigest()
            st = await anyio.to_thread.run_sync(self._commit, key, temp, path, digest)
        except BaseException:
            # Shielded: a cancelled upload must still remove its temporary file.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(temp.discard)
            raise
        return ObjectInfo(key=key, size=limiter.size, md5=digest, updated_at=_mtime(st))

    async def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return await self.put(key, single_chunk(data))

    # -- reading -----------------------------------------------------------------------------

    def _open_fd(self, key: str, path: str) -> tuple[int, os.stat_result]:
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink: never ours
                raise ObjectNotFound(key) from exc
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(key)
            self._check_inside(os.path.dirname(path))
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    async def open(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectStream:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        path = self._path(key)
        fd, st = await anyio.to_thread.run_sync(self._open_fd, key, path)
        start = min(offset, st.st_size)
        available = st.st_size - start
        reader = _FileReader(fd, start)
        return ObjectStream(
            key=key,
            size=st.st_size,
            offset=start,
            length=available if length is None else min(length, available),
            updated_at=_mtime(st),
            read=reader.read,
            close=reader.close,
        )

    def _read_md5(self, path: str) -> str | None:
        if not self._xattrs:
            return None
        try:
            return os.getxattr(path, MD5_XATTR, follow_symlinks=False).decode()
        except OSError:
            return None

    def _head(self, key: str, path: str) -> ObjectInfo | None:
        try:
            st = os.stat(path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        self._check_inside(os.path.dirname(path))
        return ObjectInfo(key=key, size=st.st_size, md5=self._read_md5(path), updated_at=_mtime(st))

    async def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        return await anyio.to_thread.run_sync(self._head, key, path)

    async def get_bytes(self, key: str) -> bytes:
        """The whole object in memory; only for small objects (see the protocol)."""
        async with await self.open(key) as stream:
            return b"".join([chunk async for chunk in stream])

    # -- deleting ----------------------------------------------------------------------------

    def _prune(self, directory: str) -> None:
        # Remove directories left empty, up to (not including) the root. rmdir fails on a
        # non-empty directory, which is exactly where to stop; a put racing with this
        # recreates the directory (see _create_temp).
        while directory != self._root and directory.startswith(self._root + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    def _delete(self, path: str) -> None:
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        self._prune(os.path.dirname(path))

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await anyio.to_thread.run_sync(self._delete, path)

    def _delete_tree(self, directory: str) -> None:
        if not os.path.isdir(directory) or os.path.islink(directory):
            return
        self._check_inside(directory)
        # Rename first so every object under the prefix disappears at once, then remove at
        # leisure. The trash name is a dot-file, invisible to list().
        trash = os.path.join(self._root, f"{_TEMP_PREFIX}trash-{secrets.token_hex(8)}")
        try:
            os.rename(directory, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)
        self._prune(os.path.dirname(directory))

    async def delete_prefix(self, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise InvalidKey(f"delete_prefix needs a prefix ending with '/', got {prefix!r}")
        validate_prefix(prefix)
        directory = os.path.join(self._root, *prefix[:-1].split("/"))
        await anyio.to_thread.run_sync(self._delete_tree, directory)

    # -- listing -----------------------------------------------------------------------------

    def _walk(self, rel_dir: str, prefix: str) -> Iterator[ObjectInfo]:
        """Objects under ``rel_dir`` ("" or ending in "/") whose key starts with ``prefix``,
        in the byte order of their keys, like an S3 listing."""
        directory = os.path.join(self._root, *rel_dir.split("/")) if rel_dir else self._root
        try:
            with os.scandir(directory) as it:
                entries = [e for e in it if not e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting a directory as "name/" puts "a/x" after "a-b", matching the order of
        # full keys ('-' < '/').
        ordered: list[tuple[str, os.DirEntry[str], bool]] = []
        for entry in entries:
            try:
                validate_key(entry.name)
            except InvalidKey:
                continue  # not something the store wrote
            if entry.is_dir(follow_symlinks=False):
                ordered.append((entry.name + "/", entry, True))
            elif entry.is_file(follow_symlinks=False):
                ordered.append((entry.name, entry, False))
        ordered.sort(key=lambda item: item[0])
        for sort_name, entry, is_dir in ordered:
            rel = rel_dir + sort_name
            if is_dir:
                if rel.startswith(prefix) or prefix.startswith(rel):
                    yield from self._walk(rel, prefix)
            elif rel.startswith(prefix):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted while we were listing
                yield ObjectInfo(
                    key=rel, size=st.st_size, md5=self._read_md5(entry.path), updated_at=_mtime(st)
                )

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        start = prefix[: prefix.rfind("/") + 1]  # the deepest directory the prefix names
        walker = self._walk(start, prefix)
        while True:
            batch = await anyio.to_thread.run_sync(lambda: [*itertools.islice(walker, _LIST_BATCH)])
            for info in batch:
                yield info
            if len(batch) < _LIST_BATCH:
                return

    # -- health ------------------------------------------------------------------------------

    def _check(self) -> None:
        probe = os.path.join(self._root, f"{_TEMP_PREFIX}probe-{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"ok")
            finally:
                os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StorageError(f"storage directory {self._root} is not writable: {exc}") from exc

    async def check(self) -> None:
        await anyio.to_thread.run_sync(self._check)

    async def close(self) -> None:
        return None
