"""The reply body, read and decompressed by bakeoff itself within the endpoint's limits."""

from __future__ import annotations

import asyncio
import zlib

import aiohttp

from bakeoff.endpoints._types import CallError, ErrorClass


class Body:
    """The reply body, decompressed here by bounded steps and cut at `limit` bytes: more is a
    `too_large` error, never more memory. One step yields at most `STEP` bytes, so a compressed
    read that inflates to megabytes is handed out (and parsed) piece by piece, with the event loop
    free between pieces."""

    STEP = 65_536

    def __init__(self, resp: aiohttp.ClientResponse, limit: int) -> None:
        self.content = resp.content
        self.limit = limit
        self.size = 0
        self.wire = 0
        self.encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        self.inflate: zlib._Decompress | None = None
        self.pending = b""  # compressed bytes not yet inflated
        # refused when first read, so that an error status is classified before its body
        self.supported = self.encoding in ("", "identity", "gzip", "x-gzip", "deflate")
        if self.encoding in ("gzip", "x-gzip"):
            self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == "deflate":
            self.inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header

    def _check(self, n: int) -> None:
        if n > self.limit:
            raise CallError(
                ErrorClass.too_large,
                f"the reply passed {self.limit:,} bytes (raise the endpoint's"
                " limits.max_response_bytes if such replies are legitimate)",
            )

    def _grow(self, n: int) -> None:
        self.size += n
        self._check(self.size)

    async def readany(self) -> bytes:
        """The next bytes of the body (b"" at its end)."""
        if not self.supported:
            raise CallError(
                ErrorClass.bad_response, f"unsupported Content-Encoding {self.encoding[:40]!r}"
            )
        if self.inflate is None:
            data = await self.content.read(self.STEP)
            self._grow(len(data))
            return data
        while True:
            if not self.pending:
                self.pending = await self.content.read(self.STEP)
                self.wire += len(self.pending)
                self._check(self.wire)  # compressed bytes count too
                if not self.pending:  # end of the body
                    if not self.inflate.eof:
                        raise CallError(ErrorClass.bad_response, "compressed body cut short")
                    return b""
            else:
                await asyncio.sleep(0)  # a step of the same read: let the other calls run
            if self.inflate.eof:
                # bytes after the end of the compressed body: a second member, or a flood
                # zlib would only pile up, unread and uncounted
                raise CallError(
                    ErrorClass.bad_response, "bytes after the end of the compressed body"
                )
            try:
                data = self.inflate.decompress(self.pending, self.STEP)
            except zlib.error as e:
                raise CallError(
                    ErrorClass.bad_response, f"cannot decompress the body: {e}"
                ) from None
            self.pending = self.inflate.unconsumed_tail or (
                self.inflate.unused_data if self.inflate.eof else b""
            )
            if data:
                self._grow(len(data))
                return data

    async def read(self) -> bytearray:
        """The whole body, in one buffer (no second copy to join parts)."""
        buf = bytearray()
        while data := await self.readany():
            buf += data
        return buf

    async def text(self, cap: int) -> str:
        """The start of an error body (the rest is not read)."""
        parts: list[bytes] = []
        got = 0
        try:
            while got < cap and (data := await self.readany()):
                parts.append(data)
                got += len(data)
        except CallError:
            pass
        return b"".join(parts)[:cap].decode("utf-8", "replace")
