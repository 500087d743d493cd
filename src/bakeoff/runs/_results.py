"""The run summary as typed models: what `bakeoff run --json` prints is `RunSummary.to_json()`, and
what `bakeoff.run()` returns is the model itself. Keys appear as they always have (a key a run has
no value for is left out, not null), plus `schema_version`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bakeoff.store import AuditStop

SCHEMA_VERSION = 2
"""Of the summary's shape: raised when a key changes meaning or goes away (2: `cost_usd` is the
whole bill — suite, audit, probe and judge calls — where 1 priced suite calls alone)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Paired(_Model):
    """An endpoint against the reference on the same items of one suite."""

    n_pairs: int
    n_items: int | None = None
    """Items both answered: the sample size of the paired test."""
    test: Literal["mcnemar", "sign_flip"] | None = None
    """`mcnemar` (pass/fail, one call per item) or `sign_flip` (per-item mean differences:
    repeats or graded scores; the sign-flip and bootstrap-t tests both, `stats.paired_mean_test`)."""
    left_out_failed: int | None = None
    """Item calls left out because they failed on either side (failures are not answers)."""
    ref_only: int | None = None
    cand_only: int | None = None
    delta: float | None = None
    delta_ci95: list[float] | None = None
    p_value: float | None = None
    p_holm: float | None = None
    significant: bool | None = None
    tool_call_f1: float | None = None


class TierStats(_Model):
    score: float | None
    n: int


class SuiteStats(_Model):
    """One suite's primary score over the answered calls (a failed call is counted in `errors`,
    never as a wrong answer), with its 95% CI and what else the suite measures."""

    score: float | None
    """The mean of the per-item means over the answered calls (the call mean when each item was
    asked once); None when more than `run.max_failed_share` of the calls failed (`no_score`)."""
    correct: int | None
    n: int
    """Calls, failed ones included."""
    answered: int | None = None
    """Calls answered: the score's denominator."""
    no_score: str | None = None
    """Why there is no score: "30/30 failed — HTTP 402: Insufficient credits"."""
    score_failures_as_wrong: float | None = None
    """Past 2% failures: the score with every failed call counted as a wrong answer."""
    score_common: float | None = None
    """When endpoints failed on different items: the score over the items every one answered."""
    n_common_items: int | None = None
    n_items: int | None = None
    """Items: the sample size of `ci95` (an item asked several times is one observation)."""
    ci95: list[float]
    ci_method: Literal["wilson", "bootstrap", "confidence_sequence"]
    errors: int
    error_rate: float | None
    tiers: dict[str, TierStats]
    metrics: dict[str, float | None] | None = None
    unisolated_calls: int | None = None
    pass_at_k: dict[str, float] | None = None
    effective_context: int | None = None
    by_length: dict[str, float | None] | None = None
    truncation_suspected: int | None = None
    vs_reference: Paired | None = None
    stopped_early: bool | None = None
    """Under `run.stop_when`: the suite stopped before its last item, its interval narrow enough."""
    items_planned: int | None = None


class Fidelity(_Model):
    """The audit's verdict on an endpoint (`verdict: reference` for the reference itself)."""

    verdict: Literal["same", "different", "inconclusive", "reference"]
    claim: str | None = None
    p_value: float | None = None
    multiplicity: Literal["per_endpoint", "fdr"] | None = None
    alpha: float | None = None
    calls: int | None = None
    tokens: int | None = None
    why: str | None = None
    flags: list[str] | None = None
    margins: str | None = None
    """Where the greedy margins came from, in words (`store.margin_source_text`): the mode that
    decided the greedy test."""
    vs_claim: str | None = None
    """The endpoint's claimed quantization beside the verdict (`claims bf16 — behaves unlike the
    reference`), when the lineup records a claim (`claims.quantization`)."""


VS_CLAIM = {
    "reference": "the reference",
    "same": "behaves as the reference",
    "different": "behaves unlike the reference",
    "inconclusive": "not decided",
}


def vs_claim(verdict: str, quantization: str | None) -> str | None:
    """A claimed quantization beside the audit's verdict, in the table's words."""
    return f"claims {quantization} — {VS_CLAIM[verdict]}" if quantization else None


class Percentiles(_Model):
    p50: float | None
    p90: float | None = None


class Tokens(_Model):
    prompt: int | None
    """Prompt tokens of the live successful calls; None when none reported them (no `usage`)."""
    completion: int


class Bill(_Model):
    """What an endpoint's calls of the run cost: every call — suite, audit, capability probe,
    judge — each priced by its own figure (`usage.cost`) or its tokens at the lineup's price."""

    total_usd: float | None
    """The sum over the priced calls (None when no call could be priced)."""
    by_purpose: dict[str, float]
    """`suite`, `audit`, `probe`, `judge`, `arena-judge` → USD."""
    calls: int
    """Calls with a reply (errors are not billed here: their cost is unknown)."""
    sources: dict[str, int]
    """How each call was priced: `usage` (the endpoint's figure), `price` (tokens × price),
    `list` (tokens × the genai-prices list), `cached` (a replay from bakeoff's cache: not billed)."""
    unpriced: int
    """Calls with a reply but no figure (no `usage.cost`, no price, or no token counts)."""
    cached_prompt_tokens: int


class RegimeCost(_Model):
    """What one endpoint's audit calls of one regime cost, summed from the stored calls (so a
    re-analysis and `bakeoff audit --rerun` give the same figures)."""

    calls: int
    """Stored calls, failed ones included."""
    failed: int
    """Calls that ended in an error: counted as calls; the store keeps no token counts of a
    failed call, so they add no tokens and no cost."""
    cached: int
    """Replays from bakeoff's response cache: nothing billed (0 $, never a price)."""
    prompt_tokens: int | None
    """Of the answered calls; None when none reported them (no `usage`)."""
    completion_tokens: int
    cost_usd: float | None
    """The priced calls' cost; None ("no price") when no answered call could be priced."""
    unpriced: int
    """Answered calls with no figure (no price in the lineup, none reported)."""

    def tokens_text(self) -> str:
        """`1,240+960`: prompt + completion tokens (`?` for prompt tokens never reported)."""
        tokens = "?" if self.prompt_tokens is None else f"{self.prompt_tokens:,}"
        return f"{tokens}+{self.completion_tokens:,}"

    def usd_text(self) -> str:
        """`$0.0012`, or "no price" where no call could be priced — never 0 $ for unknown."""
        if self.cost_usd is not None:
            usd = f"${self.cost_usd:.4g}"
            return usd + (f" ({self.unpriced} unpriced)" if self.unpriced else "")
        if self.calls > self.failed and self.cached == self.calls - self.failed:
            return "cached: not billed"
        return "no price"

    def text(self) -> str:
        """`20 calls, 1,240+960 tok, $0.0012, 1 failed`."""
        pairs = ((self.failed, "failed"), (self.cached, "cached"))
        extra = "".join(f", {n} {what}" for n, what in pairs if n)
        return f"{self.calls} calls, {self.tokens_text()} tok, {self.usd_text()}{extra}"


class EndpointSummary(_Model):
    name: str
    model: str
    provider: str
    reference: bool
    planned: int
    calls: int
    successes: int
    errors: dict[str, int]
    error_rate: float | None
    cached: int
    attempts: int
    suites: dict[str, SuiteStats]
    ttft_ms: Percentiles
    output_tok_s: Percentiles
    tokens: Tokens
    usage_sources: dict[str, int]
    upstreams: dict[str, int]
    retried: int | None = None
    """Suite calls that took more than one attempt (each retry a failure the error rate hides)."""
    retry_rate: float | None = None
    rate_limited: int | None = None
    """Attempts of its suite calls refused with a rate limit (HTTP 429 or its like)."""
    rate_limited_calls: int | None = None
    ttft_first_send_ms: Percentiles | None = None
    """TTFT from the first attempt's send (retry waits included), of the live successful calls;
    `ttft_ms` is the answering attempt's own."""
    cost_usd: float | None
    """`bill.total_usd`: what the run cost on this endpoint, every call counted."""
    cost_per_1m_tokens: float | None = None
    """Of the suite calls: their cost per million tokens."""
    cost_per_correct: float | None = None
    """Of the suite calls: their cost per correct answer."""
    bill: Bill | None = None
    pinned_upstream: str | None = None
    """The one upstream the endpoint's routing allows (`routing.only`, or `order` without
    fallbacks)."""
    wrong_upstream: int | None = None
    """Calls (of every purpose: suite, audit, probe, judge) whose reply names another upstream than
    the pinned one."""
    wrong_upstream_of: int | None = None
    """The calls `wrong_upstream` counts among: every call billed to the endpoint."""
    claims: dict[str, Any] | None = None
    """What the lineup says the provider claims (`context`, `quantization`, `max_output_tokens`)."""
    fidelity: Fidelity | None
    audit_cost: dict[str, RegimeCost] | None = None
    """Per audit regime (`greedy`, `sampled`): its calls, tokens and cost on this endpoint (the
    reference's repeats included). The reference scorer's requests are not calls of the run."""
    capabilities: dict[str, Any] | None
    """The capability matrix's row (`bakeoff.runs.CAPABILITY_COLUMNS`), when probes ran."""


class RunSummary(_Model):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    status: str
    created_at: str
    finished_at: str | None
    reference: str | None
    suites: list[str]
    repeats: int
    endpoints: list[EndpointSummary]
    pareto: dict[str, Any]
    warnings: list[str]
    cost_usd: float | None = None
    """The run's bill over every endpoint (None when no call could be priced)."""
    audit_stop: AuditStop | None = None
    """Set when the audit's cost cap stopped it before its budget (`audit.max_cost`)."""

    def endpoint(self, name: str) -> EndpointSummary:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict `bakeoff run --json` prints."""
        return self.model_dump(mode="json", exclude_unset=True)
