"""A watch's pages (`bakeoff watch`, docs/WATCH.md), read from the store's watch tables: per endpoint
the timeline of its checks — the detector's statistic against its threshold, the baseline's checks,
the gaps and the alarm — and the table of checks; and at a check, its evidence: the anchor prompts
whose greedy answer left their baseline answer, the baseline's answer and the check's side by side.

The evidence is recomputed as the check computed it (`watch/_check.py`): the endpoint's baseline of
that time (its acknowledged changes before the check counted), its answers stored by earlier checks,
against the check's run's successful greedy calls."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from markupsafe import Markup

from bakeoff.lineups import purposes
from bakeoff.store import Store, WatchStepRecord
from bakeoff.ui._charts import PALETTE
from bakeoff.ui._data import NotFound
from bakeoff.ui._render import url
from bakeoff.ui._svg import Axis, Series, plot

GREEDY = purposes.fidelity_suite("greedy")
MAX_PAIRS = 100
"""Most changed prompts one evidence page shows (the count says how many there are)."""
ALARM, GAP, GREY = "#dc2626", "#ea580c", "#9ca3af"
COLORS = [c for c in PALETTE if c not in (ALARM, GAP)]
"""The endpoints' colours: none that an alarm or a gap is drawn in."""
FLOOR = 1e-3
"""The timeline's lowest statistic shown (smaller ones are drawn there; their tips say the value)."""


@dataclass(frozen=True)
class CheckPoint:
    """One endpoint's detector after one check."""

    seq: int
    at: float | None
    """When the check was made, on the watch's clock (seconds since the epoch)."""
    run_id: str | None
    phase: str
    gap: bool
    alarm: bool
    raised: bool
    """This check raised the alarm (the later ones of the alarm only keep it)."""
    n: int
    changed: int
    statistic: float | None
    threshold: float
    why: str | None

    @property
    def when(self) -> str:
        return when(self.at)


def when(t: float | None) -> str:
    if t is None:
        return "–"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class EndpointHistory:
    endpoint: str
    color: str
    points: list[CheckPoint]
    acks: list[int] = field(default_factory=list)
    """The checks after which a change of the endpoint was acknowledged."""
    chart: Markup | None = None

    @property
    def last(self) -> CheckPoint:
        return self.points[-1]


def evidence_url(name: str, endpoint: str, seq: int) -> str:
    return url("/watch/evidence", name=name, endpoint=endpoint, check=seq)


def watch_history(store: Store, name: str, *, charts: bool = True) -> list[EndpointHistory]:
    """Each endpoint's checks with its timeline: those in alarm first, then in the order the watch
    first checked them (each keeps its colour whatever its state)."""
    if store.watch(name) is None:
        raise NotFound(f"no watch {name!r}")
    checks = {c.seq: c for c in store.watch_checks(name)}
    by_ep: dict[str, list[CheckPoint]] = {}
    for s in store.watch_steps(name):
        c = checks.get(s.seq)
        by_ep.setdefault(s.endpoint, []).append(
            _point(s, c.started_at if c else None, c.run_id if c else None)
        )
    acks: dict[str, list[int]] = {}
    for endpoint, after in store.watch_acks(name):
        acks.setdefault(endpoint, []).append(after)
    order = sorted(by_ep, key=lambda e: (by_ep[e][0].seq, e))
    out = []
    for i, ep in enumerate(order):
        h = EndpointHistory(ep, COLORS[i % len(COLORS)], by_ep[ep], acks.get(ep, []))
        h.chart = timeline(name, h) if charts else None
        out.append(h)
    return sorted(out, key=lambda h: not h.last.alarm)  # those in alarm first (a stable sort)


def _point(s: WatchStepRecord, at: float | None, run_id: str | None) -> CheckPoint:
    return CheckPoint(
        seq=s.seq,
        at=at,
        run_id=run_id,
        phase=s.phase,
        gap=s.gap,
        alarm=s.alarm,
        raised=s.alarm and s.statistic is not None,
        n=s.n,
        changed=s.changed,
        statistic=s.statistic,
        threshold=s.threshold,
        why=s.why,
    )


def _tip(p: CheckPoint) -> str:
    head = f"check {p.seq} ({p.when})"
    if p.gap:
        return f"{head}: gap — {p.why or 'no answer'}"
    counts = f"{p.changed}/{p.n} anchors changed"
    if p.statistic is None:
        return f"{head}: {p.phase}, {counts}"
    return f"{head}: statistic {p.statistic:.3g} (threshold {p.threshold:g}), {counts}"


def timeline(name: str, h: EndpointHistory) -> Markup:
    """The statistic after each monitored check (log scale) against the alarm threshold; along the
    bottom, the baseline's checks and the gaps; the alarm a star, and every check in alarm linked
    to its evidence."""
    pts = h.points
    stats = [p.statistic for p in pts if p.statistic is not None]
    threshold = pts[-1].threshold
    lo = min([FLOOR, *stats]) if stats else FLOOR
    lo = max(lo, 1e-12)
    top = max([threshold * 3, *stats])

    held: dict[int, float] = {}  # a check in alarm: the statistic that raised it (it stays there)
    v = threshold
    for p in pts:
        if p.statistic is not None:
            v = max(p.statistic, lo)
        elif not p.alarm:
            v = lo
        held[p.seq] = v
    y = held.__getitem__

    kinds = (
        ("statistic", lambda p: not p.alarm and p.statistic is not None, h.color, "circle", 4.0),
        ("baseline", lambda p: p.statistic is None and not (p.gap or p.alarm), GREY, "circle", 3.5),
        ("gap", lambda p: p.gap, GAP, "cross", 5.0),
        ("alarm", lambda p: p.raised, ALARM, "star", 6.0),
        ("in alarm", lambda p: p.alarm and not p.raised, ALARM, "cross", 5.0),
    )
    monitored = [p for p in pts if p.statistic is not None]
    line = Series("", [p.seq for p in monitored], [y(p.seq) for p in monitored], h.color)
    line.lines, line.markers = "straight", None
    series = [line]
    for label, keep, color, marker, size in kinds:
        chosen = [p for p in pts if keep(p)]
        if not chosen:
            continue
        series.append(
            Series(
                label,
                [p.seq for p in chosen],
                [y(p.seq) for p in chosen],
                color,
                markers=marker,
                size=size,
                tips=[_tip(p) for p in chosen],
                links=[evidence_url(name, h.endpoint, p.seq) if p.alarm else None for p in chosen],
            )
        )
    last = pts[-1].seq
    return plot(
        series,
        Axis("check", lo=min(p.seq for p in pts) - 0.5, hi=last + 0.5),
        Axis("statistic (e-SR, log scale)", log=True, lo=lo, hi=top),
        hline=(threshold, f"alarm at {threshold:g}: ≥ {threshold:g} checks to a false alarm"),
        legend=True,
        height=240,
    )


@dataclass(frozen=True)
class Changed:
    """One anchor whose answer at the check was not its baseline's."""

    item_id: str
    messages: list[dict[str, Any]]
    before: str
    before_seq: int
    before_run: str | None
    after: str


@dataclass
class Evidence:
    name: str
    endpoint: str
    point: CheckPoint
    epoch: int
    """The endpoint's baseline the check was compared with: 0, one more per acknowledged change."""
    compared: int
    """Anchors the check answered that have a baseline answer."""
    changed: list[Changed]
    shown: list[Changed]


def evidence(store: Store, name: str, endpoint: str, check: str) -> Evidence:
    """The prompts of check `check` whose answer from `endpoint` left the baseline's."""
    seq = int(check) if check.isdigit() else -1
    hists = watch_history(store, name, charts=False)
    hist = next((h for h in hists if h.endpoint == endpoint), None)
    point = next((p for p in hist.points if p.seq == seq), None) if hist else None
    if hist is None or point is None:
        raise NotFound(f"watch {name!r} has no check {check[:20]!r} of endpoint {endpoint[:40]!r}")
    runs = {c.seq: c.run_id for c in store.watch_checks(name)}
    epoch = sum(1 for e, after in store.watch_acks(name) if e == endpoint and after < seq)
    base = {
        a.item_id: a
        for a in store.baseline_answers(name)
        if a.endpoint == endpoint and a.epoch == epoch and a.seq < seq
    }
    changed: list[Changed] = []
    compared = 0
    if point.run_id is not None:
        for c in store.calls(point.run_id):
            if c["endpoint"] != endpoint or c["suite"] != GREEDY or c["status"] != "ok":
                continue
            a = base.get(c["item_id"])
            if a is None:
                continue
            compared += 1
            answer = c["output_text"] or ""
            if answer != a.answer:
                changed.append(Changed(c["item_id"], [], a.answer, a.seq, runs.get(a.seq), answer))
    shown = [
        replace(x, messages=_messages(store, point.run_id, x.item_id)) for x in changed[:MAX_PAIRS]
    ]
    return Evidence(name, endpoint, point, epoch, compared, changed, shown)


def _messages(store: Store, run_id: str | None, item_id: str) -> list[dict[str, Any]]:
    item = store.item(run_id, GREEDY, item_id) if run_id else None
    if item is None:
        return []
    inp = orjson.loads(item["input_json"])
    return list(inp.get("messages") or [{"role": "prompt", "content": inp.get("prompt")}])


def settings_of(store: Store, name: str) -> dict[str, Any]:
    """The watch's stored settings, as JSON (what the page prints of them)."""
    row = store.watch(name)
    if row is None:
        raise NotFound(f"no watch {name!r}")
    data: dict[str, Any] = orjson.loads(row.settings_json)
    data.pop("pool_seed", None)  # the private pool's seed: never shown
    return data
