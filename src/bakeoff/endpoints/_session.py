"""The one way to an aiohttp session: `open_session()`, with the connection settings each caller
names (tests/test_layers.py fails on an `aiohttp.ClientSession` made anywhere but here and in the
packages that run servers)."""

from __future__ import annotations

import aiohttp

_heap_reads = False
_ASYNCIO_READ = 256 * 1024
"""What asyncio asks of each socket read (`recv(256 KiB)`, its selector transport's `max_size`)."""


def heap_reads() -> None:
    """Let glibc serve asyncio's socket reads from its heap: done once per process, by every
    `EndpointClient`.

    asyncio reads a socket into a fresh 256 KiB buffer and shrinks it to what came. glibc hands a
    block that large out as an mmap of its own until a freed mmapped block raises its threshold
    (its dynamic `M_MMAP_THRESHOLD`); until then each read costs an mmap, page faults on fresh
    zero pages, an mremap and an munmap (strace: one of each per read). Whether a process had
    freed such a block by the time it streams was an accident of what it had imported, and
    worth ~25 µs of client CPU per 128-token stream (bench/client_overhead.py, issue #35).
    Freeing one block of twice the read now raises the threshold as glibc's own rule would
    after the first large reply; other allocators ignore it."""
    global _heap_reads
    if not _heap_reads:
        _heap_reads = True
        block = bytes(2 * _ASYNCIO_READ)  # calloc'd as an mmap (no page touched), then freed
        del block


_LIMIT, _DNS_TTL = 100, 10
"""aiohttp's own defaults for a connector's connection cap and DNS cache seconds."""


def open_session(
    *,
    total: float | None = None,
    connect: float | None = None,
    limit: int = _LIMIT,
    dns_ttl: int = _DNS_TTL,
    cleanup_closed: bool = False,
) -> aiohttp.ClientSession:
    """A client session (close it: `async with`, or `await session.close()`), made in a running
    event loop. What is not set is aiohttp's default.

    - `total`: seconds a whole request may take (`ClientTimeout.total`); `connect`: seconds to open
      a connection (`sock_connect`). Neither set: aiohttp's default timeout (300 s total).
    - `limit`: the most connections open at once (0: no cap); `dns_ttl`: seconds a DNS answer is
      cached; `cleanup_closed`: TLS transports closed uncleanly are cleaned up. All three at
      aiohttp's defaults: aiohttp makes the connector itself."""
    timeout = None
    if total is not None or connect is not None:
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect)
    connector = None
    if (limit, dns_ttl, cleanup_closed) != (_LIMIT, _DNS_TTL, False):
        connector = aiohttp.TCPConnector(
            limit=limit, ttl_dns_cache=dns_ttl, enable_cleanup_closed=cleanup_closed
        )
    return aiohttp.ClientSession(connector=connector, timeout=timeout)
