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


def _provider_name(provider: str) -> str:
    return provider


async def summarize(chunks: AsyncIterator[bytes]) -> StateSummary:
    """Parse a state stream; raise Invalid when it is not a JSON state document."""
    summary = StateSummary()
    counts: Counter[tuple[str, str, str, str]] = Counter()
    current: dict[str, Any] = {}
    instances = 0
    builder: ijson.ObjectBuilder | None = None
    try:
        async for prefix, event, value in ijson.parse_async(_AsyncReader(chunks), use_float=True):
            if builder is not None:
                if prefix == "outputs" and event == "end_map":
                    summary.outputs = builder.value
                    builder = None
                else:
                    builder.event(event, value)
                continue
            if prefix == "outputs" and event == "start_map":
                builder = ijson.ObjectBuilder()
                builder.event(event, value)
            elif prefix == "serial" and event == "number":
                summary.serial = int(value)
            elif prefix == "lineage" and event == "string":
                summary.lineage = value
            elif prefix == "terraform_version" and event == "string":
                summary.terraform_version = value
            elif prefix == "resources.item" and event == "start_map":
                current, instances = {}, 0
            elif prefix == "resources.item.instances.item" and event == "start_map":
                instances += 1
            elif prefix.startswith("resources.item.") and prefix.count(".") == 2 and event == "string":
                current[prefix.rsplit(".", 1)[1]] = value
            elif prefix == "resources.item" and event == "end_map":
                if current.get("mode", "managed") == "managed":
                    summary.resource_count += instances
                    key = (
                        current.get("module", "root"),
                        current.get("type", ""),
                        current.get("name", ""),
                        current.get("provider", ""),
                    )
                    counts[key] += instances
    except ijson.JSONError as exc:
        raise Invalid(f"state is not valid JSON: {exc}") from exc
    if summary.serial is None:
        raise Invalid("state has no serial; it is not a Terraform state file")
    for (module, rtype, name, provider), count in counts.items():
        summary.resources.append(
            {"name": name, "type": rtype, "count": count, "module": module,
             "provider": _provider_name(provider)}
        )
        summary.modules.setdefault(module, {})
        summary.modules[module][rtype] = summary.modules[module].get(rtype, 0) + count
        summary.providers.setdefault(provider, {})
        summary.providers[provider][rtype] = summary.providers[provider].get(rtype, 0) + count
    return summary
