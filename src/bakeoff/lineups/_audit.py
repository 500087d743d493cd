"""The lineup's `audit:` section: how the fidelity audit runs and what its verdicts claim."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from bakeoff.lineups._specs import _Strict


class AuditSettings(_Strict):
    """The fidelity audit: is each endpoint serving the reference model?"""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    enabled: bool = True
    """Run the audit as part of `bakeoff run` (needs a `reference`, or `reference: consensus`)."""
    reference: Literal["lineup", "consensus"] = "lineup"
    """Who the audit compares with: `lineup`, the lineup's `reference:` endpoint; `consensus`, no
    designated reference — every endpoint answers the greedy prompts as a reference does (twice,
    asking `top_logprobs`), the largest group of endpoints that agree with each other (a strict
    majority, `consensus_within`) is assumed to serve the reference, its member agreeing most is
    the reference, and every verdict says it was assumed. Opt-in, never automatic: it costs every
    endpoint a reference's calls, and what it finds is a majority, not the truth
    (docs/FIDELITY.md, "No reference at all: consensus")."""
    consensus_within: float = Field(default=0.2, gt=0, lt=1)
    """With `reference: consensus`: two endpoints agree when the 95% anytime-valid upper bound on
    their rate of confident greedy divergences (margin from either side's `top_logprobs`) is at
    most this. 0.2: two endpoints with no confident divergence agree after 20 prompts (bound
    0.158), one after 40 (0.178); Q8_0 parts from F16 confidently at 22–45% (docs/FIDELITY.md)."""
    regimes: list[Literal["greedy", "sampled"]] = Field(default_factory=lambda: ["greedy"])  # type: ignore[arg-type]
    """`greedy` (T=0: outputs compared with the reference's) and/or `sampled` (T=1: samples scored
    token by token under the reference model)."""
    budget: int = Field(default=400, ge=2, le=10000)
    """Most calls per regime per candidate endpoint; the test stops earlier once decided. 400 lets
    "same ≤1%" be said of an endpoint with no confident divergence (it takes 343 calls, 350 at
    the look after a round of 10; one confident divergence needs 777); a decided candidate gets
    no more calls."""
    batch: int = Field(default=10, ge=1, le=1000)
    """Calls per round between two looks at the evidence."""
    alpha: float = Field(default=0.05, gt=0, lt=1)
    max_tokens: int = Field(default=48, ge=1, le=100_000)
    seed: int | None = Field(default=None, ge=0)
    """The audit prompts' seed. Unset (the default), each audit draws a fresh private seed, stored
    with the run (reruns and bundles rebuild its prompts): a provider cannot have seen them before.
    Set it to compare runs on the same prompts — then they are as public as the seed; publish
    `bakeoff audit seed`'s hash before the audit and reveal the seed after (commit–reveal)."""
    prompts: str | None = None
    """Your own audit prompts instead of generated ones: a text file (one prompt a line) or a
    JSONL file (`{"prompt": ...}` or `{"messages": [...]}` a line), relative to the lineup file;
    drawn in an order seeded by `seed`. Keep it private to keep providers from recognising it."""
    same_within: float = Field(default=0.01, gt=0, lt=1)
    """δ of the "same" claim: "same" only when a 95% anytime-valid upper confidence bound on the
    candidate's *excess* rate of confident greedy divergences (see `margin`) over the reference's
    own repeat's is below δ — an equivalence bound, never "no difference was found" — printed as
    the smallest share of requests routed to a substitute that it rules out (bound / the share of
    outputs the substitute changes; `substitute_change`). At 0 divergences δ = 0.01 takes 343
    greedy calls (0.05: 68, 0.1: 33). Why 0.01: a route of 5% (10%) to a Q8_0-like substitute
    raises the excess rate by 0.011 (0.022) > δ, so by the bound's coverage it is "same" in at most
    5% of audits (simulated: tests/test_audit_sim.py)."""
    tolerance: float = Field(default=0.01, ge=0, lt=1)
    """τ: the excess rate of confident greedy divergences (over the reference's own repeat's) an
    honest engine may have without being called "different": the greedy test's null is composite,
    H0: excess rate ≤ τ (a betting e-process on the bounded mean, Waudby-Smith & Ramdas 2024). Held-
    out nulls measured 0 confident divergences in 2,800 prompts (F16 with another batch size, F32,
    PyTorch fp32 alone and batched under load, 40 audits × 70; Clopper–Pearson 95% upper end
    0.0013): τ = 0.01 leaves 7.6 times that for engines not measured here (GPU BF16/FP8, not
    covered: docs/FIDELITY.md)."""
    logprob_tolerance: float = Field(default=0.005, ge=0, le=10)
    """ε, nats per token: the sampled tests' composite null — each prompt's per-token log-
    probability difference (candidate's sample − the reference's own) is symmetric about a shift of
    at most ε. The widest honest near-tie measured on the local ladder is < 0.005 nats (F32,
    PyTorch fp32); the sampled calibration in docs/FIDELITY.md was measured at ε = 0."""
    substitute_change: float = Field(default=0.22, gt=0, le=1)
    """The share of outputs a substitute changes (parts confidently), for the "same" claim's
    translation into traffic when the run measures no named substitute: Q8_0 on the local ladder,
    9/40 confident divergences at margin 0.1 (docs/FIDELITY.md) — "Q8_0-like"."""
    power_effects: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.25], min_length=1)
    """The effects the printed power is quoted at: shares of outputs changed (served by a
    substitute that parts confidently there), beside the reference's own repeat noise."""

    @model_validator(mode="after")
    def _consensus_scorer(self) -> AuditSettings:
        if self.reference == "consensus" and "greedy" not in self.regimes:
            raise ValueError(
                "reference: consensus compares the endpoints' greedy answers: add greedy to regimes"
            )
        if self.reference == "consensus" and self.scorer not in ("auto", "top_logprobs", "none"):
            raise ValueError(
                f"reference: consensus takes its margins from the endpoints' own top_logprobs; "
                f"scorer {self.scorer!r} scores under one designated reference: use auto"
            )
        return self

    @field_validator("power_effects")
    @classmethod
    def _effects_are_shares(cls, v: list[float]) -> list[float]:
        if any(not 0 < e <= 1 for e in v):
            raise ValueError(f"power_effects are shares of outputs in (0, 1], got {v}")
        return v

    margin: float = Field(default=0.1, ge=0, le=100)
    """Nats by which the reference must prefer its own token over the candidate's where their greedy
    outputs first part, for the divergence to count. Honest engines flip the argmax only at
    near-ties; substitutes part where the reference was surer. Local ladder, 40 prompts: the same
    weights on another engine or precision (PyTorch fp32 1/40, F32 3/40) part at < 0.005 nats; kept
    at 0.1: Q8_0 9/40, Q4_K_M 31/40, Q2_K 38/40 (docs/FIDELITY.md). BF16 GPU engines unmeasured:
    raise it if their near-ties are wider. 0 counts every divergence (as with no margins at all)."""
    multiplicity: Literal["per_endpoint", "fdr"] = "per_endpoint"
    """What α controls across the candidates: `per_endpoint` — each "different" verdict alone is
    wrong with probability ≤ α; `fdr` — the expected share of wrong "different" verdicts among all
    the lineup's is ≤ α (e-BH over the candidates' e-values, valid under the dependence their
    shared reference answers create; a candidate is then decided at K/α). "same" claims are per
    endpoint in both."""
    same_effect: float = Field(default=0.5, gt=0, le=1)
    """Superseded by `power_effects` and ignored; accepted so that stored lineups still parse."""
    reference_gguf: str | None = None
    """GGUF of the reference model for the token scorer (found automatically for `provider: local`)."""
    logprobs: bool = False
    """Sampled calls also ask for the log-probabilities of the sampled tokens (`logprobs: true`), and
    the `logprobs` test compares what each endpoint reports with the reference scorer's numbers.
    Only for endpoints that return logprobs (the capability probe says which)."""
    scorer: Literal["auto", "local", "endpoint", "top_logprobs", "none"] = "auto"
    """The reference token scorer: `local` (llama.cpp in-process on `reference_gguf`), `endpoint` (a
    server's `echo` + `logprobs`), `top_logprobs` (greedy margins from the reference's own top-k of
    what it generated: a hosted reference), `none` (every divergence counts); `auto`: the GGUF when
    one is known, else `top_logprobs` (`none` if the reference returns none). docs/FIDELITY.md."""
    top_logprobs: int = Field(default=5, ge=1, le=20)
    """Alternatives per token the reference's greedy calls ask for with margins from them."""
    scorer_endpoint: str | None = None
    """For `scorer: endpoint`: the lineup endpoint to ask (default: the reference)."""
    scorer_template: str | None = None
    """For `scorer: endpoint`: the reference's chat template, when its server does not offer one
    (`/apply-template` of llama.cpp's server, or vLLM's `/tokenize` with messages; a hosted
    provider offers neither): the Jinja text itself, or a file relative to the lineup file — a
    Hugging Face `tokenizer_config.json` (its `chat_template`, `bos_token`, `eos_token`) or a
    Jinja file."""
    scorer_shift: int | None = Field(default=None, ge=0, le=1)
    """For `scorer: endpoint`: the position of each token's log-probability in the echo (0 standard,
    1 for llama-cpp-python's server); detected when unset. Not used on vLLM (scored by token ids)."""
    scorer_batch: int = Field(default=16, ge=1, le=1024)
    """For `scorer: endpoint` on vLLM (the endpoint's `engine: vllm`, or a server answering vLLM's
    `/tokenize`): prompts per scoring request. vLLM schedules a request's prompts together; keep it
    at most the server's `--max-num-seqs`. See docs/FIDELITY.md, "Scoring on a vLLM deployment"."""
    alternatives: list[str] | None = None
    """Suspected substitutes of the reference for the sampled regime's likelihood-ratio tests: each
    a local variant name (`Q8_0`, `Q4_K_M`, ...), a GGUF path, or a lineup endpoint whose server
    scores text over HTTP (as `scorer: endpoint`). Every sample is scored under each, and a test per
    alternative asks whether the candidate's samples are likelier under it, relative to the
    reference, than the reference's own samples are. Default: `[Q8_0, Q4_K_M]` when the reference
    is local, else none."""
    top_p: float = Field(default=0.95, gt=0, le=1)
    """Nucleus sampling of the sampled regime's calls (T=1): every engine applies `top_p` the same
    way (the smallest set of tokens holding this much probability), and cutting the model's long
    tail of rare tokens makes the reference-scored tests steadier. `1`: the full distribution."""
    sampled_params: dict[str, object] = Field(default_factory=dict)
    """Extra body fields for every sampled-regime call, over the neutral sampler of each
    endpoint's `engine` (which every audit call gets, greedy too: llama.cpp `top_k: 0, min_p: 0,
    repeat_penalty: 1`; vLLM and SGLang `top_k: -1, min_p: 0, repetition_penalty: 1`). Use it for
    an engine bakeoff does not know; the reference and the candidates must sample the same way,
    or the sampled test sees the samplers differ, not the weights."""
    max_cost: float | None = Field(default=None, gt=0, le=1e6)
    """Most USD the audit may spend (`--max-cost`): a round projected to pass it is not started
    (docs/FIDELITY.md, "What an audit costs"). Not an analysis setting: re-analyses ignore it."""
