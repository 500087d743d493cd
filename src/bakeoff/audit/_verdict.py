"""From tests to verdicts: one rule, stated once, with the power of that rule.

- **different**: the average of the candidate's e-processes (one per test, `combine`) reaches the
  threshold: 1/alpha per endpoint (`audit.multiplicity: per_endpoint`, the default: each verdict
  alone is wrong with probability at most alpha), or the e-BH procedure over all candidates
  (`fdr`: the expected share of wrong "different" verdicts among all of them is at most alpha,
  under any dependence between the candidates — they share the reference's answers; Wang & Ramdas
  2022, "False discovery rate control with e-values", JRSSB). Each test's null is composite, with a
  stated tolerance an honest engine gets: the greedy test's excess rate of confident divergences
  <= `audit.tolerance`, the sampled tests' per-token log-probability gap <= `audit.logprob_tolerance`.
  An average of e-processes is an e-process, so the verdict may be read at any round.
- **same within delta**: only from the greedy regime, when the anytime-valid upper confidence
  bound on the candidate's *excess* rate of confident divergences (over the reference's own
  repeat's; `_greedy.excess_upper_bound`) has fallen below `audit.same_within` — an equivalence
  claim with its bound, never "no difference was found" — and it is said in traffic: the smallest
  share of requests routed to a substitute that changes c of the outputs that the bound rules out,
  bound / c, for each substitute the audit knows (`known_substitutes`). Per endpoint at alpha.
- **inconclusive** otherwise, with what was seen, the calls "same" would take and the power of
  the applied rule at `audit.power_effects` (`_power`: exact for the greedy rule alone).
- A candidate whose greedy divergences look like a repetition penalty (`_greedy._sampler_flag`) is
  never "different" or "same" on that evidence: its sampler differs; it is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from bakeoff.audit._power import greedy_power
from bakeoff.audit._stats import e_bh
from bakeoff.lineups import AuditSettings, Lineup
from bakeoff.store import PowerAt, RouteShare, TestEvidence, Verdict

Tests = dict[str, TestEvidence]
"""One candidate's tests by name (`greedy`, `sampled`, `logprobs`, `lr:<alternative>`)."""


@dataclass(frozen=True, slots=True)
class Substitute:
    """A substitute a "same" claim is translated to: the share of outputs it changes, and where
    that figure comes from."""

    changes: float
    source: str


DEFAULT_SUBSTITUTES = ["Q8_0", "Q4_K_M"]
"""The local ladder's substitutes looked for among a run's candidates when `audit.alternatives` is
unset (the lineup's own alternatives otherwise)."""


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


def known_substitutes(
    lineup: Lineup, settings: AuditSettings, evidence: dict[str, Tests]
) -> dict[str, Substitute]:
    """The substitutes a "same" claim is translated to, with the share of outputs each changes:
    the stated default (`audit.substitute_change`, Q8_0-like), and every candidate of this run that
    is a named substitute (`audit.alternatives`, else Q8_0 and Q4_K_M of the local ladder, matched
    by endpoint name or local variant) with its excess rate measured in this run — its 95%
    anytime-valid lower bound, so the translation stays conservative."""
    out = {
        "Q8_0-like": Substitute(
            settings.substitute_change,
            "default audit.substitute_change (Q8_0 on the local ladder: 9/40 at "
            "margin 0.1, docs/FIDELITY.md)",
        )
    }
    wanted = {n.lower() for n in (settings.alternatives or DEFAULT_SUBSTITUTES)}
    for ep in lineup.endpoints:
        variant = getattr(ep.local, "variant", None) if ep.local is not None else None
        g = evidence.get(ep.name, {}).get("greedy")
        names = {ep.name.lower(), str(variant).lower()}
        lower = g.excess_lower_bound if g is not None else None
        if g is None or lower is None or not names & wanted or lower <= 0:
            continue
        out[ep.name] = Substitute(
            lower, f"measured in this run ({g.confident_differ}/{g.n}; 95% lower bound)"
        )
    return out


def decide(
    evidence: dict[str, Tests],
    settings: AuditSettings,
    substitutes: dict[str, Substitute] | None = None,
) -> dict[str, Verdict]:
    """Verdict, p-value, why and the claim for each candidate from its tests (mutates the greedy
    test's entry to add the power of the applied rule). `substitutes`: `known_substitutes`
    (default: the stated Q8_0-like one only)."""
    alpha = settings.alpha
    threshold = stop_threshold(settings, len(evidence))
    subs = substitutes or {
        "Q8_0-like": Substitute(settings.substitute_change, "audit.substitute_change")
    }
    paths = {name: combine([t.wealth for t in tests.values()]) for name, tests in evidence.items()}
    if settings.multiplicity == "fdr":
        e_values = {name: (p[-1] if p else 1.0) for name, p in paths.items()}
        rejected = e_bh(e_values, alpha)
    else:
        rejected = {name for name, p in paths.items() if p and max(p) >= threshold}
    out: dict[str, Verdict] = {}
    for name, tests in evidence.items():
        path = paths[name]
        p_value = min(1.0, 1.0 / max(max(path), 1e-300)) if path else 1.0
        g = tests.get("greedy")
        if g is not None:
            _add_power(g, settings, threshold * len(tests), exact=len(tests) == 1)
        v = _verdict(name in rejected, tests, settings, p_value, subs)
        v.e_value = round(path[-1], 4) if path else 1.0
        v.multiplicity = settings.multiplicity
        out[name] = v
    return out


def _add_power(g: TestEvidence, settings: AuditSettings, threshold: float, *, exact: bool) -> None:
    """The greedy rule's power at each of `audit.power_effects` (a share of outputs changed), with
    the reference's own repeat parting at the rate seen so far (plugged in), and the expected calls:
    exact (`_power`) when greedy is the only test and alpha is per endpoint; otherwise the greedy
    test alone at the combined threshold (the average of m e-processes is at least the greedy one
    / m), a lower bound."""
    budget = max(settings.budget, g.n)
    p_y = round((g.reference_repeat_differ or 0) / g.n, 2) if g.n else 0.0
    exact = exact and settings.multiplicity == "per_endpoint"
    power: list[PowerAt] = []
    for effect in settings.power_effects:
        pw = greedy_power(
            effect,
            p_y,
            budget=budget,
            batch=settings.batch,
            tau=settings.tolerance,
            delta=settings.same_within,
            alpha=settings.alpha,
            threshold=threshold,
        )
        if pw is None:
            power = []
            break
        power.append(
            PowerAt(
                effect=effect,
                different=round(pw.different, 4),
                same=round(pw.same, 4),
                expected_calls=round(pw.expected_calls, 1),
            )
        )
    g.power = power
    g.power_is_exact = exact and bool(power)
    if not power:
        g.power_method = (
            f"not computed: {budget} calls beside a reference repeat parting at {p_y:g} is past "
            "the exact chain's size (audit/_power.py MAX_STATES)"
        )
    elif exact:
        g.power_method = (
            "exact: Markov chain over the counts, the reference repeat's rate "
            f"{p_y:g} (to 0.01) plugged in"
        )
    else:
        g.power_method = (
            f"lower bound: the greedy test alone at e-value {threshold:g}, the reference "
            f"repeat's rate {p_y:g} plugged in"
        )


def _share(x: float) -> str:
    """A share as people write it: 1%, 3.9%, 22%."""
    text = f"{x:.1%}" if x < 0.1 else f"{x:.0%}"
    return text.replace(".0%", "%")


def _routes(share: float) -> str:
    """ "routes ≥4.5%", or "routes of any share" when the bound on the excess is at or below 0."""
    return f"routes ≥{_share(share)}" if share > 0 else "routes of any share"


def _rules_out(g: TestEvidence, subs: dict[str, Substitute]) -> list[RouteShare]:
    """Per substitute: the smallest share of requests routed to it that the bound rules out."""
    ub = max(_upper(g), 0.0)
    return [
        RouteShare(
            substitute=name,
            changes=s.changes,
            source=s.source,
            route_share=round(min(1.0, ub / s.changes), 4),
        )
        for name, s in subs.items()
    ]


def _upper(g: TestEvidence) -> float:
    """The greedy test's upper bound on the excess rate (1: none, the vacuous bound)."""
    return 1.0 if g.rate_upper_bound is None else g.rate_upper_bound


def _power_text(g: TestEvidence, budget: int) -> str:
    if not g.power:
        return f"power {g.power_method}"
    cells = " / ".join(f"{p.different:.2f}" for p in g.power)
    effects = " / ".join(_share(p.effect) for p in g.power)
    kind = "" if g.power_is_exact else " at least"
    return f"power{kind} {cells} to see {effects} of outputs changed within {budget} calls"


def _verdict(
    rejected: bool,
    tests: Tests,
    settings: AuditSettings,
    p_value: float,
    subs: dict[str, Substitute],
) -> Verdict:
    g = tests.get("greedy")
    seen = f"{g.confident_differ}/{g.n}" if g else f"n={max(t.n for t in tests.values())}"
    if g is not None and g.sampler_flag:
        return Verdict(
            verdict="inconclusive",
            claim=f"inconclusive ({seen}, sampler)",
            why="the candidate's sampler differs from the reference's (repetition penalty): "
            "its differences are not evidence about the weights",
            p_value=p_value,
        )
    if rejected:
        return Verdict(
            verdict="different",
            claim=f"different (p={p_value:.2g}, {seen})",
            why=_why_different(tests, settings),
            p_value=p_value,
        )
    if g is not None and g.same_at is not None:
        return _same(g, settings, p_value, subs, seen)
    return _inconclusive(g, settings, p_value, seen)


def _same(
    g: TestEvidence, settings: AuditSettings, p_value: float, subs: dict[str, Substitute], seen: str
) -> Verdict:
    """ "same ≤δ", said in traffic: the share of requests routed to each substitute ruled out."""
    delta = settings.same_within
    ruled = _rules_out(g, subs)
    head = ruled[0]
    more = "".join(
        f"; {_routes(r.route_share)} to {r.substitute} (changes ≥{_share(r.changes)}, {r.source})"
        for r in ruled[1:]
    )
    share = f"A share ≥{_share(head.route_share)}" if head.route_share > 0 else "Any share"
    return Verdict(
        verdict="same",
        claim=f"same ≤{_share(delta)} ({seen}; {_routes(head.route_share)} to "
        f"{head.substitute} ruled out)",
        why=(
            f"{g.confident_differ} confident greedy divergences in {g.n} calls, the "
            f"reference's own repeat {g.reference_repeat_differ} (margin {g.margin:g} "
            f"nats; {g.near_ties} near-ties left out): the excess rate is at most "
            f"{_upper(g):.2%} (95% anytime-valid bound), within the stated "
            f"{_share(delta)}. {share} of requests served by a substitute that changes "
            f"≥{_share(head.changes)} of outputs ({head.source}) would have been seen{more}"
        ),
        rules_out=ruled,
        p_value=p_value,
    )


def _inconclusive(
    g: TestEvidence | None, settings: AuditSettings, p_value: float, seen: str
) -> Verdict:
    why = f"not rejected (p={p_value:.2g})"
    if g is not None:
        need = g.calls_for_same
        why += (
            f" against an excess of at most {_share(settings.tolerance)} (the tolerance)"
            f"; {seen} prompts part confidently (margin {g.margin:g} nats; the reference's own "
            f"repeat {g.reference_repeat_differ}), excess bound {_upper(g):.1%} > "
            f"{_share(settings.same_within)}: 'same' needs "
            + (f"{need} greedy calls at this count" if need else "a smaller divergence count")
            + f"; {_power_text(g, max(settings.budget, g.n))}"
        )
    else:
        why += "; only the greedy regime bounds the difference ('same' needs it)"
    bound = f", ≤{_upper(g):.0%}" if g else ""
    return Verdict(
        verdict="inconclusive", claim=f"inconclusive ({seen}{bound})", why=why, p_value=p_value
    )


def _why_different(tests: Tests, settings: AuditSettings) -> str:
    g = tests.get("greedy")
    strongest = max(tests, key=lambda k: max(tests[k].wealth or [0]))
    why = f"the {strongest} test rejected at alpha={settings.alpha}"
    if strongest == "greedy" and g is not None:
        why += (
            f": {g.confident_differ} of {g.n} prompts part from the reference where it "
            f"was sure of its token (margin > {g.margin:g} nats; the reference's own repeat "
            f"{g.reference_repeat_differ}); the excess rate is above the tolerance "
            f"{_share(settings.tolerance)} an honest engine gets (95% lower bound "
            f"{max(g.excess_lower_bound or 0.0, 0):.1%})"
        )
    elif strongest.startswith("lr:"):
        why = (
            f"the likelihood-ratio test toward {strongest[3:]} rejected at alpha="
            f"{settings.alpha}: the samples are likelier under {strongest[3:]} than the "
            f"reference's own are, by more than {settings.logprob_tolerance:g} nats per token"
        )
    elif strongest in ("sampled", "logprobs"):
        why += f" (tolerance {settings.logprob_tolerance:g} nats per token)"
    if settings.multiplicity == "fdr":
        why += " (e-BH over all candidates)"
    return why
