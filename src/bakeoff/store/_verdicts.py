"""The fidelity audit's verdict on one endpoint, as a typed model: what `audit.analyse` and
`audit.run_audit` hand back and what `Store.verdicts` returns (the `verdicts` table's row: its
`verdict` and `p_value` columns and its `evidence_json`, which holds the whole model).

Stored as it always was: `to_json()` writes the keys that were set, none other (a key an analysis
had no value for is left out, not null). Keys a past version wrote that this one does not know are
kept as they were (`extra="allow"`), so an old database reads back, and re-analyses compare, key
for key. The audit's own rule and vocabulary: `bakeoff.audit._verdict`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VerdictKind = Literal["same", "different", "inconclusive"]
Multiplicity = Literal["per_endpoint", "fdr"]
MarginSource = Literal["gguf", "endpoint", "top_logprobs", "none"]
"""Where the greedy regime's margins came from: the reference GGUF scored in-process, a server's
prompt log-probabilities (`scorer: endpoint`), the reference endpoint's own top-k log-probabilities
of what it generated (`audit/_topk.py`), or nowhere (every divergence counts)."""


def margin_source_text(source: str | None, k: int | None = None) -> str:
    """A margin source in the user's terms (the CLI's table, the report)."""
    words = {
        "gguf": "reference GGUF, scored in-process",
        "endpoint": "a server's prompt log-probabilities",
        "top_logprobs": f"the reference's top-{k or 'k'} log-probabilities",
        "none": "none: every divergence counts (honest engines may be accused)",
    }
    return words.get(source or "", "-")


class _Stored(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, object]:
        """The JSON-ready dict stored in `evidence_json` (set keys only)."""
        return self.model_dump(mode="json", exclude_unset=True)


class PowerAt(_Stored):
    """The greedy rule's power at one effect (a share of outputs changed)."""

    effect: float
    different: float
    same: float
    expected_calls: float


class Example(_Stored):
    """A greedy prompt where the candidate's output parts from the reference's."""

    item: str
    prompt: str | list[dict[str, object]] | None = None
    reference: str | None = None
    candidate: str | None = None
    diverges_at_token: int | None = None
    margin: float | None = None
    reference_token: str | None = None
    candidate_token: str | None = None
    confident: bool | None = None


class TestEvidence(_Stored):
    """One test of a candidate (`greedy`, `sampled`, `logprobs`, `lr:<alternative>`): its e-process
    path (`wealth`), p-value and what it measured. The greedy test's fields are the ones after
    `same_within`; the sampled tests' after `mmd_p_value`."""

    __test__ = False  # not a pytest class

    n: int
    p_value: float = 1.0
    rejected_at: int | None = None
    wealth: list[float] = Field(default_factory=list)
    sign_flip_p_value: float | None = None
    note: str | None = None
    # greedy
    confident_differ: int | None = None
    reference_repeat_differ: int | None = None
    tolerance: float | None = None
    same_within: float | None = None
    rate_upper_bound: float | None = None
    excess_lower_bound: float | None = None
    same_at: int | None = None
    calls_for_same: int | None = None
    differ: int | None = None
    near_ties: int | None = None
    margin: float | None = None
    disagreement_rate: float | None = None
    sampler_flag: str | None = None
    examples: list[Example] | None = None
    margin_source: MarginSource | None = None
    top_k: int | None = None
    """With margins from `top_logprobs`: the most alternatives the reference gave at a position."""
    bounded: int | None = None
    """Confident divergences whose margin is a lower bound (the candidate's token beyond top-k)."""
    left_out: dict[str, int] | None = None
    """Prompts left out of the greedy test, by why (`_topk.REASONS`): the reference's own
    log-probabilities could not give a margin there."""
    power: list[PowerAt] | None = None
    power_is_exact: bool | None = None
    power_method: str | None = None
    # sampled
    mmd_p_value: float | None = None
    mean_logprob_candidate: float | None = None
    mean_logprob_reference: float | None = None
    mean_pit_candidate: float | None = None
    # logprobs / lr:<alternative>
    mean_gap_candidate: float | None = None
    mean_gap_reference: float | None = None
    mean_llr_candidate: float | None = None
    mean_llr_reference: float | None = None


class Style(_Stored):
    """Of an endpoint's answers: words, markdown and refusals (unset when it has none)."""

    mean_words: float | None = None
    markdown_rate: float | None = None
    refusal_rate: float | None = None


class Styles(_Stored):
    candidate: Style
    reference: Style


class SuiteChecks(_Stored):
    """Behaviour seen in the run's own suite calls: tool calls and silent truncation."""

    tool_call_f1: float | None = None
    tool_items: int | None = None
    tool_args_valid_rate: float | None = None
    reference_tool_args_valid_rate: float | None = None
    truncation_suspected: int | None = None
    reference_truncation_suspected: int | None = None


class Behaviour(_Stored):
    """What else the candidate does unlike the reference (templates, temperature, style, tools),
    with the flags a person should read."""

    prompt_tokens_delta_vs_reference: int | float | None = None
    prompt_tokens_mismatch_rate: float | None = None
    reference_vs_local_template_delta: int | float | None = None
    sampled_equals_greedy_rate: float | None = None
    reference_sampled_equals_greedy_rate: float | None = None
    style: Styles | None = None
    suites: SuiteChecks | None = None
    flags: list[str] = Field(default_factory=list)


class RouteShare(_Stored):
    """Per substitute, the smallest share of requests routed to it that a "same" bound rules out."""

    substitute: str
    changes: float
    source: str
    route_share: float


class AssumedReference(_Stored):
    """With no designated reference (`audit.reference: consensus`): the group of endpoints the
    audit assumed to serve the reference, and the member that stood for it; or why none was."""

    text: str
    """The assumption in words, as every verdict of the analysis prints it."""
    group: list[str] = Field(default_factory=list)
    """The largest agreeing group (empty when the audit could not tell)."""
    of: int = 0
    """Endpoints in the lineup."""
    representative: str | None = None
    """The member the others were audited against (None: the audit could not tell)."""
    rates: dict[str, float] = Field(default_factory=dict)
    """Per pair ("a|b"), the 95% anytime-valid upper bound on their confident-divergence rate."""


class Verdict(_Stored):
    """The audit's verdict on a candidate endpoint: the claim as printed, with its p-value, the
    calls it took, every test's evidence and the behaviour seen. `rules_out`: only on "same"."""

    verdict: VerdictKind
    claim: str | None = None
    why: str | None = None
    rules_out: list[RouteShare] | None = None
    p_value: float
    e_value: float = 1.0
    multiplicity: Multiplicity = "per_endpoint"
    margin_source: MarginSource | None = None
    """What decided which greedy divergences count (`MarginSource`); unset on runs before it."""
    calls: int = 0
    tokens: int = 0
    errors: int = 0
    alpha: float | None = None
    tests: dict[str, TestEvidence] = Field(default_factory=dict)
    behaviour: Behaviour = Field(default_factory=Behaviour)
    assumed_reference: AssumedReference | None = None
    """Set when no reference was designated: what the audit assumed (`audit.reference:
    consensus`); unset when the lineup named its reference."""
