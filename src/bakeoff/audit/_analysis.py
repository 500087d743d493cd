"""From stored calls to verdicts. Only the reference scorer is asked anything here (in process, or
with `scorer: endpoint` over HTTP by `endpoints.post_json`: requests not yet recorded as calls nor
billed, issue #33); its answers are stored with the run, so a re-analysis asks it nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bakeoff.audit._greedy import greedy_evidence
from bakeoff.audit._source import FidelityCall
from bakeoff.audit._stats import (
    mmd_hamming_test,
    normalize_text,
    sign_flip_test,
    tolerant_paired_test,
)
from bakeoff.audit._verdict import Tests, decide, known_substitutes
from bakeoff.lineups import AuditSettings, Lineup, purposes
from bakeoff.store import Behaviour, MarginSource, SuiteChecks, TestEvidence, Verdict
from bakeoff.suites import Item

if TYPE_CHECKING:
    from bakeoff.audit._scorer import TokenScores
    from bakeoff.audit._types import AuditReads, ReferenceScorer, ScorerLoad

SUITES = {regime: purposes.fidelity_suite(regime) for regime in ("greedy", "sampled")}


@dataclass
class Calls:
    """Successful fidelity calls of a run: (endpoint, suite, item_id, repeat) → row."""

    ok: dict[tuple[str, str, str, int], FidelityCall] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)


def _load(store: AuditReads, run_id: str) -> Calls:
    out = Calls()
    for row in store.calls(run_id):
        if not row["suite"].startswith(purposes.FIDELITY_PREFIX):
            continue
        c = FidelityCall.of(row)
        out.used[c.endpoint] = out.used.get(c.endpoint, 0) + 1
        if c.status == "ok":
            out.ok[(c.endpoint, c.suite, c.item_id, c.repeat)] = c
            out.tokens[c.endpoint] = out.tokens.get(c.endpoint, 0) + (c.completion_tokens or 0)
        else:
            out.errors[c.endpoint] = out.errors.get(c.endpoint, 0) + 1
    return out


def _greedy(
    calls: Calls,
    ref: str,
    cand: str,
    items: list[Item],
    settings: AuditSettings,
    scorer: ReferenceScorer | None,
    source: MarginSource,
) -> TestEvidence:
    suite = SUITES["greedy"]
    pairs = []
    for it in items:
        r0 = calls.ok.get((ref, suite, it.id, 0))
        r1 = calls.ok.get((ref, suite, it.id, 1))
        c0 = calls.ok.get((cand, suite, it.id, 0))
        if r0 is not None and r1 is not None and c0 is not None:
            pairs.append((it, r0, r1, c0))
    out = greedy_evidence(
        pairs,
        scorer,
        margin=settings.margin,
        delta=settings.same_within,
        alpha=settings.alpha,
        tau=settings.tolerance,
        top=source == "top_logprobs",
    )
    out.margin_source = source
    if source == "none":
        out.note = NO_MARGINS
    return out


NO_MARGINS = (
    "no reference scorer and no log-probabilities from the reference: every divergence counts, "
    "so an honest engine that flips near-ties may be called different"
)


def asks_top_logprobs(settings: AuditSettings, scorer: object | None) -> bool:
    """The margins are to come from the reference's own answers: no scorer, and `audit.scorer`
    `top_logprobs`, or `auto` (no GGUF known). Its greedy calls then ask for `top_logprobs`."""
    return scorer is None and settings.scorer in ("auto", "top_logprobs")


def margin_source(
    calls: Calls,
    ref: str,
    items: list[Item],
    settings: AuditSettings,
    scorer: ReferenceScorer | None,
) -> MarginSource:
    """What gives the greedy margins (`MarginSource`): the scorer when there is one; else the
    reference's top-k log-probabilities when any of its stored greedy answers has them usable
    (`_topk.reference_topk`); else none."""
    from bakeoff.audit._topk import reference_topk

    if scorer is not None:
        return "endpoint" if settings.scorer == "endpoint" else "gguf"
    if asks_top_logprobs(settings, scorer):
        suite = SUITES["greedy"]
        for it in items:
            r0 = calls.ok.get((ref, suite, it.id, 0))
            if r0 is not None and reference_topk(r0.logprobs_json, r0.output_text).reason is None:
                return "top_logprobs"
    return "none"


def _sampled_pairs(
    calls: Calls, ref: str, cand: str, items: list[Item]
) -> Iterator[tuple[Item, FidelityCall, FidelityCall]]:
    """(item, reference's sample, candidate's sample) for every prompt both answered at T=1."""
    suite = SUITES["sampled"]
    for it in items:
        r0 = calls.ok.get((ref, suite, it.id, 0))
        c0 = calls.ok.get((cand, suite, it.id, 0))
        if r0 is not None and c0 is not None:
            yield it, r0, c0


def _sampled(
    calls: Calls,
    ref: str,
    cand: str,
    items: list[Item],
    alpha: float,
    scorer: ReferenceScorer | None,
    tol: float = 0.0,
) -> TestEvidence:
    rng = np.random.default_rng(0)
    d: list[float] = []
    lp_c: list[float] = []
    lp_r: list[float] = []
    pit_c: list[float] = []
    texts_c: list[str] = []
    texts_r: list[str] = []
    for it, r0, c0 in _sampled_pairs(calls, ref, cand, items):
        texts_r.append(r0.output_text or "")
        texts_c.append(c0.output_text or "")
        if scorer is None:
            continue
        prompt = scorer.prompt_tokens(it.messages or [])
        sr = scorer.score(prompt, r0.output_text or "", rng)
        sc = scorer.score(prompt, c0.output_text or "", rng)
        lp_c.append(sc.mean_logprob)
        lp_r.append(sr.mean_logprob)
        pit_c.extend(sc.pit.tolist())
        d.append(sc.mean_logprob - sr.mean_logprob)
    _, mmd_p = mmd_hamming_test(texts_c, texts_r) if len(texts_c) >= 2 else (0.0, 1.0)
    if scorer is None:
        return TestEvidence(
            n=len(texts_c),
            mmd_p_value=mmd_p,
            p_value=1.0,
            rejected_at=None,
            wealth=[],
            note="no reference scorer",
        )
    bet = tolerant_paired_test(d, tol, alpha)
    return TestEvidence(
        n=len(texts_c),
        mmd_p_value=mmd_p,
        p_value=bet.p_value,
        rejected_at=bet.rejected_at,
        wealth=bet.wealth,
        sign_flip_p_value=sign_flip_test(d) if d else 1.0,
        mean_logprob_candidate=_mean(lp_c),
        mean_logprob_reference=_mean(lp_r),
        mean_pit_candidate=_mean(pit_c),
    )


def _mean(xs: list[float], digits: int = 4) -> float | None:
    return round(float(np.mean(xs)), digits) if xs else None


def _paired(d: list[float], alpha: float, tol: float = 0.0) -> TestEvidence:
    """The betting test (sequential; composite null: symmetric about a shift of at most `tol`) and
    the sign-flip p-value on per-prompt differences d that are symmetric about 0 under H0."""
    bet = tolerant_paired_test(d, tol, alpha)
    return TestEvidence(
        n=len(d),
        p_value=bet.p_value,
        rejected_at=bet.rejected_at,
        wealth=bet.wealth,
        sign_flip_p_value=sign_flip_test(d),
    )


def _likelihood_ratio(
    calls: Calls,
    ref: str,
    cand: str,
    items: list[Item],
    alpha: float,
    scorer: ReferenceScorer,
    alternative: ReferenceScorer,
    tol: float = 0.0,
) -> TestEvidence | None:
    """Likelihood-ratio test toward a suspected substitute (a quantization of the reference, say).

    Per prompt, r(x) = mean over the tokens of a sample x of log p_alt(token) − log p_ref(token):
    the Neyman–Pearson statistic of "x came from the alternative" against "from the reference"
    (Neyman & Pearson 1933). d = r(candidate's sample) − r(reference endpoint's own sample of the
    prompt); under H0 (the candidate samples as the reference does) the two samples are
    exchangeable, so d is symmetric about 0 whatever the alternative: tested with the betting test
    (sequential) and a sign-flip p-value. Valid against every difference, most powerful toward the
    named one: a Q4_K_M candidate raises r by the two models' symmetrised KL per token, which a
    statistic of the reference alone (mean log-probability) barely sees."""
    rng = np.random.default_rng(0)
    d: list[float] = []
    r_c: list[float] = []
    r_r: list[float] = []
    for it, r0, c0 in _sampled_pairs(calls, ref, cand, items):
        rs = []
        for row in (c0, r0):
            text = row.output_text or ""
            s_ref = scorer.score(scorer.prompt_tokens(it.messages or []), text, rng)
            s_alt = alternative.score(alternative.prompt_tokens(it.messages or []), text, rng)
            if s_ref.tokens != s_alt.tokens or not s_ref.tokens:
                break  # not the same tokenizer, or an empty sample: nothing to compare
            rs.append(float(np.mean(s_alt.logprobs - s_ref.logprobs)))
        if len(rs) < 2:
            continue
        r_c.append(rs[0])
        r_r.append(rs[1])
        d.append(rs[0] - rs[1])
    if not d:
        return None
    out = _paired(d, alpha, tol)
    out.mean_llr_candidate = _mean(r_c)
    out.mean_llr_reference = _mean(r_r)
    return out


def _reported(row: FidelityCall) -> list[tuple[str, float]] | None:
    """(token, log-probability) an endpoint reported for each token it sampled (OpenAI `logprobs`)."""
    import orjson

    if not row.logprobs_json:
        return None
    entries = orjson.loads(row.logprobs_json)
    out = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("logprob"), int | float):
            return None
        out.append((str(e.get("token") or ""), float(e["logprob"])))
    return out


def _logprob_gap(reported: list[tuple[str, float]], scored: TokenScores) -> float | None:
    """Mean |reported − computed| log-probability over the sampled tokens, or None when the
    endpoint's tokens are not the ones the reference scorer got by re-tokenizing the text (a text
    can be sampled as other tokens than its canonical tokenization; such prompts are left out)."""
    n = len(scored.logprobs)
    if n == 0 or len(reported) not in (n, n + 1):
        return None
    if scored.pieces is not None and [t for t, _ in reported[:n]] != list(scored.pieces):
        return None
    return float(np.mean(np.abs(np.array([lp for _, lp in reported[:n]]) - scored.logprobs)))


def _logprobs(
    calls: Calls,
    ref: str,
    cand: str,
    items: list[Item],
    alpha: float,
    scorer: ReferenceScorer | None,
    tol: float = 0.0,
) -> TestEvidence | None:
    """Logprob comparison, for endpoints that report the log-probabilities of what they sample.

    Per prompt: how far the log-probabilities the candidate *reports* for its sampled tokens are
    from the reference model's own (teacher forcing by the reference scorer), minus the same gap for
    the reference endpoint's samples (the null: the engine's numerics). Under H0 (same model, same
    engine) the two gaps are exchangeable, so their difference is symmetric about 0: tested with the
    betting test (sequential) and a sign-flip permutation test (Fisher 1935). A quantized model
    reports log-probabilities of its own weights: every token moves the gap, so this sees what
    sampled text alone barely shows (8-bit)."""
    if scorer is None:
        return None
    rng = np.random.default_rng(0)
    d: list[float] = []
    gaps_c: list[float] = []
    gaps_r: list[float] = []
    for it, r0, c0 in _sampled_pairs(calls, ref, cand, items):
        lc, lr = _reported(c0), _reported(r0)
        if lc is None or lr is None:
            continue
        prompt = scorer.prompt_tokens(it.messages or [])
        gc = _logprob_gap(lc, scorer.score(prompt, c0.output_text or "", rng))
        gr = _logprob_gap(lr, scorer.score(prompt, r0.output_text or "", rng))
        if gc is None or gr is None:
            continue
        gaps_c.append(gc)
        gaps_r.append(gr)
        d.append(gc - gr)
    if not d:
        return None
    out = _paired(d, alpha, tol)
    out.mean_gap_candidate = _mean(gaps_c, 5)
    out.mean_gap_reference = _mean(gaps_r, 5)
    return out


def analyse(
    store: AuditReads,
    run_id: str,
    lineup: Lineup,
    settings: AuditSettings,
    items: dict[str, list[Item]],
    scorer_factory: ScorerLoad | None = None,
    *,
    alternatives: dict[str, ScorerLoad] | None = None,
) -> dict[str, Verdict]:
    """Verdicts for every candidate endpoint from the fidelity calls stored for the run.

    `alternatives`: loaders of scorers of suspected substitutes (name → loader), one
    likelihood-ratio test each in the sampled regime (tests `lr:<name>`)."""
    from bakeoff.audit._behaviour import behaviour, suite_checks
    from bakeoff.audit._consensus import consensus_analyse, wanted

    if wanted(lineup, settings):  # no designated reference: the largest agreeing group's
        return consensus_analyse(store, run_id, lineup, settings, items)
    ref = lineup.reference
    assert ref is not None
    calls = _load(store, run_id)
    scorer = scorer_factory() if scorer_factory is not None else None
    unique_items = list({i.id: i for v in items.values() for i in v}.values())
    candidates = [ep.name for ep in lineup.endpoints if ep.name != ref]
    if scorer is not None:
        _prefetch(scorer, calls, [ref, *candidates], items)
        if "sampled" in items:
            for load in (alternatives or {}).values():
                _prefetch(load(), calls, [ref, *candidates], {"sampled": items["sampled"]})
    source = margin_source(calls, ref, items.get("greedy", []), settings, scorer)
    evidence: dict[str, Tests] = {}
    for name in candidates:
        evidence[name] = _tests(calls, ref, name, items, settings, scorer, alternatives, source)
    decided = decide(evidence, settings, known_substitutes(lineup, settings, evidence))
    out: dict[str, Verdict] = {}
    for name in candidates:
        tests = evidence[name]
        for t in tests.values():
            t.wealth = [round(w, 4) for w in t.wealth]
        v = decided[name]
        v.calls = calls.used.get(name, 0)
        v.tokens = calls.tokens.get(name, 0)
        v.errors = calls.errors.get(name, 0)
        v.alpha = settings.alpha
        if "greedy" in tests:
            v.margin_source = source
        v.tests = tests
        v.behaviour = behaviour(calls, ref, name, unique_items, scorer)
        _add_flags(v.behaviour, tests, suite_checks(store, run_id, ref, name))
        out[name] = v
    return out


def _add_flags(b: Behaviour, tests: Tests, checks: tuple[SuiteChecks, list[str]]) -> None:
    """The greedy test's sampler flag, and what the run's own suite calls showed (when it had
    tools or long-context calls), added to the behaviour's flags."""
    g = tests.get("greedy")
    if g is not None and g.sampler_flag:
        b.flags = [*b.flags, g.sampler_flag]
    found, flags = checks
    if found.model_fields_set:
        b.suites = found
        b.flags = [*b.flags, *flags]


def _prefetch(
    scorer: ReferenceScorer, calls: Calls, endpoints: list[str], items: dict[str, list[Item]]
) -> None:
    """Every output the tests will score, handed to a scorer that scores many per request
    (`score_many`: vLLM's), so the tests below read its memory: every sampled answer, and the
    greedy answers whose text parts from the reference's first (the only ones scored)."""
    many: Callable[[list[tuple[list[int], str]]], None] | None = getattr(scorer, "score_many", None)
    if many is None:
        return
    pairs: list[tuple[list[int], str]] = []
    for regime, its in items.items():
        suite = SUITES[regime]
        for it in its:
            rows = [calls.ok.get((ep, suite, it.id, k)) for ep in endpoints for k in (0, 1)]
            texts = [r.output_text or "" for r in rows if r is not None]
            if regime == "greedy" and texts:  # the reference's first answer comes first
                parted = [t for t in texts[1:] if normalize_text(t) != normalize_text(texts[0])]
                texts = [texts[0], *parted] if parted else []
            if texts:
                prompt = scorer.prompt_tokens(it.messages or [])
                pairs.extend((prompt, t) for t in texts)
    many(pairs)


def _tests(
    calls: Calls,
    ref: str,
    cand: str,
    items: dict[str, list[Item]],
    settings: AuditSettings,
    scorer: ReferenceScorer | None,
    alternatives: dict[str, ScorerLoad] | None,
    source: MarginSource,
) -> Tests:
    """Every test of one candidate, by name (`greedy`, `sampled`, `logprobs`, `lr:<alt>`)."""
    alpha, tol = settings.alpha, settings.logprob_tolerance
    tests: Tests = {}
    if "greedy" in items:
        tests["greedy"] = _greedy(calls, ref, cand, items["greedy"], settings, scorer, source)
    if "sampled" in items:
        tests["sampled"] = _sampled(calls, ref, cand, items["sampled"], alpha, scorer, tol)
        lp = _logprobs(calls, ref, cand, items["sampled"], alpha, scorer, tol)
        if lp is not None:
            tests["logprobs"] = lp
        if scorer is not None:
            for alt_name, load in (alternatives or {}).items():
                lr = _likelihood_ratio(
                    calls, ref, cand, items["sampled"], alpha, scorer, load(), tol
                )
                if lr is not None:
                    tests[f"lr:{alt_name}"] = lr
    return tests
