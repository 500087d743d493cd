"""Latency and throughput metrics of one load level, from its request records.

Definitions (docs/PERF.md maps them to vLLM `bench serve`, GuideLLM and AIPerf):
- TTFT: request sent → first content / reasoning / tool-call token (first byte and the role-only
  chunk are kept separately; a role-only chunk is not a token).
- ITL, pooled: every gap between consecutive token-bearing chunks of every request (as vLLM).
- ITL, per request: (last token − first token) / (N − 1), averaged per request (as GuideLLM, AIPerf).
- TPOT: (E2E − TTFT) / (N − 1) per request (as vLLM).
- E2E: request sent → last byte. Output tok/s per request: N / E2E; aggregate: Σ N / window.
- Everything also from the *intended* send time (open loop): what a user waiting on that schedule sees.
Failed requests are left out of latency statistics but count in the error rate and against goodput.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bakeoff.perf._types import Dist, LevelMetrics, PerfRecord

QUANTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class SLO:
    """Service-level objectives a request must meet to count toward goodput (ms; None: no bound)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> SLO:
        """`ttft=500ms,tpot=50ms,e2e=2s`."""
        if not text:
            return cls()
        vals: dict[str, float] = {}
        for part in text.split(","):
            key, _, raw = part.strip().partition("=")
            key = key.strip().lower()
            if key not in ("ttft", "tpot", "e2e") or not raw:
                raise ValueError(f"bad SLO {part!r}: use ttft=500ms,tpot=50ms,e2e=2s")
            raw = raw.strip().lower()
            try:
                if raw.endswith("ms"):
                    v = float(raw[:-2])
                elif raw.endswith("s"):
                    v = float(raw[:-1]) * 1000
                else:
                    v = float(raw)
            except ValueError:
                raise ValueError(f"bad SLO value {raw!r} for {key}") from None
            vals[f"{key}_ms"] = v
        return cls(**vals)

    def met(self, r: PerfRecord) -> bool:
        if r["status"] != "ok":
            return False
        if self.ttft_ms is not None and (r["ttft_ms"] is None or r["ttft_ms"] > self.ttft_ms):
            return False
        tpot = r.get("tpot_ms")
        if self.tpot_ms is not None and tpot is not None and tpot > self.tpot_ms:
            return False
        return not (self.e2e_ms is not None and (r["e2e_ms"] is None or r["e2e_ms"] > self.e2e_ms))

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def dist(
    values: Sequence[float | None], *, ci: bool = True, n_boot: int = 500, seed: int = 0
) -> Dist | None:
    """Mean and p50/p90/p95/p99, each percentile with a bootstrap 95% interval."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return None
    p50, p90, p95, p99 = (round(float(q), 3) for q in np.percentile(x, QUANTILES))
    n, mean = int(x.size), round(float(x.mean()), 3)
    if not (ci and x.size >= 10):
        return {"n": n, "mean": mean, "p50": p50, "p90": p90, "p95": p95, "p99": p99}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = np.percentile(x[idx], QUANTILES, axis=1)
    c50, c90, c95, c99 = (
        [round(float(v), 3) for v in np.percentile(b, [2.5, 97.5])] for b in boots
    )
    return {
        "n": n,
        "mean": mean,
        "p50": p50,
        "p50_ci95": c50,
        "p90": p90,
        "p90_ci95": c90,
        "p95": p95,
        "p95_ci95": c95,
        "p99": p99,
        "p99_ci95": c99,
    }


def per_request(r: PerfRecord) -> PerfRecord:
    """Derived figures of one request record (in place and returned)."""
    n = r.get("completion_tokens") or 0
    ttft, last, e2e = r.get("ttft_ms"), r.get("last_token_ms"), r.get("e2e_ms")
    r["itl_ms"] = (
        (last - ttft) / (n - 1) if n > 1 and ttft is not None and last is not None else None
    )
    r["tpot_ms"] = (
        (e2e - ttft) / (n - 1) if n > 1 and ttft is not None and e2e is not None else None
    )
    r["tok_s"] = n / (e2e / 1000) if n and e2e else None
    return r


def _from_intended(ok: list[PerfRecord], key: Literal["ttft_ms", "e2e_ms"]) -> list[float]:
    """A latency from the intended send time: the request's own plus its send's lateness."""
    return [
        v + late
        for r in ok
        if (late := r.get("lateness_ms")) is not None and (v := r[key]) is not None
    ]


def level_metrics(
    records: list[PerfRecord], window_s: float, slo: SLO, asked_tokens: int | None = None
) -> LevelMetrics:
    """The figures of one load level from its measured requests (warmup and cooldown excluded).
    `asked_tokens`: the output length each request asked for (synthetic workloads), to flag a level
    whose replies were far shorter — its tok/s and latencies measure another workload."""
    for r in records:
        per_request(r)
    ok = [r for r in records if r["status"] == "ok"]
    n = len(records)
    gaps: list[float] = []
    for r in ok:
        ch = r.get("chunks") or []
        gaps.extend(b - a for a, b in itertools.pairwise(ch))
    late = [r["lateness_ms"] for r in records if r.get("lateness_ms") is not None]
    tokens = sum(r.get("completion_tokens") or 0 for r in ok)
    good = sum(1 for r in records if slo.met(r))
    with_both = [
        r for r in ok if r.get("usage_tokens") is not None and r.get("counted_tokens") is not None
    ]
    mismatch = sum(
        1 for r in with_both if abs((r["usage_tokens"] or 0) - (r["counted_tokens"] or 0)) > 1
    )
    out: LevelMetrics = {
        "requests": n,
        "ok": len(ok),
        "errors": dict(Counter(r["error_class"] or "" for r in records if r["status"] != "ok")),
        "error_rate": round((n - len(ok)) / n, 4) if n else None,
        "window_s": round(window_s, 3),
        "request_throughput": round(len(ok) / window_s, 3) if window_s > 0 else None,
        "output_tok_s": round(tokens / window_s, 2) if window_s > 0 else None,
        "ttft_ms": dist([r.get("ttft_ms") for r in ok]),
        "first_byte_ms": dist([r.get("first_byte_ms") for r in ok], ci=False),
        "itl_pooled_ms": dist(gaps),
        "itl_per_request_ms": dist([r.get("itl_ms") for r in ok]),
        "tpot_ms": dist([r.get("tpot_ms") for r in ok]),
        "e2e_ms": dist([r["e2e_ms"] for r in ok]),
        "request_tok_s": dist([r.get("tok_s") for r in ok], ci=False),
        "token_sources": dict(Counter(r.get("token_source") for r in ok)),
        "token_mismatch_rate": round(mismatch / len(with_both), 4) if with_both else None,
    }
    if late:
        out["ttft_from_intended_ms"] = dist(_from_intended(ok, "ttft_ms"))
        out["e2e_from_intended_ms"] = dist(_from_intended(ok, "e2e_ms"), ci=False)
    if asked_tokens and ok:
        got = tokens / len(ok)
        out["output_tokens"] = {"asked": asked_tokens, "mean": round(got, 1)}
        if got < 0.5 * asked_tokens:
            out["workload_mismatch"] = (
                f"asked for {asked_tokens} output tokens, got {got:.1f} on average: the endpoint "
                "stopped early (EOS not ignored?), so these figures are of a shorter workload"
            )
    if slo.as_dict():
        out["goodput"] = {
            "slo": slo.as_dict(),
            "requests_per_s": round(good / window_s, 3) if window_s > 0 else None,
            "fraction": round(good / n, 4) if n else None,
        }
    return out
