"""No designated reference (`audit.reference: consensus`): the largest agreeing group stands for it.

Every endpoint answers the audit's greedy prompts as a reference does — twice, asking
`top_logprobs`. Two endpoints *agree* when their greedy answers rarely part confidently: per
prompt, their first answers differ and the margin at the first differing token, from the
`top_logprobs` of either side that returned usable ones (`_topk`), is above `audit.margin` (an
answer stopping where the other goes on, or a pair where neither side returned log-probabilities,
counts as confident, as with no margins). Honest engines flip near-ties, where both sides' margins
are small; a substitute parts where one side was sure. The pair agrees when the 95% anytime-valid
upper bound on that rate (`_greedy.excess_upper_bound`, the same bound as "same ≤δ") is at most
`audit.consensus_within`.

The rule, deterministic from the stored calls:
- the groups of endpoints that all agree pairwise (cliques of the agreement graph); the largest;
- the audit *cannot tell* — every endpoint inconclusive, nobody guessed — when no two endpoints
  agree, when two largest groups tie, or when the largest is not a strict majority of the lineup;
- otherwise that group is assumed to serve the reference; its member with usable `top_logprobs`
  that parts least from the others (the smallest sum of pairwise rates; then lineup order) is the
  reference, and every other endpoint is audited against it by the ordinary rule (`analyse`:
  the same tests, e-values and multiplicity), each verdict saying what was assumed.

What it assumes: the majority is honest. A dishonest majority that agrees (the same substitute at
several providers) is taken as the reference — said in every verdict, never silently. The
measured rates: tests/test_audit_consensus.py, docs/FIDELITY.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bakeoff.audit._greedy import confident, excess_upper_bound
from bakeoff.store import AssumedReference, Verdict

if TYPE_CHECKING:
    from bakeoff.audit._analysis import Calls
    from bakeoff.audit._source import FidelityCall
    from bakeoff.audit._topk import TopK
    from bakeoff.audit._types import AuditReads
    from bakeoff.lineups import AuditSettings, Lineup
    from bakeoff.suites import Item

Pair = tuple[str, str]


def wanted(lineup: Lineup, settings: AuditSettings) -> bool:
    """The audit finds its reference by consensus: none designated, `audit.reference: consensus`."""
    return lineup.reference is None and settings.reference == "consensus"


@dataclass(frozen=True)
class Found:
    """What the agreement graph shows: the group assumed to serve the reference and its
    representative, or (`representative` None) why the audit cannot tell."""

    names: tuple[str, ...]
    group: tuple[str, ...]
    representative: str | None
    reason: str | None
    bounds: dict[Pair, float]

    def assumed(self) -> AssumedReference:
        """The assumption in words and numbers, as every verdict carries it."""
        n = len(self.names)
        if self.representative is None:
            text = f"no reference: the audit cannot tell which endpoints serve the model — {self.reason}"
        else:
            text = (
                f"reference assumed: the largest agreeing group {{{', '.join(self.group)}}} of "
                f"{n}, represented by {self.representative} (no reference was designated; a "
                "majority that agrees can still be wrong)"
            )
        return AssumedReference(
            text=text,
            group=list(self.group),
            of=n,
            representative=self.representative,
            rates={f"{a}|{b}": round(u, 4) for (a, b), u in self.bounds.items()},
        )


def pair_divergence(
    a: FidelityCall, b: FidelityCall, ta: TopK | None, tb: TopK | None, margin: float
) -> int:
    """1 when the two greedy answers part confidently: they differ, and the margin at the first
    differing token from either side's usable top-k (`ta`, `tb`: None when unusable) is above
    `margin` — or neither side has one (then every divergence counts). 0 when one answer is the
    other cut by the token limit."""
    from bakeoff.audit._stats import normalize_text
    from bakeoff.audit._topk import topk_divergence

    if normalize_text(a.output_text or "") == normalize_text(b.output_text or ""):
        return 0
    sides = [(t, x, y) for t, x, y in ((ta, a, b), (tb, b, a)) if t is not None]
    if not sides:
        return 1
    divs = [
        topk_divergence(
            t,
            y.output_text or "",
            reference_finish=x.finish_reason,
            candidate_finish=y.finish_reason,
        )
        for t, x, y in sides
    ]
    if any(d is None for d in divs):
        return 0  # not parted: one is the other cut by max_tokens
    return int(any(confident(d, margin) for d in divs))


def pair_indicators(
    calls: Calls, names: list[str], items: list[Item], margin: float
) -> tuple[dict[Pair, list[int]], set[str]]:
    """Per pair of endpoints (lineup order), the confident-divergence indicator of each prompt both
    answered (first answers, prompts in the audit's order); and the endpoints with a usable top-k
    on at least one answer."""
    from bakeoff.audit._analysis import SUITES
    from bakeoff.audit._topk import reference_topk

    suite = SUITES["greedy"]
    rows: dict[str, dict[str, FidelityCall]] = {n: {} for n in names}
    tops: dict[tuple[str, str], TopK | None] = {}
    usable: set[str] = set()
    for n in names:
        for it in items:
            row = calls.ok.get((n, suite, it.id, 0))
            if row is None:
                continue
            rows[n][it.id] = row
            t = reference_topk(row.logprobs_json, row.output_text)
            tops[(n, it.id)] = t if t.reason is None else None
            usable |= {n} if t.reason is None else set()
    out: dict[Pair, list[int]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out[(a, b)] = [
                pair_divergence(
                    rows[a][it.id], rows[b][it.id], tops[(a, it.id)], tops[(b, it.id)], margin
                )
                for it in items
                if it.id in rows[a] and it.id in rows[b]
            ]
    return out, usable


def _cliques(names: list[str], edges: set[Pair]) -> list[tuple[str, ...]]:
    """Every maximal clique of the agreement graph (Bron–Kerbosch with a pivot), each in lineup
    order."""
    order = {n: i for i, n in enumerate(names)}
    nbrs = {n: {m for m in names if (n, m) in edges or (m, n) in edges} for n in names}
    found: list[tuple[str, ...]] = []

    def grow(r: set[str], p: set[str], x: set[str]) -> None:
        if not p and not x:
            found.append(tuple(sorted(r, key=order.__getitem__)))
            return
        pivot = max(p | x, key=lambda u: (len(nbrs[u] & p), -order[u]))
        for v in sorted(p - nbrs[pivot], key=order.__getitem__):
            grow(r | {v}, p & nbrs[v], x & nbrs[v])
            p = p - {v}
            x = x | {v}

    grow(set(), set(names), set())
    return found


def find_reference(
    names: list[str],
    pairs: dict[Pair, list[int]],
    usable: Iterable[str],
    *,
    alpha: float,
    within: float,
) -> Found:
    """The consensus rule (module docstring) on the pairs' indicators: pure, so the count-level
    simulation (tests/test_audit_consensus.py) runs exactly what an audit does."""
    seen: dict[tuple[int, ...], float] = {}  # pairs that part alike (often never) share a bound
    for x in pairs.values():
        if tuple(x) not in seen:
            seen[tuple(x)] = excess_upper_bound(x, [0] * len(x), alpha)
    bounds = {p: seen[tuple(x)] for p, x in pairs.items()}
    edges = {p for p, u in bounds.items() if u <= within}
    cliques = _cliques(names, edges)
    size = max((len(c) for c in cliques), default=0)
    largest = [c for c in cliques if len(c) == size]

    def cannot(reason: str, group: tuple[str, ...] = ()) -> Found:
        return Found(tuple(names), group, None, reason, bounds)

    if size < 2:
        return cannot(
            f"no two of the {len(names)} endpoints agree (confident-divergence bound ≤ {within:g})"
        )
    if len(largest) > 1:
        groups = " and ".join("{" + ", ".join(c) + "}" for c in largest)
        return cannot(f"{len(largest)} groups of {size} agree equally: {groups}")
    group = largest[0]
    if 2 * size <= len(names):
        return cannot(
            f"the largest agreeing group {{{', '.join(group)}}} is {size} of {len(names)}, "
            "not a majority",
            group,
        )
    ok = set(usable)

    def rate(a: str, b: str) -> float:
        x = pairs.get((a, b), pairs.get((b, a), []))
        return sum(x) / len(x) if x else 1.0

    rep = min(
        group,
        key=lambda m: (m not in ok, sum(rate(m, o) for o in group if o != m), names.index(m)),
    )
    return Found(tuple(names), group, rep, None, bounds)


def consensus_analyse(
    store: AuditReads,
    run_id: str,
    lineup: Lineup,
    settings: AuditSettings,
    items: dict[str, list[Item]],
) -> dict[str, Verdict]:
    """Verdicts with no designated reference: the consensus rule on the stored greedy calls, then
    `analyse` against the representative (every verdict saying what it assumed); or every
    endpoint inconclusive when the audit cannot tell."""
    from bakeoff.audit._analysis import _load, analyse

    calls = _load(store, run_id)
    names = [e.name for e in lineup.endpoints]
    pairs, usable = pair_indicators(calls, names, items.get("greedy", []), settings.margin)
    found = find_reference(
        names, pairs, usable, alpha=settings.alpha, within=settings.consensus_within
    )
    assumed = found.assumed()
    if found.representative is None:
        return {n: _cannot_tell(n, assumed, calls) for n in names}
    as_ref = lineup.model_copy(update={"reference": found.representative})
    return assume(analyse(store, run_id, as_ref, settings, items, None, alternatives={}), found)


def assume(verdicts: dict[str, Verdict], found: Found) -> dict[str, Verdict]:
    """Every verdict made against the representative says what was assumed: in its claim (the
    CLI's and the report's verdict cell), its why, and `assumed_reference` (JSON)."""
    assumed = found.assumed()
    for v in verdicts.values():
        v.assumed_reference = assumed
        v.claim = f"{v.claim or v.verdict}, reference assumed"
        v.why = f"{assumed.text}. {v.why or ''}".rstrip()
    return verdicts


def _cannot_tell(name: str, assumed: AssumedReference, calls: Calls) -> Verdict:
    return Verdict(
        verdict="inconclusive",
        claim="inconclusive (no reference: cannot tell)",
        why=assumed.text,
        p_value=1.0,
        calls=calls.used.get(name, 0),
        tokens=calls.tokens.get(name, 0),
        errors=calls.errors.get(name, 0),
        assumed_reference=assumed,
    )
