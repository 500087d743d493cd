"""From tests to verdicts: one rule, stated once, with the power of that rule.

- **different**: the average of the candidate's e-processes (one per test, `_combine`) reaches the
  threshold: 1/alpha per endpoint (`audit.multiplicity: per_endpoint`, the default: each verdict
  alone is wrong with probability at most alpha), or the e-BH procedure over all candidates
  (`fdr`: the expected share of wrong "different" verdicts among all of them is at most alpha,
  under any dependence between the candidates — they share the reference's answers; Wang & Ramdas
  2022, "False discovery rate control with e-values", JRSSB). An average of e-processes is an
  e-process, so the verdict may be read at any round.
- **same within delta**: only from the greedy regime, when the anytime-valid upper confidence
  bound on the rate of confident divergences (`_greedy.rate_upper_bound`) has fallen below
  `audit.same_within` — an equivalence claim with its bound, never "no difference was found".
  Per endpoint at alpha.
- **inconclusive** otherwise, with what was seen and the calls "same" would take.
- A candidate whose greedy divergences look like a repetition penalty (`_greedy._sampler_flag`) is
  never "different" or "same" on that evidence: its sampler differs; it is flagged.
"""

from __future__ import annotations

from typing import Any

from bakeoff.audit._greedy import expected_calls_to_reject, greedy_power
from bakeoff.audit._stats import e_bh
from bakeoff.lineups import AuditSettings


def combine(paths: list[list[float]]) -> list[float]:
    """Average of e-processes observed on a common index (a shorter path keeps its last value)."""
    paths = [p for p in paths if p]
    if not paths:
        return []
    n = max(len(p) for p in paths)
    return [sum(p[min(i, len(p) - 1)] for p in paths) / len(paths) for i in range(n)]


def stop_threshold(settings: AuditSettings, n_candidates: int) -> float:
    """The e-value at which a candidate is decided "different": 1/alpha per endpoint; K/alpha
    under `fdr` (e-BH rejects an e-value that large whatever the other candidates show)."""
    k = n_candidates if settings.multiplicity == "fdr" else 1
    return k / settings.alpha


def decide(evidence: dict[str, dict[str, Any]], settings: AuditSettings) -> dict[str, Any]:
    """Verdict, p-value, why and the claim for each candidate from its tests (mutates the greedy
    test's entry to add the power of the applied rule)."""
    alpha = settings.alpha
    threshold = stop_threshold(settings, len(evidence))
    paths = {
        name: combine([t["wealth"] for t in tests.values()]) for name, tests in evidence.items()
    }
    if settings.multiplicity == "fdr":
        e_values = {name: (p[-1] if p else 1.0) for name, p in paths.items()}
        rejected = e_bh(e_values, alpha)
    else:
        rejected = {name for name, p in paths.items() if p and max(p) >= threshold}
    out: dict[str, Any] = {}
    for name, tests in evidence.items():
        path = paths[name]
        p_value = min(1.0, 1.0 / max(max(path), 1e-300)) if path else 1.0
        g = tests.get("greedy")
        if g is not None:
            _add_power(g, settings, threshold * len(tests), exact=len(tests) == 1)
        out[name] = {
            **_verdict(name in rejected, tests, settings, p_value),
            "p_value": p_value,
            "e_value": round(path[-1], 4) if path else 1.0,
            "multiplicity": settings.multiplicity,
        }
    return out


def _add_power(
    g: dict[str, Any], settings: AuditSettings, threshold: float, *, exact: bool
) -> None:
    """Exact power of the greedy test alone at the combined rule's threshold: the average of m
    e-processes is at least the greedy one's / m, so this is a lower bound on the power of the
    verdict when other tests are combined, and exact when greedy is the only one."""
    effect, budget = settings.same_effect, max(settings.budget, g["n"])
    g["stated_effect"] = effect
    g["power_at_stated_effect"] = round(greedy_power(effect, budget, threshold), 4)
    g["power_is_exact"] = exact and settings.multiplicity == "per_endpoint"
    g["expected_calls_at_stated_effect"] = expected_calls_to_reject(effect, threshold)


def _verdict(
    rejected: bool, tests: dict[str, Any], settings: AuditSettings, p_value: float
) -> dict[str, str]:
    g = tests.get("greedy")
    flag = g.get("sampler_flag") if g else None
    delta = settings.same_within
    seen = f"{g['confident_differ']}/{g['n']}" if g else f"n={max(t['n'] for t in tests.values())}"
    if flag:
        return {
            "verdict": "inconclusive",
            "claim": f"inconclusive ({seen}, sampler)",
            "why": "the candidate's sampler differs from the reference's (repetition penalty): "
            "its differences are not evidence about the weights",
        }
    if rejected:
        strongest = max(tests, key=lambda k: max(tests[k]["wealth"] or [0]))
        why = f"the {strongest} test rejected at alpha={settings.alpha}"
        if strongest == "greedy" and g is not None:
            why += (
                f": {g['confident_differ']} of {g['n']} prompts part from the reference where it "
                f"was sure of its token (margin > {g['margin']:g} nats)"
            )
        if strongest.startswith("lr:"):
            why = (
                f"the likelihood-ratio test toward {strongest[3:]} rejected at alpha="
                f"{settings.alpha}: the samples are likelier under {strongest[3:]} than the "
                "reference's own are"
            )
        if settings.multiplicity == "fdr":
            why += " (e-BH over all candidates)"
        return {"verdict": "different", "claim": f"different (p={p_value:.2g}, {seen})", "why": why}
    if g is not None and g["same_at"] is not None:
        return {
            "verdict": "same",
            "claim": f"same ≤{delta:.0%} ({seen})",
            "why": (
                f"{g['confident_differ']} confident greedy divergences in {g['n']} calls "
                f"(margin {g['margin']:g} nats; {g['near_ties']} near-ties left out): at most "
                f"{g['rate_upper_bound']:.1%} of prompts part confidently from the reference "
                f"(95% anytime-valid bound), within the stated {delta:.0%}"
            ),
        }
    why = f"not rejected (p={p_value:.2g})"
    if g is not None:
        need = g["calls_for_same"]
        why += (
            f"; {seen} prompts part confidently, bound {g['rate_upper_bound']:.0%} > "
            f"{delta:.0%}: 'same' needs "
            + (f"{need} greedy calls at this count" if need else "a smaller divergence count")
            + f"; power {g['power_at_stated_effect']:.2f} to see {settings.same_effect:.0%} of "
            f"prompts parting within {max(settings.budget, g['n'])} calls"
        )
    else:
        why += "; only the greedy regime bounds the difference ('same' needs it)"
    bound = f", ≤{g['rate_upper_bound']:.0%}" if g else ""
    return {"verdict": "inconclusive", "claim": f"inconclusive ({seen}{bound})", "why": why}
