"""Blind pairwise comparison ("arena"): two anonymised outputs for the same prompt, a vote, and
Bradley–Terry ratings — from people in the UI, or from an LLM judge of the lineup asked in both orders.

Votes live in the `votes` table. A judge is asked A-vs-B and then B-vs-A; when its two answers do not
name the same output the pair counts as a tie (and as a position-inconsistent answer in the judge's
stats). Ratings are computed raw and with a length control (Bradley–Terry with a length covariate).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

from bakeoff.lineups import Lineup, purposes
from bakeoff.stats import Vote, bradley_terry
from bakeoff.store import JudgeDetail, Store, VoteRecord

if TYPE_CHECKING:
    from bakeoff.runs import CallPolicy

WINNERS = ("left", "right", "tie", "both_bad")
UNREAD = "unread"
"""A judge vote whose answer could not be read in one order or both: stored, counted, never a tie."""
MIN_DECIDED = 30
"""Decided votes (a winner, not a tie) a voter needs before its ratings are shown without a
warning: with fewer, a Bradley–Terry interval spans hundreds of points."""

JUDGE_PROMPT = """You are judging two AI assistant responses to the same user request.

[User request]
{prompt}

[Response A]
{a}

[Response B]
{b}

Which response answers the request better (correct, helpful, follows instructions)? Do not let the
order or the length of the responses influence you. Reply with one letter only: A, B, or T for a tie."""


def _prompt_text(input_json: str) -> str:
    inp = orjson.loads(input_json)
    if inp.get("messages"):
        return "\n\n".join(f"{m.get('role')}: {m.get('content') or ''}" for m in inp["messages"])
    return str(inp.get("prompt") or "")


def pairs_pool(store: Store, run_id: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every (suite, item, repeat) of the run's suites with at least two successful outputs that
    are not all the same text: {key: {endpoint: (call id, output text)}}. A pair of identical
    outputs is never offered (to a person or a judge): it is no choice."""
    rows = store.ok_suite_outputs(run_id, texts=True)
    pool: dict[tuple[str, str, int], dict[str, Any]] = defaultdict(dict)
    for cid, ep, suite, item, rep, text in rows:
        pool[(suite, item, rep)][ep] = (cid, text or "")
    out = {}
    for k, v in pool.items():
        distinct = len({t.strip() for _, t in v.values()})
        if len(v) >= 2 and distinct >= 2:  # identical outputs are no choice: not offered
            out[k] = v
    return out


class PairSide(TypedDict):
    """One side of a pair as the page shows it: the call (never the endpoint) and its answer."""

    call_id: str
    text: str


class Pair(TypedDict):
    """A pair for a person to judge: the item, and its two answers in the order shown."""

    suite: str
    item_id: str
    repeat: int
    prompt: str
    left: PairSide
    right: PairSide


def next_pair(store: Store, run_id: str, rng: random.Random | None = None) -> Pair | None:
    """A pair for a person to judge: an item and two endpoints in random order, preferring the
    endpoint pairs with the fewest human votes so far. None when the run has nothing to compare."""
    rng = rng or random.Random()
    pool = pairs_pool(store, run_id)
    if not pool:
        return None
    human = [v for v in store.votes(run_id) if v.voter == "human"]
    voted = Counter(frozenset((v.left, v.right)) for v in human)
    seen = {(v.suite, v.item_id, v.repeat, frozenset((v.left, v.right))) for v in human}
    options = []
    for key, outs in pool.items():
        names = sorted(outs)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                same = outs[a][1].strip() == outs[b][1].strip()
                if not same and (*key, frozenset((a, b))) not in seen:
                    options.append((voted[frozenset((a, b))], key, a, b))
    if not options:
        return None
    fewest = min(o[0] for o in options)
    _, key, a, b = rng.choice([o for o in options if o[0] == fewest])
    if rng.random() < 0.5:
        a, b = b, a
    suite, item_id, repeat = key
    item = store.item(run_id, suite, item_id)
    outs = pool[key]

    def text(call_id: str) -> str:
        return store.output_text(call_id) or ""

    return {
        "suite": suite,
        "item_id": item_id,
        "repeat": repeat,
        "prompt": _prompt_text(item["input_json"]) if item else "",
        "left": {"call_id": outs[a][0], "text": text(outs[a][0])},
        "right": {"call_id": outs[b][0], "text": text(outs[b][0])},
    }


def record_human_vote(
    store: Store, run_id: str, left_call: str, right_call: str, winner: str
) -> None:
    """Store a person's vote on two calls of the run (given by call id, so the page never names the
    endpoints)."""
    if winner not in WINNERS:
        raise ValueError(f"winner must be one of {', '.join(WINNERS)}")
    rows = {}
    for cid in (left_call, right_call):
        r = store.ok_call(run_id, cid)
        if r is None:
            raise ValueError("unknown call")
        rows[cid] = r
    lc, rc = rows[left_call], rows[right_call]
    if (lc["suite"], lc["item_id"], lc["repeat"]) != (rc["suite"], rc["item_id"], rc["repeat"]):
        raise ValueError("the two calls answer different items")
    if lc["endpoint"] == rc["endpoint"]:
        raise ValueError("the two calls come from the same endpoint")
    store.add_vote(
        run_id,
        VoteRecord(
            suite=lc["suite"],
            item_id=lc["item_id"],
            repeat=lc["repeat"],
            left=lc["endpoint"],
            right=rc["endpoint"],
            winner=winner,
            voter="human",
            left_chars=len(lc["output_text"] or ""),
            right_chars=len(rc["output_text"] or ""),
        ),
    )


def parse_choice(text: str) -> str | None:
    """A judge's answer: 'A', 'B' or 'T' (tie), or None when it cannot be read.

    A bare letter (with any punctuation or markdown around it) is taken as is; otherwise a worded
    tie, then "Response A/B", then a standalone capital A or B."""
    core = re.sub(r"[^A-Za-z]", "", text)
    if core.upper() in ("A", "B", "T"):
        return core.upper()
    if re.search(r"\btie\b|\bequal(ly)?\b|\bneither\b", text, re.I):
        return "T"
    m = re.search(r"\b(?:response|answer|output|assistant)\s+([AB])\b", text, re.I)
    if m:
        return m.group(1).upper()
    m = re.search(r"\b([AB])\b", text)
    return m.group(1) if m else None


def combine_orders(first: str | None, second: str | None) -> tuple[str, bool]:
    """The judge's verdict on (left, right) from its answer with left shown as A (`first`) and its
    answer with left shown as B (`second`); and whether the two answers were consistent."""
    as_left = {"A": "left", "B": "right", "T": "tie"}
    swapped = {"A": "right", "B": "left", "T": "tie"}
    w1 = as_left.get(first or "")
    w2 = swapped.get(second or "")
    if w1 is None or w2 is None:
        return UNREAD, False
    if w1 == w2:
        return w1, True
    return "tie", False


async def judge_pairs(
    store: Store,
    run_id: str,
    lineup: Lineup,
    judge: str,
    n_pairs: int,
    *,
    seed: int = 0,
    on_done: Callable[[], None] | None = None,
) -> int:
    """Ask endpoint `judge` of the lineup to compare `n_pairs` random pairs, both orders each;
    store one vote per pair (voter `judge:<name>`). Returns the number of votes stored."""
    from bakeoff.runs import EndpointSession, RunOptions

    pool = pairs_pool(store, run_id)
    todo = _unjudged(store, run_id, pool, judge)
    random.Random(seed).shuffle(todo)
    todo = todo[:n_pairs]
    if not todo:
        return 0
    items = {(r["suite"], r["item_id"]): _prompt_text(r["input_json"]) for r in store.items(run_id)}
    stored = 0
    sub = _judge_lineup(lineup, judge)
    async with EndpointSession(store, run_id, sub, RunOptions(use_cache=False)) as session:
        policy = session.handles[judge].policy  # the judge's slots, rate limit and retries

        async def one(key: tuple[str, str, int], a: str, b: str) -> None:
            nonlocal stored
            suite, item_id, repeat = key
            ta, tb = pool[key][a][1], pool[key][b][1]
            prompt = items.get((suite, item_id), "")
            r1, r2 = await asyncio.gather(
                _ask(policy, prompt, ta, tb), _ask(policy, prompt, tb, ta)
            )
            winner, consistent = combine_orders(parse_choice(r1), parse_choice(r2))
            detail: JudgeDetail = {
                "a_first": r1,
                "b_first": r2,
                "choices": [parse_choice(r1), parse_choice(r2)],
                "consistent": consistent,
            }
            store.add_vote(
                run_id,
                VoteRecord(
                    suite=suite,
                    item_id=item_id,
                    repeat=repeat,
                    left=a,
                    right=b,
                    winner=winner,
                    voter=f"judge:{judge}",
                    left_chars=len(ta),
                    right_chars=len(tb),
                    detail=detail,
                ),
            )
            stored += 1
            if on_done:
                on_done()

        await asyncio.gather(*(one(*t) for t in todo))
    return stored


def _unjudged(
    store: Store, run_id: str, pool: dict[tuple[str, str, int], dict[str, Any]], judge: str
) -> list[tuple[tuple[str, str, int], str, str]]:
    """Every (item, endpoint pair) of the pool this judge has not voted on, the judge's own
    outputs left out."""
    done = {
        (v.suite, v.item_id, v.repeat, frozenset((v.left, v.right)))
        for v in store.votes(run_id)
        if v.voter == f"judge:{judge}"
    }
    todo = []
    for key, outs in sorted(pool.items()):
        names = sorted(n for n in outs if n != judge)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                same = outs[a][1].strip() == outs[b][1].strip()
                if not same and (*key, frozenset((a, b))) not in done:
                    todo.append((key, a, b))
    return todo


def _judge_lineup(lineup: Lineup, judge: str) -> Lineup:
    """The lineup cut to the judge (and, for a proxy judge, the targets it needs running)."""
    keep = {judge}
    for e in lineup.endpoints:
        if e.name in keep and e.proxy is not None:
            keep |= {e.proxy.target, *([e.proxy.route_to] if e.proxy.route_to else [])}
    sub = lineup.model_copy(deep=True)
    sub.endpoints = [e for e in sub.endpoints if e.name in keep]
    return sub


async def _ask(policy: CallPolicy, prompt: str, a: str, b: str) -> str:
    """The judge's answer to one order of a pair; a failed call is a missing answer, never a
    crash."""
    from bakeoff.endpoints import CallRequest

    req = CallRequest(
        messages=[{"role": "user", "content": JUDGE_PROMPT.format(prompt=prompt, a=a, b=b)}],
        params=dict(purposes.ARENA_JUDGE),
        stream=False,
    )
    try:
        return (await policy.billed("arena-judge").call(req)).text
    except Exception as e:
        return f"<error: {type(e).__name__}>"


def _bt_votes(rows: list[VoteRecord]) -> list[Vote]:
    """The decided votes as Bradley–Terry observations: ties, both-bad and unread votes are
    reported beside the ratings and left out of the win model (a tie that says nothing of
    strength, counted as half a win, narrowed the intervals: measured coverage 0.71 at 20% ties)."""
    out = []
    for v in rows:
        if v.winner not in ("left", "right"):
            continue
        y = 1.0 if v.winner == "left" else 0.0
        lc, rc = v.left_chars or 0, v.right_chars or 0
        x = (lc - rc) / (lc + rc) if lc + rc else 0.0
        out.append(Vote(v.left, v.right, y, x))
    return out


def _judge_stats(rows: list[VoteRecord]) -> dict[str, Any]:
    """Position bias (answers that change with the order; how often the first-shown output won) and
    length bias (how often the longer output won a decided vote)."""
    n = len(rows)
    details = [v.detail for v in rows if v.detail]
    consistent = sum(1 for d in details if d.get("consistent"))
    first_won = sum(1 for d in details for c in d.get("choices", [])[:2] if c == "A")
    answered = sum(1 for d in details for c in d.get("choices", [])[:2] if c in ("A", "B"))
    decided = [v for v in rows if v.winner in ("left", "right")]
    longer_won = sum(
        1
        for v in decided
        if (v.left_chars or 0) != (v.right_chars or 0)
        and ((v.winner == "left") == ((v.left_chars or 0) > (v.right_chars or 0)))
    )
    unequal = sum(1 for v in decided if (v.left_chars or 0) != (v.right_chars or 0))
    return {
        "pairs": n,
        "consistent_rate": round(consistent / len(details), 3) if details else None,
        "first_position_win_rate": round(first_won / answered, 3) if answered else None,
        "longer_won_rate": round(longer_won / unequal, 3) if unequal else None,
    }


def _agreement(human: list[VoteRecord], judge: list[VoteRecord]) -> dict[str, Any] | None:
    """Agreement between people and a judge on the pairs both voted on (Cohen's kappa over
    winner ∈ {endpoint x, endpoint y, tie})."""

    def key(v: VoteRecord) -> tuple[object, ...]:
        return (v.suite, v.item_id, v.repeat, frozenset((v.left, v.right)))

    def outcome(v: VoteRecord) -> str:
        if v.winner == UNREAD:
            return UNREAD
        if v.winner == "left":
            return v.left
        if v.winner == "right":
            return v.right
        return "tie"

    j = {key(v): outcome(v) for v in judge if v.winner != UNREAD}
    pairs = [(outcome(v), j[key(v)]) for v in human if key(v) in j]
    if not pairs:
        return None
    n = len(pairs)
    po = sum(a == b for a, b in pairs) / n
    ca, cb = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    pe = sum(ca[k] * cb[k] for k in ca) / (n * n)
    kappa = (po - pe) / (1 - pe) if pe < 1 else None
    return {
        "pairs": n,
        "agreement": round(po, 3),
        "kappa": None if kappa is None else round(kappa, 3),
    }


def arena_summary(store: Store, run_id: str, reference: str | None = None) -> dict[str, Any]:
    """Ratings for human votes and for each judge (raw and length-controlled), judge biases, and
    judge–human agreement."""
    votes = store.votes(run_id)
    groups: dict[str, list[VoteRecord]] = defaultdict(list)
    for v in votes:
        groups[v.voter].append(v)
    out: dict[str, Any] = {"votes": len(votes), "voters": {}}
    human = groups.get("human", [])
    for voter, rows in sorted(groups.items()):
        bt = _bt_votes(rows)
        outcomes = Counter(v.winner for v in rows)
        entry: dict[str, Any] = {
            "votes": len(rows),
            "decided": len(bt),
            "outcomes": dict(outcomes),
            "ties": outcomes.get("tie", 0),
            "unread": outcomes.get(UNREAD, 0),
            "bt": bradley_terry(bt, anchor=reference),
            "bt_length_controlled": bradley_terry(bt, anchor=reference, style=True),
        }
        if len(bt) < MIN_DECIDED:
            entry["warning"] = (
                f"{len(bt)} decided votes (ties, both-bad and unread answers are left out): "
                f"ratings below {MIN_DECIDED} are not to be relied on"
            )
        if voter.startswith("judge:"):
            entry["judge"] = _judge_stats(rows)
            entry["agreement_with_humans"] = _agreement(human, rows)
        out["voters"][voter] = entry
    return out
