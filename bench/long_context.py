"""Long contexts through the wire client: a 50,000-token prompt, and its 50,000-token reply, against
a short prompt, on loopback (issue #35; vLLM #39963: its benchmark client lost 10x throughput and
minutes of TTFT at 50K+ tokens to aiohttp's 64 KB read buffer).

The fake provider (its own process, echo mode: the reply is the prompt's tokens, cut at
`max_tokens`) serves three cases, each at concurrency 1 and `--concurrency`:
- short: a 256-token prompt, its 256-token reply;
- long prompt: a 50,000-token prompt (339 KB of JSON), a 256-token reply;
- long both: the 50,000-token prompt echoed whole (a 12.4 MB event stream).
Printed per case: TTFT and end-to-end p50 (ms), output tokens/s over the level (medians of
`--rounds`).

`--read-bufsize N ...` also runs every level with aiohttp's per-request read buffer set to N
(65536 is aiohttp's default), alternately with the client's own setting, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bakeoff.endpoints import CallRequest, ClientOptions, EndpointClient, Limits
from client_overhead import start_server


def prompt(tokens: int) -> str:
    """`tokens` distinct words (one fake-provider token each)."""
    return " ".join(f"w{i}" for i in range(tokens))


CASES = [
    ("256-token prompt, 256-token reply", 256, 256),
    ("50,000-token prompt, 256-token reply", 50_000, 256),
    ("50,000-token prompt, 50,000-token reply", 50_000, 50_000),
]


async def level(
    url: str, text: str, max_tokens: int, concurrency: int, n: int, read_bufsize: int | None
) -> dict[str, float]:
    req = CallRequest(
        messages=[{"role": "user", "content": text}], params={"max_tokens": max_tokens}
    )
    ttft: list[float] = []
    e2e: list[float] = []
    tokens = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        client = EndpointClient(
            s,
            base_url=url,
            model="m",
            options=ClientOptions(limits=Limits(max_response_bytes=64_000_000)),
        )
        if read_bufsize is not None:
            client.read_bufsize = read_bufsize
        await client.call(req)  # connections and the server warm
        todo = n

        async def worker() -> None:
            nonlocal todo, tokens
            while todo > 0:
                todo -= 1
                r = await client.call(req)
                assert r.completion_tokens == max_tokens, r.completion_tokens
                assert r.timings.first_token_ms is not None and r.timings.end_ms is not None
                ttft.append(r.timings.first_token_ms)
                e2e.append(r.timings.end_ms)
                tokens += r.completion_tokens

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "ttft": statistics.median(ttft),
        "e2e": statistics.median(e2e),
        "tok_s": tokens / wall,
        "req_s": len(e2e) / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=24, help="per level (long replies: a third)")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the read buffers")
    ap.add_argument(
        "--read-bufsize",
        type=int,
        nargs="*",
        default=[],
        help="also run with these aiohttp read buffers (bytes; 65536 is aiohttp's default),"
        " alternately with the client's own",
    )
    args = ap.parse_args()
    bufs: list[int | None] = [None, *args.read_bufsize]
    proc, url = start_server(0, "--mode", "echo")
    try:
        print(
            "| case | concurrency | read buffer | TTFT p50 ms | end-to-end p50 ms | output tok/s |"
        )
        print("|---|---|---|---|---|---|")
        for name, p_tokens, max_tokens in CASES:
            text = prompt(p_tokens)
            for c in (1, args.concurrency):
                n = max(c, args.requests // (3 if max_tokens > 1000 else 1))
                got: dict[int | None, list[dict[str, float]]] = {b: [] for b in bufs}
                for i in range(args.rounds):
                    for b in bufs if i % 2 == 0 else bufs[::-1]:
                        got[b].append(asyncio.run(level(url, text, max_tokens, c, n, b)))
                for b, ms in got.items():
                    med = {k: statistics.median(m[k] for m in ms) for k in ms[0]}
                    label = "the client's" if b is None else f"{b:,}"
                    print(
                        f"| {name} | {c} | {label} | {med['ttft']:.1f} | {med['e2e']:.1f} |"
                        f" {med['tok_s']:,.0f} |",
                        flush=True,
                    )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
