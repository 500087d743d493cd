"""What else a candidate does unlike the reference, beside the tests: its prompt's token count (a
changed chat template, an injected system prompt), whether temperature is applied, its style, and
— from the run's own suite calls — its tool calls and silent truncation. Read with the verdict as
flags; never part of the verdict rule."""

from __future__ import annotations

import re
from statistics import median
from typing import TYPE_CHECKING

from bakeoff.audit._stats import normalize_text
from bakeoff.lineups import purposes
from bakeoff.store import Behaviour, Style, Styles, SuiteChecks

if TYPE_CHECKING:
    from bakeoff.audit._analysis import Calls
    from bakeoff.audit._source import FidelityCall
    from bakeoff.audit._types import AuditReads, Cells, ReferenceScorer
    from bakeoff.suites import Item

_REFUSAL = re.compile(r"\b(i can't|i cannot|i'm sorry|i am sorry|as an ai)\b", re.I)
_MARKDOWN = re.compile(r"(\*\*|^#+ |^\s*[-*] |```)", re.M)
_GREEDY, _SAMPLED = purposes.fidelity_suite("greedy"), purposes.fidelity_suite("sampled")


def _style(rows: list[FidelityCall]) -> Style:
    texts = [r.output_text or "" for r in rows]
    if not texts:
        return Style()
    return Style(
        mean_words=round(sum(len(t.split()) for t in texts) / len(texts), 2),
        markdown_rate=round(sum(bool(_MARKDOWN.search(t)) for t in texts) / len(texts), 3),
        refusal_rate=round(sum(bool(_REFUSAL.search(t)) for t in texts) / len(texts), 3),
    )


def _prompt_deltas(calls: Calls, ref: str, cand: str, items: list[Item]) -> list[int]:
    """Per answered prompt, the candidate's prompt tokens minus the reference's."""
    deltas = []
    for it in items:
        for suite in (_GREEDY, _SAMPLED):
            c, r = calls.ok.get((cand, suite, it.id, 0)), calls.ok.get((ref, suite, it.id, 0))
            if c is not None and r is not None and c.prompt_tokens and r.prompt_tokens:
                deltas.append(c.prompt_tokens - r.prompt_tokens)
    return deltas


def _local_template_deltas(
    calls: Calls, ref: str, items: list[Item], scorer: ReferenceScorer
) -> list[int]:
    """Per greedy prompt, the reference's prompt tokens minus the scorer's chat template's."""
    local = []
    for it in items:
        r = calls.ok.get((ref, _GREEDY, it.id, 0))
        if r is not None and r.prompt_tokens:
            local.append(r.prompt_tokens - len(scorer.prompt_tokens(it.messages or [])))
    return local


def _same_as_greedy(calls: Calls, ep: str, items: list[Item]) -> float | None:
    """The share of an endpoint's T=1 samples equal to its greedy output (None: no pair)."""
    pairs = []
    for it in items:
        a, b = calls.ok.get((ep, _SAMPLED, it.id, 0)), calls.ok.get((ep, _GREEDY, it.id, 0))
        if a is not None and b is not None:
            pairs.append((a, b))
    if not pairs:
        return None
    return sum(
        normalize_text(a.output_text or "") == normalize_text(b.output_text or "") for a, b in pairs
    ) / len(pairs)


def behaviour(
    calls: Calls, ref: str, cand: str, items: list[Item], scorer: ReferenceScorer | None
) -> Behaviour:
    out = Behaviour()
    deltas = _prompt_deltas(calls, ref, cand, items)
    if deltas:
        out.prompt_tokens_delta_vs_reference = median(deltas)
        out.prompt_tokens_mismatch_rate = round(sum(x != 0 for x in deltas) / len(deltas), 3)
    if scorer is not None and (local := _local_template_deltas(calls, ref, items, scorer)):
        out.reference_vs_local_template_delta = median(local)
    sc, sr = _same_as_greedy(calls, cand, items), _same_as_greedy(calls, ref, items)
    if sc is not None and sr is not None:
        out.sampled_equals_greedy_rate = round(sc, 3)
        out.reference_sampled_equals_greedy_rate = round(sr, 3)
    rows_c = [v for k, v in calls.ok.items() if k[0] == cand]
    rows_r = [v for k, v in calls.ok.items() if k[0] == ref]
    out.style = Styles(candidate=_style(rows_c), reference=_style(rows_r))
    flags = []
    if deltas and median(deltas) != 0:
        flags.append(
            f"prompt is {median(deltas):+g} tokens vs the reference's for the same messages "
            "(chat template changed or a system prompt injected?)"
        )
    if sc is not None and sr is not None and sc >= 0.9 and sr <= 0.6:
        flags.append("T=1 samples equal the greedy output: temperature is ignored?")
    out.flags = flags
    return out


def _tool_calls(
    rows: list[Cells], ref: str, cand: str
) -> tuple[dict[str, dict[str, bool]], dict[str, list[bool]]]:
    """Per endpoint: whether it called a tool on each item, and whether each call's arguments
    are valid against the tool's schema."""
    import jsonschema
    import orjson

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
    return called, valid


def _tool_checks(out: SuiteChecks, rows: list[Cells], ref: str, cand: str) -> None:
    """Tool calls: does the candidate call a tool where the reference does (F1), and are its
    arguments valid against the tool's schema."""
    called, valid = _tool_calls(rows, ref, cand)
    shared = sorted(set(called[ref]) & set(called[cand]))
    if not shared:
        return
    t = [called[ref][i] for i in shared]
    p = [called[cand][i] for i in shared]
    tp = sum(a and b for a, b in zip(t, p, strict=True))
    wrong = sum(a != b for a, b in zip(t, p, strict=True))
    out.tool_call_f1 = round(2 * tp / (2 * tp + wrong), 3) if tp + wrong else None
    out.tool_items = len(shared)
    if valid[cand]:
        out.tool_args_valid_rate = round(sum(valid[cand]) / len(valid[cand]), 3)
    if valid[ref]:
        out.reference_tool_args_valid_rate = round(sum(valid[ref]) / len(valid[ref]), 3)


def _check_flags(out: SuiteChecks) -> list[str]:
    flags = []
    f1 = out.tool_call_f1
    if f1 is not None and f1 < 0.8 and (out.tool_items or 0) >= 5:
        flags.append(f"calls tools where the reference does not, or not where it does (F1 {f1})")
    va, vr = out.tool_args_valid_rate, out.reference_tool_args_valid_rate
    if va is not None and vr is not None and va < vr - 0.2:
        flags.append(f"tool arguments valid {va:.0%} of the time, the reference's {vr:.0%}")
    t, tr = out.truncation_suspected, out.reference_truncation_suspected
    if t is not None and tr is not None and t > tr + 1:
        flags.append(f"long prompts look silently truncated on {t} items (reference: {tr})")
    return flags


def suite_checks(
    store: AuditReads, run_id: str, ref: str, cand: str
) -> tuple[SuiteChecks, list[str]]:
    """Behavioural checks from the run's own suite calls, when it ran them: tool calls and silent
    truncation of long prompts (the long-context scorer's flag); with the flags they raise. No
    field set: the run had neither."""
    out = SuiteChecks()
    _tool_checks(out, list(store.tool_calls(run_id, (ref, cand))), ref, cand)
    trunc = store.score_sums(run_id, "truncation_suspected", (ref, cand))
    if trunc:
        out.truncation_suspected = int(trunc.get(cand) or 0)
        out.reference_truncation_suspected = int(trunc.get(ref) or 0)
    return out, _check_flags(out)
