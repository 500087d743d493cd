"""What a perf sweep hands on: a request's record, a level's figures and self-check, an endpoint's
sweep, the sweep's summary. TypedDicts, so the summary stored as JSON (`perf_runs.summary_json`)
keeps its keys, and a summary read back from an older database is one of these as it is."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from bakeoff.store import PerfRecord as PerfRecord


class ShardResult(TypedDict):
    """One shard's part of a level: its records and its own figures (on a Ray cluster, tagged
    with its node and clock)."""

    records: list[PerfRecord]
    cpu: float
    lag_ms: list[float]
    start_late_ms: float
    shard: NotRequired[int]
    node: NotRequired[str]
    address: NotRequired[str]
    clock_offset_ms: NotRequired[float]
    clock_uncertainty_ms: NotRequired[float]


class NodeCheck(TypedDict):
    """Per node of a Ray cluster: whether its generators kept up."""

    node: str
    address: str
    shards: list[int]
    requests: int
    errors: int
    late_share: float
    client_cpu: float
    start_late_ms: float
    clock_offset_ms: float
    clock_uncertainty_ms: float
    valid: bool
    why: list[str]


class NodeRates(NodeCheck):
    """A node's check with what its own shards measured."""

    measured: int
    offered_rate: float | None
    request_throughput: float | None
    output_tok_s: float | None
    ttft_p50_ms: float | None


class SelfCheck(TypedDict):
    valid: bool
    why: list[str]
    late_share: float
    client_cpu: float
    processes: int
    nodes: NotRequired[list[NodeCheck]]
    """Taken out of the stored check into the level's `nodes` (`NodeRates`)."""


class LevelRun(TypedDict):
    records: list[PerfRecord]
    self_check: SelfCheck


class Dist(TypedDict):
    """Mean and percentiles; each percentile's bootstrap 95% interval when asked and n ≥ 10."""

    n: int
    mean: float
    p50: float
    p50_ci95: NotRequired[list[float]]
    p90: float
    p90_ci95: NotRequired[list[float]]
    p95: float
    p95_ci95: NotRequired[list[float]]
    p99: float
    p99_ci95: NotRequired[list[float]]


class OutputTokens(TypedDict):
    asked: int
    mean: float


class Goodput(TypedDict):
    slo: dict[str, float]
    requests_per_s: float | None
    fraction: float | None


class LevelMetrics(TypedDict):
    requests: int
    ok: int
    errors: dict[str, int]
    error_rate: float | None
    window_s: float
    request_throughput: float | None
    output_tok_s: float | None
    ttft_ms: Dist | None
    first_byte_ms: Dist | None
    itl_pooled_ms: Dist | None
    itl_per_request_ms: Dist | None
    tpot_ms: Dist | None
    e2e_ms: Dist | None
    request_tok_s: Dist | None
    token_sources: dict[str | None, int]
    token_mismatch_rate: float | None
    ttft_from_intended_ms: NotRequired[Dist | None]
    e2e_from_intended_ms: NotRequired[Dist | None]
    output_tokens: NotRequired[OutputTokens]
    workload_mismatch: NotRequired[str]
    goodput: NotRequired[Goodput]


class LevelEntry(TypedDict):
    level: float
    label: str
    metrics: LevelMetrics
    self_check: SelfCheck
    all_requests: int
    nodes: NotRequired[list[NodeRates]]


class CurvePoint(TypedDict):
    level: float
    request_throughput: float | None
    output_tok_s: float | None
    ttft_p50_ms: float | None
    valid: bool


class Saturation(TypedDict):
    at: float
    capacity: float | None
    why: str


class EndpointSweep(TypedDict):
    levels: list[LevelEntry]
    curve: list[CurvePoint]
    saturation: Saturation | None
    valid: bool


class GeneratorHello(TypedDict):
    node: str
    address: str
    version: str
    pid: int


class Generator(GeneratorHello):
    """A load generator of a Ray cluster, by shard number."""

    shard: int


class PerfSummary(TypedDict):
    perf_id: str
    run_id: str | None
    config: dict[str, object]
    """`PerfOptions` as JSON."""
    endpoints: dict[str, EndpointSweep]
    generators: NotRequired[list[Generator]]
    skipped_nodes: NotRequired[list[str]]
    status: Literal["complete", "interrupted"]
    valid: bool
