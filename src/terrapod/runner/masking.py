"""Sensitive values never reach a log: every occurrence becomes ``***``.

Terraform prints a value raw in human output, escaped inside its JSON log lines (Go escapes
``<``, ``>`` and ``&`` too), and a multi-line value one (re-indented) line at a time in a
heredoc; all these forms are masked. Output arrives in arbitrary chunks, so a value can be
split across two reads: complete lines are masked and passed on at once, a partial line
waits for the rest (or, if it grows long, everything that no later byte can still turn
into a match is passed on). :meth:`LogMasker.flush` releases the tail at the end.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

MASK = b"***"
# Shorter values are not masked: they cannot be secrets worth the price, and masking them
# would garble every log line (a sensitive "1" would hide every count in "Plan: 1 to add").
MIN_MASKED_LENGTH = 4
# A partial line longer than this is passed on without waiting for its end.
_MAX_PENDING = 64 * 1024

_GO_JSON_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _go_json_escaped(value: str) -> str:
    """``value`` as it appears inside a string of Go's encoding/json output."""
    return "".join(
        _GO_JSON_ESCAPES.get(c, f"\\u{ord(c):04x}" if ord(c) < 0x20 else c) for c in value
    )


def masked_forms(values: Iterable[str]) -> set[bytes]:
    """The byte strings to mask in output for these sensitive values (none contains a
    newline)."""
    forms: set[str] = set()
    for value in values:
        forms.add(_go_json_escaped(value))
        forms.update(line.strip() for line in value.splitlines())
    return {f.encode() for f in forms if len(f) >= MIN_MASKED_LENGTH}


def mask_strings(document: Any, values: Iterable[str]) -> Any:
    """A decoded JSON ``document`` with the sensitive ``values`` (and each line of a
    multi-line one) masked inside every string it holds."""
    secrets = list(values)
    forms = set(secrets) | {line.strip() for value in secrets for line in value.splitlines()}
    kept = sorted((f for f in forms if len(f) >= MIN_MASKED_LENGTH), key=len, reverse=True)
    if not kept:
        return document
    pattern = re.compile("|".join(re.escape(f) for f in kept))

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return pattern.sub(MASK.decode(), node)
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(document)


class LogMasker:
    """Masks a byte stream and hands the result to ``sink`` as it becomes final."""

    def __init__(self, secrets: Iterable[str], sink: Callable[[bytes], Awaitable[None]]) -> None:
        forms = sorted(masked_forms(secrets), key=len, reverse=True)
        # Longest first, so a value that contains another is masked whole.
        self._pattern = re.compile(b"|".join(re.escape(f) for f in forms)) if forms else None
        self._longest = len(forms[0]) if forms else 0
        self._sink = sink
        self._pending = b""

    def mask(self, data: bytes) -> bytes:
        """``data`` with every sensitive form replaced (for text that is complete)."""
        return self._pattern.sub(MASK, data) if self._pattern else data

    async def write(self, data: bytes) -> None:
        """Accept more output; pass on what no later output can change."""
        pending = self._pending + data
        end_of_lines = pending.rfind(b"\n") + 1
        out = self.mask(pending[:end_of_lines])
        pending = pending[end_of_lines:]
        if len(pending) > _MAX_PENDING:
            settled, pending = self._settled_prefix(pending)
            out += settled
        self._pending = pending
        if out:
            await self._sink(out)

    async def flush(self) -> None:
        """Pass on whatever is left; call once, when the output has ended."""
        pending, self._pending = self._pending, b""
        if pending:
            await self._sink(self.mask(pending))

    def _settled_prefix(self, text: bytes) -> tuple[bytes, bytes]:
        """Split an unterminated ``text`` into a masked prefix no later byte can change and
        the unmasked rest. Only a match *starting* in the last ``longest - 1`` bytes could
        still grow, so everything before that is settled."""
        if self._pattern is None:
            return text, b""
        cut = len(text) - (self._longest - 1)
        out = []
        position = 0
        for match in self._pattern.finditer(text):
            if match.start() >= cut:
                break
            out += [text[position : match.start()], MASK]
            position = match.end()
        keep = max(position, cut)
        out.append(text[position:keep])
        return b"".join(out), text[keep:]
