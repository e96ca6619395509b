"""The one module that builds object-store keys (DESIGN.md: "every object-store key is built in
one module").

A key is a ``/``-separated path of segments, e.g.
``workspaces/ws-3x1Q.../state-versions/sv-9aZ....tfstate``. Both back-ends validate every key
they are given with :func:`validate_key`; building keys only here keeps the layout in one
place, makes retention and deletion by prefix possible, and means no key ever holds a
client-supplied path.

Layout::

    workspaces/<ws-id>/state-versions/<sv-id>.tfstate     raw state
    workspaces/<ws-id>/state-versions/<sv-id>.json        JSON state (terraform show -json)
    configuration-versions/<cv-id>.tar.gz                 configuration tarball
    runs/<run-id>/plan.log                                plan log
    runs/<run-id>/apply.log                               apply log
    runs/<run-id>/plan.tfplan                             binary plan (for the apply phase)
    runs/<run-id>/plan.json                               JSON plan (terraform show -json)
    runs/<run-id>/plan-redacted.json                      JSON plan the CLI renders

A new kind of object gets a named builder here, with a docstring saying what it holds.
No key may be a "directory" prefix of another (``a/b`` and ``a/b/c``): the filesystem
back-end cannot hold both, so builders always end keys with a file-like final segment.
"""

from __future__ import annotations

import re

from terrapod.storage.base import InvalidKey

# S3's limit, in UTF-8 bytes.
MAX_KEY_BYTES = 1024

# NUL, other control characters and backslashes have no business in a key: they break
# file systems (NUL), mean a different separator on Windows (\\), or let a key forge log
# lines and headers (control characters).
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")


def validate_segment(segment: str) -> None:
    """Raise :class:`InvalidKey` unless ``segment`` is one valid path segment.

    Rejected: empty, ``.``/``..``, anything starting with ``.`` (the filesystem back-end
    keeps its temporary files as dot-files next to the objects), ``/``, backslash, NUL and
    other control characters.
    """
    if not isinstance(segment, str) or not segment:
        raise InvalidKey("key segments must be non-empty strings")
    if "/" in segment:
        raise InvalidKey(f"key segment {segment!r} contains '/'")
    if segment.startswith("."):
        raise InvalidKey(f"key segment {segment!r} starts with '.'")
    if _FORBIDDEN.search(segment):
        raise InvalidKey(f"key segment {segment!r} contains a control character or '\\'")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is valid, else raise :class:`InvalidKey`.

    Valid: at most 1024 UTF-8 bytes, relative (no leading ``/``), no trailing ``/``, and
    every segment valid per :func:`validate_segment` (so no empty segment, ``..`` or NUL).
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"key is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise InvalidKey(f"key {key!r} starts with '/'")
    for segment in key.split("/"):
        validate_segment(segment)
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` unchanged if it can start a valid key, else raise :class:`InvalidKey`.

    ``""`` (everything) is valid; otherwise the prefix, minus one trailing ``/``, must be a
    valid key.
    """
    if prefix == "":
        return prefix
    validate_key(prefix.removesuffix("/"))
    return prefix


def key(*parts: str) -> str:
    """Join ``parts`` into a validated key. Each part is exactly one segment.

    >>> key("runs", "run-abc", "plan.log")
    'runs/run-abc/plan.log'
    """
    if not parts:
        raise InvalidKey("a key needs at least one part")
    for part in parts:
        validate_segment(part)
    return validate_key("/".join(parts))


def _id(value: str, prefix: str) -> str:
    # Catches swapped arguments (a run id where a workspace id belongs) at the cheapest
    # possible moment, instead of as an object that is never found again.
    if not isinstance(value, str) or not value.startswith(prefix) or len(value) == len(prefix):
        raise InvalidKey(f"expected an id starting with {prefix!r}, got {value!r}")
    return value


def workspace_prefix(workspace_id: str) -> str:
    """Prefix of every object that belongs to the workspace (for deleting a workspace)."""
    return key("workspaces", _id(workspace_id, "ws-")) + "/"


def state_version(workspace_id: str, sv_id: str) -> str:
    """Raw state file (what terraform PUTs to ``hosted-state-upload-url``) of a state
    version."""
    return key(
        "workspaces", _id(workspace_id, "ws-"), "state-versions", f"{_id(sv_id, 'sv-')}.tfstate"
    )


def state_version_json(workspace_id: str, sv_id: str) -> str:
    """JSON state (``terraform show -json`` format, ``hosted-json-state-upload-url``) of a
    state version."""
    return key(
        "workspaces", _id(workspace_id, "ws-"), "state-versions", f"{_id(sv_id, 'sv-')}.json"
    )


def configuration_version(cv_id: str) -> str:
    """Gzipped tarball of a configuration version (what go-slug uploads to ``upload-url``)."""
    return key("configuration-versions", f"{_id(cv_id, 'cv-')}.tar.gz")


def run_prefix(run_id: str) -> str:
    """Prefix of every object that belongs to a run (its logs)."""
    return key("runs", _id(run_id, "run-")) + "/"


def plan_log(run_id: str) -> str:
    """Plan-phase log of a run: the byte stream go-tfe's log reader fetches, STX first and
    ETX last once the phase has finished."""
    return key("runs", _id(run_id, "run-"), "plan.log")


def apply_log(run_id: str) -> str:
    """Apply-phase log of a run, framed like :func:`plan_log`."""
    return key("runs", _id(run_id, "run-"), "apply.log")


def plan_file(run_id: str) -> str:
    """Binary plan file the plan phase wrote and the apply phase applies."""
    return key("runs", _id(run_id, "run-"), "plan.tfplan")


def plan_json(run_id: str) -> str:
    """JSON plan (``terraform show -json``), sensitive variable values removed."""
    return key("runs", _id(run_id, "run-"), "plan.json")


def plan_json_redacted(run_id: str) -> str:
    """Redacted JSON plan with provider schemas: what ``json-output-redacted`` serves and the
    terraform CLI renders."""
    return key("runs", _id(run_id, "run-"), "plan-redacted.json")
