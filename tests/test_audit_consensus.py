"""No designated reference (`audit.reference: consensus`), simulated at the level of answers where
the truth is known: seeded audits of k honest endpoints and m substitutes, decided by the
functions the audit itself calls — `find_reference` on the pairs' confident-divergence indicators,
then `greedy_tests` + `decide` of every other endpoint against the representative, and `assume`.

Per prompt, each endpoint's greedy answer is a *base* (what its weights say where they are sure)
and a near-tie flip. Honest endpoints share the base "T"; at a near-tie prompt (probability
`TIE`) each flips its argmax with probability 1/2 — the answers then differ, but both sides'
margins are small, so the divergence is not confident; each also parts confidently on its own
with probability `EPS` (an answer ending where another goes on). A substitute of kind s parts from
"T" confidently with probability c_s, the same way at every provider serving it (same weights, same
answer). Two answers part confidently exactly when their bases differ. Repeats: the same base
(honest noise drawn afresh), near-ties re-flipped with probability `REFLIP`.

A fixed 60 prompts per audit (every endpoint answers each, as the consensus audit asks), REPS
seeded audits per lineup; every rate is a binomial proportion with Monte Carlo error
sqrt(p (1 - p) / REPS), printed with it. The figures are in docs/FIDELITY.md."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from bakeoff.audit._consensus import Found, assume, find_reference, pair_divergence
from bakeoff.audit._greedy import greedy_tests
from bakeoff.audit._source import FidelityCall
from bakeoff.audit._topk import reference_topk
from bakeoff.audit._verdict import decide
from bakeoff.lineups import AuditSettings
from bakeoff.store import Verdict

N = 60
SETTINGS = AuditSettings(reference="consensus", budget=N)
REPS = 200
TIE, EPS, REFLIP = 0.3, 0.01, 0.1
KINDS = {"q8": 0.22, "q4": 0.75, "q2": 0.9}
"""Substitutes by their rate of confident divergence from the model: Q8_0 at 22% is the local
ladder's (9/40 at margin 0.1, docs/FIDELITY.md); Q4_K_M- and Q2_K-like."""


def _answers(rng: np.random.Generator, lineup: list[str]) -> dict[tuple[str, int], np.ndarray]:
    """Each endpoint's bases on N prompts, repeats 0 and 1: 0 the model's, a kind's code where a
    substitute parts, a unique negative code where an honest endpoint parts on its own."""
    parts = {k: rng.random(N) < c for k, c in KINDS.items()}
    out: dict[tuple[str, int], np.ndarray] = {}
    for j, name in enumerate(lineup):
        kind = name.split("-")[0]
        for rep in (0, 1):
            if kind == "honest":
                own = rng.random(N) < EPS
                out[(name, rep)] = np.where(own, -(1 + j * 2 * N + rep * N + np.arange(N)), 0)
            else:
                out[(name, rep)] = np.where(parts[kind], 1 + list(KINDS).index(kind), 0)
    return out


def _flips(rng: np.random.Generator, lineup: list[str]) -> dict[tuple[str, int], np.ndarray]:
    """Near-tie flips: they change the text, never the base (not confident)."""
    tie = rng.random(N) < TIE
    out = {}
    for name in lineup:
        first = tie & (rng.random(N) < 0.5)
        out[(name, 0)] = first
        out[(name, 1)] = first ^ (tie & (rng.random(N) < REFLIP))
    return out


def one_audit(
    rng: np.random.Generator, lineup: list[str], margins: bool = True
) -> tuple[Found, dict[str, Verdict]]:
    """One simulated audit: the consensus, and the verdicts as `consensus_analyse` gives them.
    `margins` False: no endpoint returned log-probabilities, every textual divergence counts
    (near-tie flips too)."""
    bases, flips = _answers(rng, lineup), _flips(rng, lineup)

    def parts(a: tuple[str, int], b: tuple[str, int]) -> list[int]:
        d = bases[a] != bases[b]
        return (d if margins else d | (flips[a] != flips[b])).astype(int).tolist()

    pairs = {((a, b)): parts((a, 0), (b, 0)) for i, a in enumerate(lineup) for b in lineup[i + 1 :]}
    found = find_reference(
        lineup, pairs, lineup, alpha=SETTINGS.alpha, within=SETTINGS.consensus_within
    )
    rep = found.representative
    if rep is None:
        return found, {}
    y = parts((rep, 1), (rep, 0))
    evidence = {}
    for c in lineup:
        if c == rep:
            continue
        x = parts((c, 0), (rep, 0))
        g = greedy_tests(
            x, y, delta=SETTINGS.same_within, tau=SETTINGS.tolerance, alpha=SETTINGS.alpha
        )
        g.margin, g.near_ties, g.sampler_flag = SETTINGS.margin, 0, None
        evidence[c] = {"greedy": g}
    return found, assume(decide(evidence, SETTINGS), found)


def simulate(lineup: list[str], seed: int, margins: bool = True) -> dict[str, float]:
    """Rates over REPS audits: the reference taken is an honest endpoint (`rep_honest`) or a
    substitute (`rep_substitute`), or none (`cannot` tell); the group assumed is exactly the
    honest endpoints (`group_exact`); with an honest reference, honest endpoints called
    "different" and substitutes called "same" or "different" (per verdict); with a substitute's,
    the honest endpoints it calls "different" (`accused`); and whether every
    verdict said it assumed the reference (`said`, over the audits that took one)."""
    rng = np.random.default_rng(seed)
    honest = {n for n in lineup if n.startswith("honest")}
    keys = ("rep_honest", "rep_substitute", "cannot", "group_exact")
    counts = dict.fromkeys((*keys, "honest_diff", "sub_same", "sub_diff", "accused"), 0)
    said = n_honest = n_sub = 0
    by_kind: dict[str, int] = {}
    for _ in range(REPS):
        found, verdicts = one_audit(rng, lineup, margins)
        if found.representative is None:
            counts["cannot"] += 1
            continue
        counts["group_exact"] += set(found.group) == honest
        said += all(
            v.assumed_reference is not None
            and v.assumed_reference.text.startswith("reference assumed: the largest agreeing group")
            and (v.claim or "").endswith("reference assumed")
            for v in verdicts.values()
        )
        if found.representative not in honest:
            counts["rep_substitute"] += 1
            counts["accused"] += sum(verdicts[h].verdict == "different" for h in honest)
            continue
        counts["rep_honest"] += 1
        for name, v in verdicts.items():
            if name in honest:
                n_honest += 1
                counts["honest_diff"] += v.verdict == "different"
            else:
                n_sub += 1
                counts["sub_same"] += v.verdict == "same"
                counts["sub_diff"] += v.verdict == "different"
                kind = name.split("-")[0]
                by_kind[kind] = by_kind.get(kind, 0) + (v.verdict == "different")
    rates = {k: counts[k] / REPS for k in keys}
    rates["honest_diff"] = counts["honest_diff"] / max(n_honest, 1)
    rates["sub_same"] = counts["sub_same"] / max(n_sub, 1)
    rates["sub_diff"] = counts["sub_diff"] / max(n_sub, 1)
    rates["accused"] = counts["accused"] / max(counts["rep_substitute"] * len(honest), 1)
    for kind, k in by_kind.items():  # per substitute, over the audits with an honest reference
        per = sum(n.startswith(kind + "-") for n in lineup) * counts["rep_honest"]
        rates[f"{kind}_diff"] = k / per
    taken = counts["rep_honest"] + counts["rep_substitute"]
    rates["said"] = said / taken if taken else 1.0
    return rates


def mc(p: float, n: int = REPS) -> float:
    """Monte Carlo standard error of a proportion over n audits."""
    return math.sqrt(p * (1 - p) / n)


def _show(name: str, r: dict[str, float]) -> None:
    print(name, ", ".join(f"{k} {v:.3f}±{mc(v):.3f}" for k, v in r.items()))


def test_an_honest_majority_is_found_and_the_substitutes_flagged():
    """3 honest endpoints (30% near-tie prompts, each flipping half of them) and a Q8_0-like and a
    Q2_K-like substitute: the group is the honest three; no honest endpoint is called different,
    no substitute same; every verdict says the reference was assumed."""
    r = simulate(["honest-a", "honest-b", "honest-c", "q8-x", "q2-y"], seed=1)
    _show("3 honest + q8, q2", r)
    assert r["rep_honest"] >= 0.95 and r["rep_substitute"] == 0
    assert r["honest_diff"] <= SETTINGS.alpha
    assert r["sub_same"] == 0 and r["sub_diff"] >= 0.9
    assert r["said"] == 1.0


def test_without_margins_near_ties_break_the_group_and_nothing_is_guessed():
    """The same lineup when no endpoint returns log-probabilities: every near-tie flip counts, the
    honest pairs part at ~15% of prompts, their bound stays above 0.2 — the audit mostly cannot
    tell, and when it does find a group it is the honest one (never a substitute's)."""
    r = simulate(["honest-a", "honest-b", "honest-c", "q8-x", "q2-y"], seed=1, margins=False)
    _show("3 honest + q8, q2, no margins", r)
    assert r["rep_substitute"] == 0
    assert r["cannot"] >= 0.5


def test_an_honest_minority_is_never_guessed():
    """The local ladder's shape: 4 honest endpoints against 5 substitutes of 3 kinds (two Q2_K-like
    providers agree with each other). 4 of 9 is no majority: the audit says it cannot tell, every
    time — it never takes the substitutes' pair, nor guesses the honest four."""
    lineup = [f"honest-{i}" for i in range(4)] + ["q8-a", "q4-b", "q4-c", "q2-d", "q2-e"]
    r = simulate(lineup, seed=2)
    _show("4 honest + 5 substitutes", r)
    assert r["cannot"] >= 0.95 and r["rep_substitute"] == 0


def test_a_dishonest_majority_is_taken_and_says_so():
    """2 honest endpoints against 3 providers of the same Q4_K_M-like substitute: the agreeing
    majority is the substitute's. The rule takes it — it cannot know better from answers alone —
    and calls the honest two different; every verdict says that it assumed so, naming the group."""
    r = simulate(["honest-a", "honest-b", "q4-x", "q4-y", "q4-z"], seed=3)
    _show("2 honest + 3 x q4", r)
    assert r["rep_substitute"] >= 0.95 and r["accused"] >= 0.9
    assert r["said"] == 1.0


@pytest.mark.parametrize(
    ("lineup", "why"),
    [
        (["honest-a", "honest-b", "q4-x", "q4-y"], ("groups of 2 agree equally", "not a majority")),
        (["honest-a", "q2-x"], ("no two of the 2 endpoints agree",)),
    ],
)
def test_a_tie_or_no_agreement_cannot_tell(lineup, why):
    """Two groups of two (honest, and one substitute twice; or the substitute's pair alone when an
    honest pair's own noise parted them), or two endpoints that disagree: no verdict is guessed."""
    rng = np.random.default_rng(4)
    for _ in range(20):
        found, verdicts = one_audit(rng, lineup)
        assert found.representative is None and not verdicts
        assert any(w in (found.reason or "") for w in why), found.reason
        assert found.assumed().text.startswith("no reference: the audit cannot tell")


# -- one pair's divergence, margins from either side's top-k (`pair_divergence`) -----------------


def _call(text: str, entries: list[dict] | None, finish: str = "stop") -> FidelityCall:
    lp = orjson.dumps(entries).decode() if entries is not None else None
    return FidelityCall("e", "fidelity.greedy", "i", 0, "ok", text, finish, 5, 4, lp)


def _entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict:
    return {
        "token": token,
        "logprob": logprob,
        "top_logprobs": [{"token": t, "logprob": v} for t, v in top],
    }


FRANCE = [
    _entry("The", -0.1, [("The", -0.1), ("A", -2.5)]),
    _entry(" capital", -0.2, [(" capital", -0.2), (" city", -1.9)]),
    _entry(" of", -0.05, [(" of", -0.05), (" city", -1.3)]),
    _entry(" France", -0.3, [(" France", -0.3), (" Italy", -0.35)]),
]
ITALY = [*FRANCE[:3], _entry(" Italy", -0.32, [(" Italy", -0.32), (" France", -0.33)])]
CITY = [*FRANCE[:2], _entry(" city", -0.4, [(" city", -0.4), (" of", -0.5)])]


def _div(a: FidelityCall, b: FidelityCall, margin: float = 0.1) -> int:
    def top(c: FidelityCall):
        t = reference_topk(c.logprobs_json, c.output_text)
        return t if t.reason is None else None

    return pair_divergence(a, b, top(a), top(b), margin)


def test_a_near_tie_flip_is_not_a_confident_divergence_from_either_side():
    """Two honest engines parting at a near-tie: 0.05 nats on one side, 0.01 on the other."""
    a, b = _call("The capital of France", FRANCE), _call("The capital of Italy", ITALY)
    assert _div(a, b) == 0 and _div(b, a) == 0
    # with no log-probabilities on either side, every divergence counts (as with no margins)
    assert _div(_call(a.output_text or "", None), _call(b.output_text or "", None)) == 1
    # one side's numbers are enough
    assert _div(a, _call(b.output_text or "", None)) == 0


def test_a_confident_part_counts_when_either_side_was_sure():
    """The first side was sure of " of" (1.25 nats over " city"); the second, which took " city",
    was not (0.1): the pair parts confidently — a substitute need not be the sure one."""
    a, b = _call("The capital of France", FRANCE), _call("The capital city", CITY)
    assert _div(a, b) == 1 and _div(b, a) == 1
    assert _div(_call(a.output_text or "", None), b) == 0  # the unsure side's alone: a near-tie


def test_the_same_text_or_a_cut_is_no_divergence():
    a = _call("The capital of France", FRANCE)
    assert _div(a, _call("The capital of France", None)) == 0
    assert _div(a, _call("The capital", None, finish="length")) == 0
    assert _div(a, _call("The capital", None, finish="stop")) == 1  # stops where a goes on


def test_two_overlapping_majorities_tie_and_the_audit_cannot_tell():
    """{a, b, c} and {a, b, d} both agree within (c and d part from each other): two largest groups
    of 3 of 5, each a majority — which is the reference's is not knowable, so none is taken."""
    names = ["a", "b", "c", "d", "e"]
    agree = {("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")}
    pairs = {
        (x, y): [0] * 40 if (x, y) in agree else [1] * 40
        for i, x in enumerate(names)
        for y in names[i + 1 :]
    }
    found = find_reference(names, pairs, names, alpha=0.05, within=0.2)
    assert found.representative is None
    assert found.reason == "2 groups of 3 agree equally: {a, b, c} and {a, b, d}"
    # c and d agreeing too: one group of 4, a majority; its representative the first of the
    # members that part least (all 0 here): a
    pairs[("c", "d")] = [0] * 40
    found = find_reference(names, pairs, names, alpha=0.05, within=0.2)
    assert found.group == ("a", "b", "c", "d") and found.representative == "a"
    # a member without usable log-probabilities is not the representative
    found = find_reference(names, pairs, ["b", "c", "d"], alpha=0.05, within=0.2)
    assert found.representative == "b"
