"""The one way to an aiohttp session: `open_session()`, with the connection settings each caller
names (tests/test_layers.py fails on an `aiohttp.ClientSession` made anywhere but here and in the
packages that run servers)."""

from __future__ import annotations

import aiohttp

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
