"""What a state file holds, read in one streaming pass (a 100 MB state never sits in memory).

Terraform state format version 4: top-level ``serial``, ``lineage``, ``terraform_version``,
``outputs`` (name -> {value, type, sensitive}) and ``resources`` (each with mode, type, name,
optional module, provider and a list of instances).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import ijson

from terrapod.errors import Invalid


@dataclass
class StateSummary:
    serial: int | None = None
    lineage: str | None = None
    terraform_version: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)
    modules: dict[str, dict[str, int]] = field(default_factory=dict)
    providers: dict[str, dict[str, int]] = field(default_factory=dict)
    # Managed resource instances: what "resources under management" counts.
    resource_count: int = 0


class _AsyncReader:
    """Adapts an async iterator of chunks to the ``async read(n)`` ijson expects."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    async def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += await anext(self._chunks)
            except StopAsyncIteration:
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class _Collector:
    """Turns ijson's (prefix, event, value) stream into a :class:`StateSummary`."""

    def __init__(self) -> None:
        self.summary = StateSummary()
        self.counts: Counter[tuple[str, str, str, str]] = Counter()
        self.current: dict[str, Any] = {}
        self.instances = 0
        # Builds the (small) outputs object while the rest of the document streams past.
        self.outputs: ijson.ObjectBuilder | None = None

    def feed(self, prefix: str, event: str, value: Any) -> None:
        if self.outputs is not None:
            self._feed_outputs(prefix, event, value)
        elif prefix == "outputs" and event == "start_map":
            self.outputs = ijson.ObjectBuilder()
            self.outputs.event(event, value)
        elif prefix.startswith("resources.item"):
            self._feed_resource(prefix, event, value)
        elif event in ("number", "string") and prefix in _TOP_LEVEL:
            setattr(self.summary, prefix, int(value) if prefix == "serial" else value)

    def _feed_outputs(self, prefix: str, event: str, value: Any) -> None:
        builder = self.outputs
        if builder is None:
            return
        if prefix == "outputs" and event == "end_map":
            self.summary.outputs = builder.value
            self.outputs = None
        else:
            builder.event(event, value)

    def _feed_resource(self, prefix: str, event: str, value: Any) -> None:
        if prefix == "resources.item" and event == "start_map":
            self.current, self.instances = {}, 0
        elif prefix == "resources.item.instances.item" and event == "start_map":
            self.instances += 1
        elif prefix.count(".") == 2 and event == "string":
            self.current[prefix.rsplit(".", 1)[1]] = value
        elif prefix == "resources.item" and event == "end_map" and self._is_managed():
            self.summary.resource_count += self.instances
            key = (
                self.current.get("module", "root"),
                self.current.get("type", ""),
                self.current.get("name", ""),
                self.current.get("provider", ""),
            )
            self.counts[key] += self.instances

    def _is_managed(self) -> bool:
        return bool(self.current.get("mode", "managed") == "managed")

    def finish(self) -> StateSummary:
        summary = self.summary
        for (module, rtype, name, provider), count in self.counts.items():
            summary.resources.append(
                {
                    "name": name,
                    "type": rtype,
                    "count": count,
                    "module": module,
                    "provider": provider,
                }
            )
            by_type = summary.modules.setdefault(module, {})
            by_type[rtype] = by_type.get(rtype, 0) + count
            by_type = summary.providers.setdefault(provider, {})
            by_type[rtype] = by_type.get(rtype, 0) + count
        return summary


_TOP_LEVEL = ("serial", "lineage", "terraform_version")


async def summarize(chunks: AsyncIterator[bytes]) -> StateSummary:
    """Parse a state stream; raise Invalid when it is not a JSON state document."""
    collector = _Collector()
    try:
        async for prefix, event, value in ijson.parse_async(_AsyncReader(chunks), use_float=True):
            collector.feed(prefix, event, value)
    except ijson.JSONError as exc:
        raise Invalid(f"state is not valid JSON: {exc}") from exc
    if collector.summary.serial is None:
        raise Invalid("state has no serial; it is not a Terraform state file")
    return collector.finish()
