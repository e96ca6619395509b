"""A per-key sliding-window rate limit for the few endpoints TFE limits harder than the rest
(seed 001: the run lists allow 30 requests a minute). In process: with several replicas each
allows the limit, which keeps the guarantee TFE's clients rely on (no unbounded polling)."""

from __future__ import annotations

import math
import time
from collections import deque

from terrapod.errors import RateLimited


class SlidingWindowLimiter:
    def __init__(self, limit: int, window_seconds: float = 60.0, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window_seconds
        self._max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str, *, now: float | None = None) -> None:
        """Count one request for ``key``; raise RateLimited (with the seconds until a slot
        frees) when the window is full. A limit of 0 turns the limiter off."""
        if self.limit <= 0:
            return
        current = time.monotonic() if now is None else now
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self._hits.clear()  # bounded memory; a reset only ever lets requests through
            hits = self._hits[key] = deque()
        while hits and hits[0] <= current - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            retry_after = max(1, math.ceil(hits[0] + self.window - current))
            raise RateLimited(
                retry_after,
                f"rate limit of {self.limit} requests per {int(self.window)} seconds exceeded; "
                f"retry in {retry_after} s",
            )
        hits.append(current)
