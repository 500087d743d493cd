"""Load generation across the nodes of a Ray cluster: `bakeoff perf --ray [ADDRESS]`.

The same shards as `--processes` (`_load.run_shard`), placed as Ray actors, `per_node` on every
alive node, each pinned to its node. One level's start time is chosen here, `LEAD_S` ahead, and
handed to each actor in its own clock: the actor's monotonic clock is read over the fastest of a
few round trips, so its offset is known to within half that round trip (stored per node; an open
loop level whose clock is known worse than the lateness limit is invalid). Records stream back
while the level runs, every shard checks itself (late sends, loop lag, CPU) and the level's check
names the node that fell behind.

Ray is an optional extra (`pip install 'bakeoff[ray]'`); every node needs the same bakeoff version
installed (checked), and must reach the endpoint (an endpoint on loopback is refused when the
generators are not all on this host).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypedDict
from urllib.parse import urlsplit

from bakeoff.endpoints import CallRequest
from bakeoff.perf._load import LevelSpec, Target, run_shard
from bakeoff.perf._types import Generator, GeneratorHello, PerfRecord, ShardResult

LEAD_S = 1.0
"""Seconds between choosing a level's start and the start: enough to reach every actor."""
PLACEMENT_TIMEOUT_S = 60.0
CLOCK_ROUND_TRIPS = 7
POLL_S = 0.5


class RayError(RuntimeError):
    """The cluster cannot be used: not installed, not reachable, a node lost or failing."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayError("Ray is not installed: pip install 'bakeoff[ray]'") from None
    return ray


class LoadGenerator:
    """One shard in a Ray actor: runs a level on a thread of its own, records kept for `drain`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[PerfRecord] = []
        self._thread: threading.Thread | None = None
        self._work: tuple[Target, LevelSpec, list[CallRequest], int, int] | None = None
        self._result: ShardResult | None = None
        self._error: str | None = None

    def hello(self) -> GeneratorHello:
        ray = _ray()
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "address": ray.util.get_node_ip_address(),
            "version": _version(),
            "pid": os.getpid(),
        }

    def clock(self) -> int:
        return time.perf_counter_ns()

    def prepare(
        self,
        target: Target,
        spec: LevelSpec,
        requests: list[CallRequest],
        shard: int,
        shards: int,
    ) -> None:
        """Take a level's work (before its start time is chosen: the prompts may be large)."""
        self._work = (target, spec, requests, shard, shards)
        self._records, self._result, self._error = [], None, None

    def go(self, t0_ns: int) -> None:
        """Run the prepared level from `t0_ns` (this process's perf_counter_ns)."""
        assert self._work is not None, "go() before prepare()"
        target, spec, requests, shard, shards = self._work

        def sink(rec: PerfRecord) -> None:
            with self._lock:
                self._records.append(rec)

        def run() -> None:
            try:
                self._result = asyncio.run(
                    run_shard(target, spec, requests, t0_ns, shard, shards, None, sink)
                )
            except Exception as e:  # reported to the driver by `drain`
                self._error = f"{type(e).__name__}: {e}"

        self._thread = threading.Thread(target=run, name=f"shard-{shard}", daemon=True)
        self._thread.start()

    def drain(self) -> Drained:
        """The records completed since the last call, and the shard's figures once it is done."""
        # done first: a shard seen done has sunk its last record, so this drain takes it
        done = self._thread is not None and not self._thread.is_alive()
        with self._lock:
            recs, self._records = self._records, []
        error = self._error
        if done and self._result is None and error is None:
            error = "the shard stopped without a result"
        return {"records": recs, "done": done, "result": self._result, "error": error}


class Drained(TypedDict):
    records: list[PerfRecord]
    done: bool
    result: ShardResult | None
    error: str | None


def _version() -> str:
    from importlib.metadata import version

    return version("bakeoff")


def _loopback(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _answers(address: str) -> None:
    """Fail fast where nothing listens: Ray itself retries a dead address for minutes."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "auto")
        if address == "auto":
            return  # Ray finds the cluster this host runs, or says there is none, at once
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"expected HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise RayError(f"no Ray cluster at {address}: {e.strerror or e}") from None


def _generator(shard: int, h: GeneratorHello) -> Generator:
    return {"shard": shard, **h}


class RayPool:
    """Load-generator actors on the nodes of a Ray cluster, one level at a time."""

    def __init__(self, ray: Any, actors: list[Any], here: str, skipped: list[str]) -> None:
        self._ray = ray
        self.actors = actors
        self.info: list[Generator] = []
        """Per actor: shard number, node id and address, pid (filled by `_hello`)."""
        self.here = here
        self.skipped = skipped
        """Alive nodes given no generator: fewer CPUs than generators per node (a head started
        with --num-cpus=0, say)."""
        self._payload: tuple[list[CallRequest], Any] | None = None
        """The prompts of the sweep and their reference in Ray's object store."""

    @classmethod
    def connect(cls, address: str, per_node: int = 1) -> RayPool:
        """Join the cluster at `address` ("auto": the one `ray start` left on this host, or
        RAY_ADDRESS) and place `per_node` generators on every alive node with a free CPU each."""
        ray = _ray()
        import logging

        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        _answers(address)
        # Ray's own C++ warnings (retries, timeouts) go to our stderr otherwise
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        # ray.init sets its own SIGTERM handler (exit 15): ours turns it into a clean interrupt
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            ray.init(
                address=address,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=True,
            )
        except Exception as e:  # ConnectionError, or Ray's own when nothing listens there
            if address == "auto" and "RAY_ADDRESS" not in os.environ:
                raise RayError(
                    "no Ray cluster runs on this host and RAY_ADDRESS is not set "
                    f"(start one with `ray start --head`, or give --ray HOST:PORT): {e}"
                ) from None
            raise RayError(f"no Ray cluster at {address}: {e}".strip()) from None
        finally:
            for sig, h in handlers.items():
                if h is not None:
                    signal.signal(sig, h)
        alive = [n for n in ray.nodes() if n.get("Alive")]
        nodes = [n for n in alive if n.get("Resources", {}).get("CPU", 0) >= per_node]
        skipped = [n["NodeManagerAddress"] for n in alive if n not in nodes]
        if not nodes:
            ray.shutdown()
            raise RayError(f"the Ray cluster at {address} has no alive node with {per_node} CPU")
        remote = ray.remote(num_cpus=1, max_restarts=0)(LoadGenerator)
        actors = [
            remote.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote()
            for n in nodes
            for _ in range(per_node)
        ]
        pool = cls(ray, actors, ray.util.get_node_ip_address(), skipped)
        try:
            pool._hello()
        except BaseException:
            pool.close()
            raise
        return pool

    def _hello(self) -> None:
        ray = self._ray
        try:
            hellos = ray.get([a.hello.remote() for a in self.actors], timeout=PLACEMENT_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise RayError(
                f"could not place a load generator on every node within {PLACEMENT_TIMEOUT_S:g} s "
                "(each needs one free CPU)"
            ) from None
        except ray.exceptions.RayError as e:
            raise RayError(f"a load generator failed to start: {e}") from None
        here = _version()
        other = {h["address"]: h["version"] for h in hellos if h["version"] != here}
        if other:
            raise RayError(
                "every node needs bakeoff "
                + here
                + ": "
                + ", ".join(f"{a} has {v}" for a, v in other.items())
            )
        self.info = [_generator(k, h) for k, h in enumerate(hellos)]

    def _clock(self, actor: Any) -> tuple[float, float]:
        """(offset, uncertainty) of an actor's monotonic clock from ours, ms: the fastest of
        `CLOCK_ROUND_TRIPS` round trips, its midpoint against the actor's reading."""
        best: tuple[float, float] | None = None
        for _ in range(CLOCK_ROUND_TRIPS):
            a = time.perf_counter_ns()
            c = self._ray.get(actor.clock.remote(), timeout=PLACEMENT_TIMEOUT_S)
            b = time.perf_counter_ns()
            est = ((c - (a + b) / 2) / 1e6, (b - a) / 2e6)
            if best is None or est[1] < best[1]:
                best = est
        assert best is not None
        return best

    async def run_level(
        self,
        target: Target,
        spec: LevelSpec,
        requests: list[CallRequest],
        on_done: Callable[[], None] | None = None,
    ) -> list[ShardResult]:
        """One level on every generator against one start time; the shards' parts, node-tagged."""
        ray = self._ray
        elsewhere = sorted({i["address"] for i in self.info} - {self.here})
        if elsewhere and _loopback(target.base_url):
            raise RayError(
                f"{target.name}'s URL {target.base_url} is on loopback: the generators on "
                f"{', '.join(elsewhere)} cannot reach it (use an address every node can)"
            )
        n = len(self.actors)
        try:
            if self._payload is None or self._payload[0] is not requests:
                self._payload = (requests, ray.put(requests))  # once per sweep, not per level
            await self._wait(
                [
                    a.prepare.remote(target, spec, self._payload[1], k, n)
                    for k, a in enumerate(self.actors)
                ],
                PLACEMENT_TIMEOUT_S,
                "take the level's work",
            )
            clocks = [self._clock(a) for a in self.actors]
            start = time.perf_counter_ns() + int(LEAD_S * 1e9)
            await self._wait(
                [
                    a.go.remote(start + int(off * 1e6))
                    for a, (off, _) in zip(self.actors, clocks, strict=True)
                ],
                PLACEMENT_TIMEOUT_S,
                "start",  # a shard that started late says so in its check
            )
            parts = await self._collect(on_done)
        except ray.exceptions.RayActorError as e:
            raise RayError(f"a load generator's node was lost mid-level: {e}") from None
        except ray.exceptions.RayError as e:
            raise RayError(f"Ray failed mid-level: {type(e).__name__}: {e}") from None
        for k, part in enumerate(parts):
            part["shard"] = k
            part["node"] = self.info[k]["node"]
            part["address"] = self.info[k]["address"]
            part["clock_offset_ms"] = clocks[k][0]
            part["clock_uncertainty_ms"] = clocks[k][1]
        return parts

    async def _wait(self, refs: list[Any], timeout: float, what: str) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*refs), timeout)
        except TimeoutError:
            raise RayError(f"the load generators did not {what} within {timeout:g} s") from None

    async def _collect(self, on_done: Callable[[], None] | None) -> list[ShardResult]:
        records: list[list[PerfRecord]] = [[] for _ in self.actors]
        results: list[ShardResult | None] = [None] * len(self.actors)
        while any(r is None for r in results):
            await asyncio.sleep(POLL_S)
            drains: list[Drained] = await asyncio.gather(*(a.drain.remote() for a in self.actors))
            for k, d in enumerate(drains):
                if d["error"]:
                    raise RayError(
                        f"the load generator on {self.info[k]['address']} failed: {d['error']}"
                    )
                for rec in d["records"]:
                    rec["shard"] = k
                    records[k].append(rec)
                    if on_done is not None:
                        on_done()
                if d["done"] and results[k] is None:
                    results[k] = d["result"]
        return [{**r, "records": records[k]} for k, r in enumerate(results) if r is not None]

    def close(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):  # already gone with its node
                self._ray.kill(a)
        self._ray.shutdown()
