"""The pages' charts, each built from the data it shows (plotly figure specs, rendered by
`_render.chart`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from bakeoff.ui._render import chart

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#65a30d"]

CHART_POINTS = 2000
"""Most points of one call's token-arrival chart."""


def pareto_chart(pareto: dict[str, Any], colors: dict[str, str]) -> str | None:
    """Quality against output tok/s per endpoint (size: cost, when priced); the front starred."""
    pts = pareto["points"]
    if not pts:
        return None
    with_cost = "cost_usd" in pareto["axes"]
    data = []
    for name, p in pts.items():
        on_front = name in pareto["front"]
        data.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": name,
                "x": [p["output_tok_s"]],
                "y": [p["quality"]],
                "text": [name],
                "textposition": "top center",
                "marker": {
                    "size": 12 + (20 * p["cost_usd"] / max_cost(pts) if with_cost else 4),
                    "color": colors.get(name),
                    "symbol": "star" if on_front else "circle",
                    "line": {"width": 2 if on_front else 0, "color": "#111"},
                },
                "hovertemplate": (
                    f"{name}<br>quality %{{y:.3f}}<br>%{{x:.1f}} tok/s"
                    + (f"<br>${p['cost_usd']:.4f}" if with_cost else "")
                    + "<extra></extra>"
                ),
            }
        )
    return chart(
        data,
        {
            "showlegend": False,
            "xaxis": {"title": {"text": "output tokens/s (p50)"}},
            "yaxis": {"title": {"text": "quality (mean suite score)"}},
        },
    )


def max_cost(points: dict[str, Any]) -> float:
    return max((p.get("cost_usd") or 0.0) for p in points.values()) or 1.0


def chunks_chart(chunks: list[float], color: str | None) -> str | None:
    """When each token chunk of one call arrived, from at most ~CHART_POINTS points: a reply of
    240,000 chunks made the page (and the report holding it) 66 MB heavier to build; the step
    shape stays, the last chunk is kept."""
    if not chunks:
        return None
    step = -(-len(chunks) // CHART_POINTS)
    ys = list(range(1, len(chunks) + 1, step))
    if ys[-1] != len(chunks):
        ys.append(len(chunks))
    return chart(
        [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": [chunks[y - 1] for y in ys],
                "y": ys,
                "line": {"shape": "hv", "color": color},
                "marker": {"size": 4},
                "hovertemplate": "chunk %{y} at %{x:.1f} ms<extra></extra>",
            }
        ],
        {
            "height": 260,
            "xaxis": {"title": {"text": "ms since the request was sent"}, "rangemode": "tozero"},
            "yaxis": {"title": {"text": "token chunks"}},
        },
    )


def wealth_chart(verdict: dict[str, Any]) -> str | None:
    """Each test's e-process over the audit's paired observations, against the 1/α line."""
    data = []
    for i, (test, t) in enumerate((verdict.get("tests") or {}).items()):
        w = t.get("wealth") or []
        if w:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": test,
                    "x": list(range(1, len(w) + 1)),
                    "y": w,
                    "line": {"color": PALETTE[i % len(PALETTE)]},
                }
            )
    if not data:
        return None
    alpha = verdict.get("alpha") or 0.05
    n = max(len(d["x"]) for d in data)
    data.append(
        {
            "type": "scatter",
            "mode": "lines",
            "name": f"reject at 1/α = {1 / alpha:g}",
            "x": [1, n],
            "y": [1 / alpha, 1 / alpha],
            "line": {"dash": "dash", "color": "#6b7280"},
        }
    )
    top = math.log10(max(2 / alpha, *(max(d["y"]) for d in data))) + 0.2
    return chart(
        data,
        {
            "height": 260,
            "yaxis": {"type": "log", "title": {"text": "wealth (e-value)"}, "range": [-0.5, top]},
            "xaxis": {"title": {"text": "paired observations"}},
        },
    )


def perf_charts(summary: dict[str, Any], measured: list[Any]) -> tuple[dict[str, str], str]:
    """A sweep's throughput curve and its TTFT and inter-token-latency boxes per level (from the
    `measured` requests), and the name of its level axis."""
    names = list((summary.get("endpoints") or {}).keys())
    colors = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    curve = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": n,
            "x": [p["level"] for p in e["curve"]],
            "y": [p["output_tok_s"] for p in e["curve"]],
            "line": {"color": colors[n]},
        }
        for n, e in summary["endpoints"].items()
    ]
    mode = (summary.get("config") or {}).get("mode", "closed")
    level_name = "concurrency" if mode == "closed" else "request rate (req/s)"
    figs = {
        "curve": chart(
            curve,
            {
                "xaxis": {"title": {"text": level_name}},
                "yaxis": {"title": {"text": "output tokens/s"}},
            },
        )
    }
    samples = _latency_samples(measured)
    for kind, title in (("ttft", "TTFT (ms)"), ("itl", "inter-token latency (ms)")):
        data = [b for n in names if (b := _boxes(n, samples[kind], colors[n])) is not None]
        if data:
            figs[kind] = chart(
                data,
                {
                    "boxmode": "group",
                    "xaxis": {"title": {"text": "level (whiskers: p5 and p95)"}},
                    "yaxis": {"title": {"text": title}},
                },
            )
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


def _boxes(
    name: str, samples: dict[tuple[str, str], list[np.ndarray]], color: str
) -> dict[str, Any] | None:
    """One endpoint's distributions as precomputed boxes (p5, p25, p50, p75, p95): the page
    carries five numbers per box, not every sample."""
    keys = sorted((k for k in samples if k[0] == name), key=lambda k: _level_value(k[1]))
    if not keys:
        return None
    qs = [np.percentile(np.concatenate(samples[k]), [5, 25, 50, 75, 95]) for k in keys]
    return {
        "type": "box",
        "name": name,
        "x": [k[1] for k in keys],
        "lowerfence": [round(float(q[0]), 3) for q in qs],
        "q1": [round(float(q[1]), 3) for q in qs],
        "median": [round(float(q[2]), 3) for q in qs],
        "q3": [round(float(q[3]), 3) for q in qs],
        "upperfence": [round(float(q[4]), 3) for q in qs],
        "marker": {"color": color},
    }


def _level_value(label: str) -> float:
    """ "c=8" → 8.0, for ordering levels."""
    try:
        return float(label.split("=", 1)[1])
    except (IndexError, ValueError):
        return 0.0
