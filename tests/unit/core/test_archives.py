"""Untrusted tarballs: what go-slug produces extracts faithfully; every escape is refused."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from terrapod.archives import ArchiveLimits, UnsafeArchive, check_tarball, extract_tarball

Member = tuple[tarfile.TarInfo, bytes]


def _file(name: str, data: bytes = b"", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def _dir(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, b""


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def _special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, b""


def _tarball(path: Path, *members: Member, compress: bool = True) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buffer.getvalue()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def _check(src: Path, tmp_path: Path, limits: ArchiveLimits) -> int:
    return check_tarball(src, limits)


def _extract(src: Path, tmp_path: Path, limits: ArchiveLimits) -> int:
    return extract_tarball(src, tmp_path / "root", limits)


BOTH = pytest.mark.parametrize("validate", [_check, _extract], ids=["check", "extract"])
Validate = Callable[[Path, Path, ArchiveLimits], int]


def test_go_slug_layout_extracts_with_relative_symlinks_and_exec_bits(tmp_path: Path) -> None:
    src = _tarball(
        tmp_path / "cv.tar.gz",
        _file("main.tf", b'resource "terraform_data" "a" {}\n'),
        _dir("modules"),
        _dir("modules/net"),
        _file("modules/net/main.tf", b"# net\n"),
        _file("scripts/run.sh", b"#!/bin/sh\n", mode=0o775),
        _file("shared/common.tf", b"# common\n"),
        _link("modules/net/common.tf", "../../shared/common.tf"),
        _link("current", "."),
    )
    dest = tmp_path / "root"

    assert check_tarball(src) == 8
    assert extract_tarball(src, dest) == 8

    assert (dest / "main.tf").read_bytes() == b'resource "terraform_data" "a" {}\n'
    assert (dest / "modules/net/common.tf").is_symlink()
    assert (dest / "modules/net/common.tf").read_bytes() == b"# common\n"
    assert (dest / "current/main.tf").exists()
    assert stat.S_IMODE((dest / "scripts/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "main.tf").stat().st_mode) == 0o644


def test_plain_uncompressed_tar_is_accepted(tmp_path: Path) -> None:
    src = _tarball(tmp_path / "cv.tar", _file("main.tf", b"x"), compress=False)

    assert extract_tarball(src, tmp_path / "root") == 1
    assert (tmp_path / "root/main.tf").read_bytes() == b"x"


def test_check_writes_nothing(tmp_path: Path) -> None:
    src = _tarball(tmp_path / "cv.tar.gz", _dir("a"), _file("a/b.tf", b"x"))

    assert check_tarball(src) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv.tar.gz"]


def test_setuid_and_group_write_bits_are_dropped(tmp_path: Path) -> None:
    src = _tarball(tmp_path / "cv.tar.gz", _file("tool", b"#!/bin/sh\n", mode=0o6777))

    extract_tarball(src, tmp_path / "root")

    assert stat.S_IMODE((tmp_path / "root/tool").stat().st_mode) == 0o755


def test_hard_link_to_an_earlier_file_is_accepted(tmp_path: Path) -> None:
    src = _tarball(
        tmp_path / "cv.tar.gz",
        _file("a.tf", b"x"),
        _link("b.tf", "a.tf", kind=tarfile.LNKTYPE),
    )

    assert check_tarball(src) == 2
    extract_tarball(src, tmp_path / "root")
    assert (tmp_path / "root/b.tf").read_bytes() == b"x"


def test_empty_archive_has_no_members(tmp_path: Path) -> None:
    assert check_tarball(_tarball(tmp_path / "cv.tar.gz")) == 0


REFUSALS: dict[str, tuple[tuple[Member, ...], str]] = {
    "absolute path": ((_file("/etc/cron.d/x", b"x"),), "member '/etc/cron.d/x' has an absolute"),
    "dot-dot component": ((_file("../x", b"x"),), "member '../x' escapes the archive root"),
    "dot-dot inside": ((_file("a/../../x", b"x"),), "member 'a/../../x' escapes"),
    "absolute symlink": ((_link("l", "/etc/passwd"),), "symlink 'l' points outside"),
    "relative symlink out": ((_link("a/l", "../../x"),), "symlink 'a/l' points outside"),
    "symlink through earlier symlink": (
        (_link("here", "."), _link("sub/up", "../here/..")),
        "symlink 'sub/up' points outside",
    ),
    "file through a symlink to a parent": (
        (_dir("a"), _link("a/up", ".."), _link("a/up2", "up/.."), _file("a/up2/x", b"x")),
        "symlink 'a/up2' points outside",
    ),
    "symlink loop": (
        (_link("a", "b"), _link("b", "a"), _file("a/x", b"x")),
        "member 'a/x' resolves through a symlink loop",
    ),
    "hard link outside": (
        (_link("h", "../etc/passwd", kind=tarfile.LNKTYPE),),
        "hard link 'h' points outside",
    ),
    "absolute hard link": (
        (_link("h", "/etc/passwd", kind=tarfile.LNKTYPE),),
        "hard link 'h' points outside",
    ),
    "hard link to nothing earlier": (
        (_link("h", "later.tf", kind=tarfile.LNKTYPE), _file("later.tf", b"x")),
        "hard link 'h' points to 'later.tf', which is not an earlier file",
    ),
    "character device": ((_special("null", tarfile.CHRTYPE),), "member 'null' is a device"),
    "block device": ((_special("sda", tarfile.BLKTYPE),), "member 'sda' is a device"),
    "fifo": ((_special("pipe", tarfile.FIFOTYPE),), "member 'pipe' is a device or fifo"),
    "too many members": (
        tuple(_file(f"f{i}.tf") for i in range(4)),
        "archive holds more than 3 members",
    ),
    "one file too big": ((_file("big", b"x" * 101),), "member 'big' is 101 bytes, over the 100"),
    "too much in total": (
        (_file("a", b"x" * 100), _file("b", b"x" * 100), _file("c", b"x" * 100)),
        "archive expands to more than 250 bytes (at member 'c')",
    ),
}


@BOTH
@pytest.mark.parametrize("case", REFUSALS)
def test_unsafe_member_is_refused(case: str, validate: Validate, tmp_path: Path) -> None:
    members, message = REFUSALS[case]
    src = _tarball(tmp_path / "cv.tar.gz", *members)
    limits = ArchiveLimits(max_files=3, max_member_bytes=100, max_total_bytes=250)

    with pytest.raises(UnsafeArchive) as refused:
        validate(src, tmp_path, limits)

    assert message in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) in (["cv.tar.gz"], ["cv.tar.gz", "root"])


def _garbage(path: Path) -> Path:
    path.write_bytes(b"this is not an archive at all\n" * 40)
    return path


def _truncated_gzip(path: Path) -> Path:
    whole = _tarball(path, _file("main.tf", b"x" * 10_000)).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _corrupt_gzip(path: Path) -> Path:
    whole = bytearray(_tarball(path, _file("main.tf", bytes(range(256)) * 40)).read_bytes())
    whole[20:60] = b"\xff" * 40
    path.write_bytes(bytes(whole))
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


@BOTH
@pytest.mark.parametrize("make", [_garbage, _truncated_gzip, _corrupt_gzip, _empty])
def test_not_a_tarball_is_refused(
    make: Callable[[Path], Path], validate: Validate, tmp_path: Path
) -> None:
    src = make(tmp_path / "cv.tar.gz")

    with pytest.raises(UnsafeArchive, match="not a gzip-compressed tar archive"):
        validate(src, tmp_path, ArchiveLimits())


@BOTH
def test_huge_extended_header_is_refused_before_it_is_read(
    validate: Validate, tmp_path: Path
) -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 64 * 1024**2
    # The header claims 64 MiB but the archive ends long before: reading it whole would be the
    # mistake; refusing on the claimed size is the point.
    src = tmp_path / "cv.tar.gz"
    src.write_bytes(gzip.compress(header.tobuf(format=tarfile.USTAR_FORMAT) + b"k=v\n" * 100))

    with pytest.raises(UnsafeArchive, match="extended header of 67108864 bytes"):
        validate(src, tmp_path, ArchiveLimits())
