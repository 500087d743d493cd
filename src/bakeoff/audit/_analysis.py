"""From stored calls to verdicts. Only the reference scorer is asked anything here (in process, or
with `scorer: endpoint` over HTTP by `endpoints.post_json`: requests not yet recorded as calls nor
billed, issue #33); its answers are stored with the run, so a re-analysis asks it nothing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np

from bakeoff.audit._greedy import greedy_evidence
from bakeoff.audit._stats import (
    mmd_hamming_test,
    normalize_text,
    sign_flip_test,
    tolerant_paired_test,
)
from bakeoff.audit._verdict import decide, known_substitutes
from bakeoff.lineups import AuditSettings, Lineup
from bakeoff.store import Store
from bakeoff.suites import Item

SUITES = {"greedy": "fidelity.greedy", "sampled": "fidelity.sampled"}
_REFUSAL = re.compile(r"\b(i can't|i cannot|i'm sorry|i am sorry|as an ai)\b", re.I)
_MARKDOWN = re.compile(r"(\*\*|^#+ |^\s*[-*] |```)", re.M)


@dataclass
class Calls:
    """Successful fidelity calls of a run: (endpoint, suite, item_id, repeat) → row."""

    ok: dict[tuple[str, str, str, int], Any] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)


def _load(store: Store, run_id: str) -> Calls:
    out = Calls()
    for c in store.calls(run_id):
        if not c["suite"].startswith("fidelity."):
            continue
        out.used[c["endpoint"]] = out.used.get(c["endpoint"], 0) + 1
        if c["status"] == "ok":
            out.ok[(c["endpoint"], c["suite"], c["item_id"], c["repeat"])] = c
            out.tokens[c["endpoint"]] = out.tokens.get(c["endpoint"], 0) + (
                c["completion_tokens"] or 0
            )
        else:
            out.errors[c["endpoint"]] = out.errors.get(c["endpoint"], 0) + 1
    return out


def _greedy(
    calls: Calls,
    ref: str,
    cand: str,
    items: list[Item],
    settings: AuditSettings,
    scorer: Any,
) -> dict[str, Any]:
    suite = SUITES["greedy"]
    pairs = []
    for it in items:
        r0 = calls.ok.get((ref, suite, it.id, 0))
        r1 = calls.ok.get((ref, suite, it.id, 1))
        c0 = calls.ok.get((cand, suite, it.id, 0))
        if r0 is not None and r1 is not None and c0 is not None:
            pairs.append((it, r0, r1, c0))
    return greedy_evidence(
        pairs,
        scorer,
        margin=settings.margin,
        delta=settings.same_within,
        alpha=settings.alpha,
        tau=settings.tolerance,
    )


def _sampled_pairs(
    calls: Calls, ref: str, cand: str, items: list[Item]
) -> Iterator[tuple[Item, Any, Any]]:
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
    scorer: Any,
    tol: float = 0.0,
) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    d: list[float] = []
    lp_c: list[float] = []
    lp_r: list[float] = []
    pit_c: list[float] = []
    texts_c: list[str] = []
    texts_r: list[str] = []
    for it, r0, c0 in _sampled_pairs(calls, ref, cand, items):
        texts_r.append(r0["output_text"] or "")
        texts_c.append(c0["output_text"] or "")
        if scorer is None:
            continue
        prompt = scorer.prompt_tokens(it.messages or [])
        sr = scorer.score(prompt, r0["output_text"] or "", rng)
        sc = scorer.score(prompt, c0["output_text"] or "", rng)
        lp_c.append(sc.mean_logprob)
        lp_r.append(sr.mean_logprob)
        pit_c.extend(sc.pit.tolist())
        d.append(sc.mean_logprob - sr.mean_logprob)
    _, mmd_p = mmd_hamming_test(texts_c, texts_r) if len(texts_c) >= 2 else (0.0, 1.0)
    out: dict[str, Any] = {"n": len(texts_c), "mmd_p_value": mmd_p}
    if scorer is None:
        out.update(p_value=1.0, rejected_at=None, wealth=[], note="no reference scorer")
        return out
    bet = tolerant_paired_test(d, tol, alpha)
    out.update(
        p_value=bet.p_value,
        rejected_at=bet.rejected_at,
        wealth=bet.wealth,
        sign_flip_p_value=sign_flip_test(d) if d else 1.0,
        mean_logprob_candidate=round(float(np.mean(lp_c)), 4) if lp_c else None,
        mean_logprob_reference=round(float(np.mean(lp_r)), 4) if lp_r else None,
        mean_pit_candidate=round(float(np.mean(pit_c)), 4) if pit_c else None,
    )
    return out


def _paired(d: list[float], alpha: float, tol: float = 0.0) -> dict[str, Any]:
    """The betting test (sequential; composite null: symmetric about a shift of at most `tol`) and
    the sign-flip p-value on per-prompt differences d that are symmetric about 0 under H0."""
    bet = tolerant_paired_test(d, tol, alpha)
    return {
        "n": len(d),
        "p_value": bet.p_value,
        "rejected_at": bet.rejected_at,
        "wealth": bet.wealth,
        "sign_flip_p_value": sign_flip_test(d),
    }


def _likelihood_ratio(
    calls: Calls,
    ref: str,
    cand: str,
    items: list[Item],
    alpha: float,
    scorer: Any,
    alternative: Any,
    tol: float = 0.0,
) -> dict[str, Any] | None:
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
            text = row["output_text"] or ""
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
    return {
        **_paired(d, alpha, tol),
        "mean_llr_candidate": round(float(np.mean(r_c)), 4),
        "mean_llr_reference": round(float(np.mean(r_r)), 4),
    }


def _reported(row: Any) -> list[tuple[str, float]] | None:
    """(token, log-probability) an endpoint reported for each token it sampled (OpenAI `logprobs`)."""
    import orjson

    if not row["logprobs_json"]:
        return None
    entries = orjson.loads(row["logprobs_json"])
    out = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("logprob"), int | float):
            return None
        out.append((str(e.get("token") or ""), float(e["logprob"])))
    return out


def _logprob_gap(reported: list[tuple[str, float]], scored: Any) -> float | None:
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
    scorer: Any,
    tol: float = 0.0,
) -> dict[str, Any] | None:
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
        gc = _logprob_gap(lc, scorer.score(prompt, c0["output_text"] or "", rng))
        gr = _logprob_gap(lr, scorer.score(prompt, r0["output_text"] or "", rng))
        if gc is None or gr is None:
            continue
        gaps_c.append(gc)
        gaps_r.append(gr)
        d.append(gc - gr)
    if not d:
        return None
    return {
        **_paired(d, alpha, tol),
        "mean_gap_candidate": round(float(np.mean(gaps_c)), 5),
        "mean_gap_reference": round(float(np.mean(gaps_r)), 5),
    }


def _style(rows: list[Any]) -> dict[str, float]:
    texts = [r["output_text"] or "" for r in rows]
    if not texts:
        return {}
    return {
        "mean_words": round(sum(len(t.split()) for t in texts) / len(texts), 2),
        "markdown_rate": round(sum(bool(_MARKDOWN.search(t)) for t in texts) / len(texts), 3),
        "refusal_rate": round(sum(bool(_REFUSAL.search(t)) for t in texts) / len(texts), 3),
    }


def _behaviour(calls: Calls, ref: str, cand: str, items: list[Item], scorer: Any) -> dict[str, Any]:
    g, s = SUITES["greedy"], SUITES["sampled"]
    out: dict[str, Any] = {}
    deltas = []
    for it in items:
        for suite in (g, s):
            c, r = calls.ok.get((cand, suite, it.id, 0)), calls.ok.get((ref, suite, it.id, 0))
            if c is not None and r is not None and c["prompt_tokens"] and r["prompt_tokens"]:
                deltas.append(c["prompt_tokens"] - r["prompt_tokens"])
    if deltas:
        out["prompt_tokens_delta_vs_reference"] = median(deltas)
        out["prompt_tokens_mismatch_rate"] = round(sum(x != 0 for x in deltas) / len(deltas), 3)
    if scorer is not None:
        local = []
        for it in items:
            r = calls.ok.get((ref, g, it.id, 0))
            if r is not None and r["prompt_tokens"]:
                local.append(r["prompt_tokens"] - len(scorer.prompt_tokens(it.messages or [])))
        if local:
            out["reference_vs_local_template_delta"] = median(local)

    def same_as_greedy(ep: str) -> float | None:
        pairs: list[tuple[Any, Any]] = []
        for it in items:
            a, b = calls.ok.get((ep, s, it.id, 0)), calls.ok.get((ep, g, it.id, 0))
            if a is not None and b is not None:
                pairs.append((a, b))
        if not pairs:
            return None
        return sum(
            normalize_text(a["output_text"] or "") == normalize_text(b["output_text"] or "")
            for a, b in pairs
        ) / len(pairs)

    sc, sr = same_as_greedy(cand), same_as_greedy(ref)
    if sc is not None and sr is not None:
        out["sampled_equals_greedy_rate"] = round(sc, 3)
        out["reference_sampled_equals_greedy_rate"] = round(sr, 3)
    rows_c = [v for k, v in calls.ok.items() if k[0] == cand]
    rows_r = [v for k, v in calls.ok.items() if k[0] == ref]
    out["style"] = {"candidate": _style(rows_c), "reference": _style(rows_r)}
    flags = []
    if deltas and median(deltas) != 0:
        flags.append(
            f"prompt is {median(deltas):+g} tokens vs the reference's for the same messages "
            "(chat template changed or a system prompt injected?)"
        )
    if sc is not None and sr is not None and sc >= 0.9 and sr <= 0.6:
        flags.append("T=1 samples equal the greedy output: temperature is ignored?")
    out["flags"] = flags
    return out


def _suite_checks(store: Store, run_id: str, ref: str, cand: str) -> dict[str, Any]:
    """Behavioural checks from the run's own suite calls, when it ran them: tool calls (does the
    candidate call a tool where the reference does — F1 —, and are its arguments valid against the
    tool's schema) and silent truncation of long prompts (the long-context scorer's flag)."""
    import jsonschema
    import orjson

    out: dict[str, Any] = {}
    rows = store.tool_calls(run_id, (ref, cand))
    called: dict[str, dict[str, bool]] = {ref: {}, cand: {}}
    valid: dict[str, list[bool]] = {ref: [], cand: []}
    for r in rows:
        tcs = orjson.loads(r["tool_calls_json"]) if r["tool_calls_json"] else []
        called[r["endpoint"]][r["item_id"]] = bool(tcs) or r["finish_reason"] == "tool_calls"
        tools = (orjson.loads(r["input_json"]).get("params") or {}).get("tools") or []
        schemas = {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools}
        for tc in tcs:
            try:
                args = orjson.loads(tc.get("arguments") or "{}")
                schema = schemas.get(tc.get("name"))
                ok = schema is not None and jsonschema.Draft202012Validator(schema).is_valid(args)
            except (orjson.JSONDecodeError, jsonschema.SchemaError):
                ok = False
            valid[r["endpoint"]].append(ok)
    shared = sorted(set(called[ref]) & set(called[cand]))
    if shared:
        t = [called[ref][i] for i in shared]
        p = [called[cand][i] for i in shared]
        tp = sum(a and b for a, b in zip(t, p, strict=True))
        wrong = sum(a != b for a, b in zip(t, p, strict=True))
        out["tool_call_f1"] = round(2 * tp / (2 * tp + wrong), 3) if tp + wrong else None
        out["tool_items"] = len(shared)
        for ep, key in ((cand, "tool_args_valid_rate"), (ref, "reference_tool_args_valid_rate")):
            if valid[ep]:
                out[key] = round(sum(valid[ep]) / len(valid[ep]), 3)
    trunc = store.score_sums(run_id, "truncation_suspected", (ref, cand))
    if trunc:
        out["truncation_suspected"] = int(trunc.get(cand) or 0)
        out["reference_truncation_suspected"] = int(trunc.get(ref) or 0)
    flags = []
    f1 = out.get("tool_call_f1")
    if f1 is not None and f1 < 0.8 and out["tool_items"] >= 5:
        flags.append(f"calls tools where the reference does not, or not where it does (F1 {f1})")
    va, vr = out.get("tool_args_valid_rate"), out.get("reference_tool_args_valid_rate")
    if va is not None and vr is not None and va < vr - 0.2:
        flags.append(f"tool arguments valid {va:.0%} of the time, the reference's {vr:.0%}")
    if trunc and out["truncation_suspected"] > out["reference_truncation_suspected"] + 1:
        flags.append(
            f"long prompts look silently truncated on {out['truncation_suspected']} items "
            f"(reference: {out['reference_truncation_suspected']})"
        )
    out["flags"] = flags
    return out


def analyse(
    store: Store,
    run_id: str,
    lineup: Lineup,
    settings: AuditSettings,
    items: dict[str, list[Item]],
    scorer_factory: Callable[[], Any] | None = None,
    *,
    alternatives: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Verdicts for every candidate endpoint from the fidelity calls stored for the run.

    `alternatives`: loaders of scorers of suspected substitutes (name → loader), one
    likelihood-ratio test each in the sampled regime (tests `lr:<name>`)."""
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
    evidence: dict[str, dict[str, Any]] = {}
    for name in candidates:
        evidence[name] = _tests(calls, ref, name, items, settings, scorer, alternatives)
    decided = decide(evidence, settings, known_substitutes(lineup, settings, evidence))
    out: dict[str, dict[str, Any]] = {}
    for name in candidates:
        tests = evidence[name]
        for t in tests.values():
            t["wealth"] = [round(w, 4) for w in t["wealth"]]
        out[name] = {
            **decided[name],
            "calls": calls.used.get(name, 0),
            "tokens": calls.tokens.get(name, 0),
            "errors": calls.errors.get(name, 0),
            "alpha": settings.alpha,
            "tests": tests,
            "behaviour": _behaviour(calls, ref, name, unique_items, scorer),
        }
        b = out[name]["behaviour"]
        g = tests.get("greedy")
        if g is not None and g.get("sampler_flag"):
            b["flags"] = [*b.get("flags", []), g["sampler_flag"]]
        checks = _suite_checks(store, run_id, ref, name)
        if len(checks) > 1:  # more than the (empty) flags: the run had tools or long-context calls
            b["suites"] = {k: v for k, v in checks.items() if k != "flags"}
            b["flags"] = [*b.get("flags", []), *checks["flags"]]
    return out


def _prefetch(
    scorer: Any, calls: Calls, endpoints: list[str], items: dict[str, list[Item]]
) -> None:
    """Every output the tests will score, handed to a scorer that scores many per request
    (`score_many`: vLLM's), so the tests below read its memory: every sampled answer, and the
    greedy answers whose text parts from the reference's first (the only ones scored)."""
    from bakeoff.audit._stats import normalize_text

    many = getattr(scorer, "score_many", None)
    if many is None:
        return
    pairs: list[tuple[list[int], str]] = []
    for regime, its in items.items():
        suite = SUITES[regime]
        for it in its:
            rows = [calls.ok.get((ep, suite, it.id, k)) for ep in endpoints for k in (0, 1)]
            texts = [r["output_text"] or "" for r in rows if r is not None]
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
    scorer: Any,
    alternatives: dict[str, Callable[[], Any]] | None,
) -> dict[str, Any]:
    """Every test of one candidate, by name (`greedy`, `sampled`, `logprobs`, `lr:<alt>`)."""
    alpha, tol = settings.alpha, settings.logprob_tolerance
    tests: dict[str, Any] = {}
    if "greedy" in items:
        tests["greedy"] = _greedy(calls, ref, cand, items["greedy"], settings, scorer)
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
