"""Untrusted tar archives: validated as a stream, extracted with no way out of their root.

Configuration tarballs come from clients (go-slug writes them: a gzip-compressed tar of regular
files, directories and relative symlinks). :func:`check_tarball` validates one without writing
anything, for upload handlers; :func:`extract_tarball` applies the same rules while extracting,
for the runner. Both read the archive once, front to back, never holding it in memory.

The rules: no absolute member names and no ``..`` components; no devices or fifos; symlinks and
hard links must resolve inside the root, *taking into account the links the archive itself
created earlier* (``a -> .`` followed by ``b -> a/..`` escapes); counts and sizes stay within
:class:`ArchiveLimits`. Extracted files never keep setuid/setgid bits or their owner: the
stdlib's ``tarfile.data_filter`` runs on every member as a second line of defence and gives files
mode 0644, or 0755 when the owner could execute them.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ArchiveLimits", "UnsafeArchive", "check_tarball", "extract_tarball"]

_GZIP_MAGIC = b"\x1f\x8b"
# Linux gives up after 40 symlink hops (ELOOP); resolving the same way keeps check and extract
# in agreement.
_MAX_LINK_HOPS = 40
_EXTENDED_HEADER_TYPES = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
    | {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
)
_MAX_EXTENDED_HEADER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may expand to. Exceeding any limit refuses the whole archive."""

    max_total_bytes: int = 512 * 1024**2
    """The sum of the (uncompressed) sizes of all regular files."""
    max_files: int = 20_000
    """Members of any kind: files, directories and links."""
    max_member_bytes: int = 256 * 1024**2
    """The size of any one file."""


class UnsafeArchive(ValueError):
    """The archive is corrupt, not a tar archive, or breaks a rule; the message names which
    rule and which member."""


def check_tarball(src: Path, limits: ArchiveLimits = ArchiveLimits()) -> int:
    """Validate the gzip-compressed or plain tar archive at ``src`` without writing anything.

    Returns the number of members (files, directories and links). Raises :class:`UnsafeArchive`
    on the first problem.
    """
    return _walk(src, None, limits)


def extract_tarball(
    src: Path,
    dest: Path,
    limits: ArchiveLimits = ArchiveLimits(),
) -> int:
    """Extract the archive at ``src`` into ``dest`` (created if missing; it should be empty)
    under the same rules as :func:`check_tarball`, and return the number of members.

    Raises :class:`UnsafeArchive` on the first problem; members before it have been written,
    so the caller discards ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    return _walk(src, dest.resolve(), limits)


def _walk(src: Path, dest: Path | None, limits: ArchiveLimits) -> int:
    tree = _VirtualTree()
    count = 0
    total_bytes = 0
    with src.open("rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if compressed else raw
        try:
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedHeaders) as archive:
                for member in archive:
                    count += 1
                    if count > limits.max_files:
                        raise UnsafeArchive(f"archive holds more than {limits.max_files} members")
                    if member.isreg():
                        if member.size > limits.max_member_bytes:
                            raise UnsafeArchive(
                                f"member {member.name!r} is {member.size} bytes, over the "
                                f"{limits.max_member_bytes}-byte limit for one file"
                            )
                        total_bytes += member.size
                        if total_bytes > limits.max_total_bytes:
                            raise UnsafeArchive(
                                f"archive expands to more than {limits.max_total_bytes} bytes "
                                f"(at member {member.name!r})"
                            )
                    tree.admit(member)
                    if dest is not None:
                        archive.extract(member, dest, filter=tarfile.data_filter)
        except tarfile.FilterError as exc:
            # Only reached if tarfile's rules are stricter than ours somewhere; its message
            # names the member.
            raise UnsafeArchive(str(exc)) from exc
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise UnsafeArchive(f"not a gzip-compressed tar archive ({exc})") from exc
    return count


class _BoundedHeaders(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header into memory whole, however big the header
    claims to be; real ones are a few hundred bytes, so refuse big ones before reading."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        # _proc_member is tarfile's documented hook for subclasses; typeshed omits it.
        if self.type in _EXTENDED_HEADER_TYPES and self.size > _MAX_EXTENDED_HEADER_BYTES:
            raise UnsafeArchive(f"archive has an extended header of {self.size} bytes")
        member: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]
        return member


class _VirtualTree:
    """The symlinks and files an archive has created so far, so that a member's path and a
    link's target resolve exactly as the filesystem would resolve them after extraction —
    without writing anything."""

    def __init__(self) -> None:
        self._symlinks: dict[tuple[str, ...], str] = {}
        self._files: set[tuple[str, ...]] = set()

    def admit(self, member: tarfile.TarInfo) -> None:
        """Record ``member`` or raise :class:`UnsafeArchive` if it breaks a rule."""
        name = member.name
        parts = name.split("/")
        if name.startswith("/"):
            raise UnsafeArchive(f"member {name!r} has an absolute path")
        if ".." in parts:
            raise UnsafeArchive(f"member {name!r} escapes the archive root")
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchive(f"member {name!r} is a device or fifo, not a file")

        parent = self._resolve(name, posixpath.dirname(name))
        if parent is None:
            raise UnsafeArchive(f"member {name!r} escapes the archive root through a symlink")
        if member.issym():
            target = member.linkname
            if target.startswith("/") or self._resolve(name, *parent, target) is None:
                raise UnsafeArchive(
                    f"symlink {name!r} points outside the archive root ({target!r})"
                )
            self._symlinks[(*parent, posixpath.basename(name))] = target
            return

        # Opening a path follows a symlink already sitting there, so resolve it whole.
        resolved = self._resolve(name, name)
        if resolved is None:
            raise UnsafeArchive(f"member {name!r} escapes the archive root through a symlink")
        if member.islnk():
            target = member.linkname
            linked = None if target.startswith("/") else self._resolve(name, target)
            if linked is None:
                raise UnsafeArchive(
                    f"hard link {name!r} points outside the archive root ({target!r})"
                )
            if linked not in self._files:
                raise UnsafeArchive(
                    f"hard link {name!r} points to {target!r}, which is not an earlier file"
                )
        if member.isreg() or member.islnk():
            self._files.add(resolved)

    def _resolve(self, member: str, *paths: str) -> tuple[str, ...] | None:
        """The joined ``paths`` (relative to the root) with every symlink followed, as path
        components; ``None`` if the path leaves the root."""
        pending = [part for path in reversed(paths) for part in reversed(path.split("/"))]
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.pop()
            if part in {"", "."}:
                continue
            if part == "..":
                if not resolved:
                    return None
                resolved.pop()
                continue
            resolved.append(part)
            target = self._symlinks.get(tuple(resolved))
            if target is not None:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise UnsafeArchive(f"member {member!r} resolves through a symlink loop")
                if target.startswith("/"):
                    return None
                resolved.pop()
                pending.extend(reversed(target.split("/")))
        return tuple(resolved)
