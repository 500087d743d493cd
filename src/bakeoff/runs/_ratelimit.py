"""Client-side rate limits: requests per minute (evenly spaced) and tokens per minute (a bucket)."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """`acquire()` before each request; `charge(tokens)` after it finishes."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self.tpm = tpm
        self._next = 0.0
        self._bucket = float(tpm or 0.0)
        self._refilled = time.monotonic()

    def _refill(self) -> None:
        if self.tpm is None:
            return
        now = time.monotonic()
        self._bucket = min(self.tpm, self._bucket + (now - self._refilled) * self.tpm / 60.0)
        self._refilled = now

    async def acquire(self) -> None:
        if self.interval:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self.interval
            if slot > now:
                await asyncio.sleep(slot - now)
        if self.tpm is not None:
            self._refill()
            while self._bucket <= 0:
                await asyncio.sleep(min(-self._bucket * 60.0 / self.tpm + 0.01, 5.0))
                self._refill()

    def charge(self, tokens: int) -> None:
        if self.tpm is not None:
            self._refill()
            self._bucket -= tokens
