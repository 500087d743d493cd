"""The pages' charts, each built from the data it shows, drawn as inline SVG (`_svg`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from markupsafe import Markup

from bakeoff.perf import PerfSummary
from bakeoff.store import Row
from bakeoff.ui._svg import Axis, Box, Series, box_plot, plot

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#65a30d"]

CHART_POINTS = 2000
"""Most points of one call's token-arrival chart."""


LABEL_OFFSETS = {
    "top": (0.0, 0.06),
    "bottom": (0.0, -0.06),
    "right": (0.07, 0.0),
    "left": (-0.07, 0.0),
}


def _label_positions(xy: dict[str, tuple[float, float]]) -> dict[str, str]:
    """Where to print each point's name: of the four sides, the one whose label lands farthest
    from the other points and the labels placed before it (on axes scaled to [0, 1]), so that two
    close endpoints do not print their names over each other's marker."""
    xs, ys = [p[0] for p in xy.values()], [p[1] for p in xy.values()]
    sx, sy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    norm = {n: ((x - min(xs)) / sx, (y - min(ys)) / sy) for n, (x, y) in xy.items()}
    taken: list[tuple[float, float]] = []
    out = {}
    for name, (x, y) in sorted(norm.items(), key=lambda kv: (-kv[1][1], kv[1][0])):
        others = [p for n, p in norm.items() if n != name] + taken

        def room(side: str, x: float = x, y: float = y, others: list = others) -> float:
            dx, dy = LABEL_OFFSETS[side]
            lx, ly = x + dx, y + dy
            inside = 0.0 if -0.05 <= lx <= 1.05 and -0.1 <= ly <= 1.1 else 0.5
            return min((math.hypot(lx - a, ly - b) for a, b in others), default=1.0) - inside

        side = max(LABEL_OFFSETS, key=room)
        out[name] = side
        taken.append((x + LABEL_OFFSETS[side][0], y + LABEL_OFFSETS[side][1]))
    return out


def front_charts(pareto: dict[str, Any], colors: dict[str, str]) -> dict[str, Markup]:
    """Quality against USD per 1,000 suite calls and against output tok/s: one two-axis chart
    each, its front (no endpoint better on both axes) starred and joined by a dotted staircase."""
    pts = pareto.get("points") or {}
    fronts = pareto.get("fronts") or {}
    out = {}
    for key, axis, title in (
        ("cost", "cost_per_1k_calls", "USD per 1,000 suite calls (lower is better)"),
        ("speed", "output_tok_s", "output tokens/s p50 (higher is better)"),
    ):
        if key not in fronts:
            continue
        xs = {n: p[axis] for n, p in pts.items() if p.get(axis) is not None}
        if len(xs) < 2:
            continue
        rejected = set(pareto.get("rejected") or ())
        out[key] = _front_chart(pts, xs, fronts[key], colors, title, key == "cost", rejected)
    return out


def _front_chart(
    pts: dict[str, Any],
    xs: dict[str, float],
    front: list[str],
    colors: dict[str, str],
    title: str,
    money: bool,
    rejected: set[str],
) -> Markup:
    """One front's chart: its stars joined by a dotted staircase, the other endpoints as circles,
    those the audit found `different` as crosses (off the front whatever their numbers)."""
    line = sorted((n for n in front if n in xs), key=lambda n: xs[n])
    qs = [pts[n]["quality"] for n in xs]
    where = _label_positions({n: (xs[n], pts[n]["quality"]) for n in xs})
    series = [
        Series(
            "",
            [xs[n] for n in line],
            [pts[n]["quality"] for n in line],
            "#9ca3af",
            lines="hv" if money else "vh",
            markers=None,
            dash=True,
        )
    ]
    for name in sorted(xs, key=lambda n: pts[n]["quality"]):
        on = name in front
        ruled_out = name in rejected
        x = f"${xs[name]:.4g} per 1,000 calls" if money else f"{xs[name]:.1f} tok/s"
        series.append(
            Series(
                name,
                [xs[name]],
                [pts[name]["quality"]],
                colors.get(name, "#888"),
                markers="star" if on else "cross" if ruled_out else "circle",
                size=6 if on else 5,
                labels=[f"{name} ✗" if ruled_out else name],
                label_sides=[where[name]],
                tips=[
                    f"{name}: quality {pts[name]['quality']:.3f}, {x}"
                    + (" (on the front)" if on else "")
                    + (" (found different by the audit: off the front)" if ruled_out else "")
                ],
            )
        )
    return plot(
        series,
        Axis(title, prefix="$" if money else ""),
        Axis("quality (mean suite score)", lo=min(0.0, *qs) - 0.06, hi=max(1.0, *qs) + 0.06),
    )


def chunks_chart(chunks: list[float], color: str | None) -> Markup | None:
    """When each token chunk of one call arrived, from at most ~CHART_POINTS points: a reply of
    240,000 chunks made the page (and the report holding it) 66 MB heavier to build; the step
    shape stays, the last chunk is kept."""
    if not chunks:
        return None
    step = -(-len(chunks) // CHART_POINTS)
    ys = list(range(1, len(chunks) + 1, step))
    if ys[-1] != len(chunks):
        ys.append(len(chunks))
    return plot(
        [
            Series(
                "chunks",
                [chunks[y - 1] for y in ys],
                ys,
                color or "#2563eb",
                lines="hv",
                markers="circle" if len(ys) <= 200 else None,
                size=2.5,
            )
        ],
        Axis("ms since the request was sent", lo=0.0),
        Axis("token chunks", lo=0.0),
        height=260,
    )


def wealth_chart(verdict: dict[str, Any]) -> Markup | None:
    """Each test's e-process over the audit's paired observations, against the 1/α line, on a
    log scale labelled at powers of ten only (plotly's minor labels printed 0.5 as "5")."""
    series = []
    for i, (test, t) in enumerate((verdict.get("tests") or {}).items()):
        w = [max(float(v), 1e-6) for v in (t.get("wealth") or [])]
        if w:
            series.append(
                Series(
                    test,
                    list(range(1, len(w) + 1)),
                    w,
                    PALETTE[i % len(PALETTE)],
                    lines="straight",
                    markers=None,
                )
            )
    if not series:
        return None
    alpha = verdict.get("alpha") or 0.05
    top = max(2 / alpha, *(max(s.y) for s in series))
    return plot(
        series,
        Axis("paired observations", lo=1.0),
        Axis("wealth (e-value)", log=True, lo=min(0.3, *(min(s.y) for s in series)), hi=top),
        hline=(1 / alpha, f"reject at 1/α = {1 / alpha:g}"),
        legend=True,
        height=260,
    )


def perf_charts(summary: PerfSummary | None, measured: list[Row]) -> tuple[dict[str, Markup], str]:
    """A sweep's throughput curve and its TTFT and inter-token-latency boxes per level (from the
    `measured` requests), and the name of its level axis."""
    sweeps = summary["endpoints"] if summary else {}
    names = list(sweeps)
    colors = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    mode = summary["config"].get("mode", "closed") if summary else "closed"
    level_name = "concurrency" if mode == "closed" else "request rate (req/s)"
    curve = [
        Series(
            n,
            [p["level"] for p in e["curve"] if p["output_tok_s"] is not None],
            [p["output_tok_s"] for p in e["curve"] if p["output_tok_s"] is not None],
            colors[n],
            lines="straight",
            tips=[
                f"{n} at {p['level']}: {p['output_tok_s']} tok/s"
                for p in e["curve"]
                if p["output_tok_s"] is not None
            ],
        )
        for n, e in sweeps.items()
    ]
    figs: dict[str, Markup] = {}
    if any(s.x for s in curve):
        figs["curve"] = plot(
            [s for s in curve if s.x],
            Axis(level_name),
            Axis("output tokens/s", lo=0.0),
            legend=True,
        )
    samples = _latency_samples(measured)
    for kind, title in (("ttft", "TTFT (ms)"), ("itl", "inter-token latency (ms)")):
        groups = [(n, colors[n], b) for n in names if (b := _boxes(n, samples[kind]))]
        if groups:
            levels = sorted({c for _, _, b in groups for c in b}, key=_level_value)
            figs[kind] = box_plot(levels, groups, "level (whiskers: p5 and p95)", title)
    return figs, level_name


def _latency_samples(measured: list[Any]) -> dict[str, dict[tuple[str, str], list[np.ndarray]]]:
    """TTFTs and inter-token gaps per (endpoint, level)."""
    samples: dict[str, dict[tuple[str, str], list[np.ndarray]]] = {"ttft": {}, "itl": {}}
    for r in measured:
        key = (r["endpoint"], r["level"])
        if r["ttft_ms"] is not None:
            samples["ttft"].setdefault(key, []).append(np.array([r["ttft_ms"]]))
        if r["chunks_json"]:
            ch = np.asarray(orjson.loads(r["chunks_json"]), dtype=float)
            if ch.size > 1:
                samples["itl"].setdefault(key, []).append(np.diff(ch))
    return samples


def _boxes(name: str, samples: dict[tuple[str, str], list[np.ndarray]]) -> dict[str, Box]:
    """One endpoint's distributions per level as boxes (p5, p25, p50, p75, p95): the page carries
    five numbers per box, not every sample."""
    out = {}
    for key in sorted((k for k in samples if k[0] == name), key=lambda k: _level_value(k[1])):
        q = np.percentile(np.concatenate(samples[key]), [5, 25, 50, 75, 95])
        out[key[1]] = Box(*(round(float(v), 3) for v in q))
    return out


def _level_value(label: str) -> float:
    """ "c=8" → 8.0, for ordering levels."""
    try:
        return float(label.split("=", 1)[1])
    except (IndexError, ValueError):
        return 0.0
