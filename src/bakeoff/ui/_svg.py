"""Charts as inline SVG, drawn on the server: no chart library in the page.

The pages used to load plotly.js (4.8 MB) for five kinds of chart; in Chromium that made every page
with a chart take 1.9-2.2 s to first show on the 2-core dev machine, where the same page without it
took 0.3 s (bench/ui_scale.py). These charts are scatter and line plots (straight or stepped, linear
or log y, a threshold line) and box plots: a few hundred lines of SVG, readable in both colour
schemes (text and axes in `currentColor`), with each point's figures in a `<title>` the browser
shows on hover. Every text — endpoint names come from the user's lineup — is escaped."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

W, H = 640, 320
PAD = {"l": 64, "r": 18, "t": 30, "b": 48}
GRID = {"stroke": "currentColor", "stroke_opacity": 0.15}
TEXT = {"fill": "currentColor", "font_size": 11}


def el(tag: str, body: str = "", /, **attrs: object) -> str:
    """One SVG element, every attribute value escaped (`stroke_width` → `stroke-width`; floats to
    one decimal), `body` as given (already escaped text or elements)."""
    parts = []
    for k, v in attrs.items():
        if v is None:
            continue
        text = f"{v:.1f}" if isinstance(v, float) else str(v)
        parts.append(f' {k.rstrip("_").replace("_", "-")}="{escape(text)}"')
    inner = "".join(parts)
    return f"<{tag}{inner}>{body}</{tag}>" if body else f"<{tag}{inner}/>"


def text(x: float, y: float, s: str, anchor: str = "start", /, **attrs: object) -> str:
    return el("text", str(escape(s)), x=x, y=y, text_anchor=anchor, **TEXT, **attrs)


@dataclass
class Series:
    """One trace: points, how they are joined (`lines`: None, "straight", "hv" or "vh" steps) and
    marked (`markers`: None, "circle", "star", "cross"), with optional names by the points and hover tips."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = "currentColor"
    lines: str | None = None
    markers: str | None = "circle"
    size: float = 4.0
    dash: bool = False
    labels: Sequence[str] | None = None
    label_sides: Sequence[str] | None = None
    tips: Sequence[str] | None = None
    links: Sequence[str | None] | None = None
    """Per point, an address the point links to (None: no link)."""


@dataclass
class Box:
    """Five numbers of a distribution: whiskers p5 and p95, the box p25-p75, the median."""

    lo: float
    q1: float
    median: float
    q3: float
    hi: float


@dataclass
class Axis:
    title: str
    log: bool = False
    lo: float | None = None
    hi: float | None = None
    prefix: str = ""
    ticks: list[float] = field(default_factory=list)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round ticks (1, 2 or 5 × 10^k apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def fmt_tick(v: float, ticks: Sequence[float], prefix: str = "") -> str:
    """A tick's label with as many decimals as the ticks' spacing needs (0.5, not "5")."""
    step = min((abs(b - a) for a, b in itertools.pairwise(ticks) if b != a), default=1)
    if abs(v) >= 1000 and step >= 1:
        return f"{prefix}{v:,.0f}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    return f"{prefix}{v:.{decimals}f}"


class _Frame:
    """The plot area and the data → pixel mapping of both axes."""

    def __init__(self, x: Axis, y: Axis, width: int, height: int) -> None:
        self.x, self.y, self.w, self.h = x, y, width, height
        self.x0, self.x1 = PAD["l"], width - PAD["r"]
        self.y0, self.y1 = height - PAD["b"], PAD["t"]

    def _t(self, a: Axis, v: float) -> float:
        if a.log:
            v = math.log10(max(v, 1e-300))
        lo, hi = float(a.lo or 0.0), float(a.hi or 1.0)
        if a.log:
            lo, hi = math.log10(lo), math.log10(hi)
        return (v - lo) / ((hi - lo) or 1.0)

    def px(self, v: float) -> float:
        return self.x0 + self._t(self.x, v) * (self.x1 - self.x0)

    def py(self, v: float) -> float:
        return self.y0 - self._t(self.y, v) * (self.y0 - self.y1)


def _fit(axis: Axis, values: Sequence[float], pad: float = 0.05) -> Axis:
    """The axis with its range (padded) and ticks set from the values it must show."""
    vals = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not axis.log)]
    lo = axis.lo if axis.lo is not None else min(vals, default=0.0)
    hi = axis.hi if axis.hi is not None else max(vals, default=1.0)
    if axis.log:
        lo, hi = max(lo, 1e-300), max(hi, lo * 10)
        e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        ticks = [10.0**e for e in range(e0, e1 + 1)]
        return Axis(axis.title, True, 10.0**e0, 10.0**e1, axis.prefix, ticks)
    span = (hi - lo) or (abs(hi) or 1.0)
    if axis.lo is None:
        lo -= span * pad
    if axis.hi is None:
        hi += span * pad
    return Axis(
        axis.title, False, lo, hi, axis.prefix, [t for t in nice_ticks(lo, hi) if lo <= t <= hi]
    )


def _axes(f: _Frame, xlabels: Callable[[float], str] | None = None) -> list[str]:
    out = [el("rect", x=f.x0, y=f.y1, width=f.x1 - f.x0, height=f.y0 - f.y1, fill="none", **GRID)]
    for t in f.y.ticks:
        y = f.py(t)
        label = f"{t:g}" if f.y.log else fmt_tick(t, f.y.ticks, f.y.prefix)
        out.append(el("line", x1=f.x0, x2=f.x1, y1=y, y2=y, **GRID))
        out.append(text(f.x0 - 6, y + 4, label, "end"))
    for t in f.x.ticks:
        x = f.px(t)
        label = xlabels(t) if xlabels else fmt_tick(t, f.x.ticks, f.x.prefix)
        out.append(el("line", x1=x, x2=x, y1=f.y1, y2=f.y0, **GRID))
        out.append(text(x, f.y0 + 16, label, "middle"))
    out.append(text((f.x0 + f.x1) / 2, f.h - 8, f.x.title, "middle", fill_opacity=0.8))
    mid = (f.y0 + f.y1) / 2
    out.append(
        text(
            0,
            0,
            f.y.title,
            "middle",
            fill_opacity=0.8,
            transform=f"translate(14 {mid:.0f}) rotate(-90)",
        )
    )
    return out


def _path(f: _Frame, s: Series) -> str:
    pts = [(f.px(x), f.py(y)) for x, y in zip(s.x, s.y, strict=True)]
    if len(pts) < 2:
        return ""
    d = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
    for xb, yb in pts[1:]:
        if s.lines == "hv":
            d.append(f"H{xb:.1f}V{yb:.1f}")
        elif s.lines == "vh":
            d.append(f"V{yb:.1f}H{xb:.1f}")
        else:
            d.append(f"L{xb:.1f},{yb:.1f}")
    dash = "4 3" if s.dash else None
    return el(
        "path", d="".join(d), fill="none", stroke=s.color, stroke_width=1.6, stroke_dasharray=dash
    )


def _star(x: float, y: float, r: float) -> str:
    pts = []
    for i in range(10):
        a = math.pi / 2 + i * math.pi / 5
        rr = r if i % 2 == 0 else r * 0.45
        pts.append(f"{x + rr * math.cos(a):.1f},{y - rr * math.sin(a):.1f}")
    return " ".join(pts)


SIDES = {
    "top": (0, -10, "middle"),
    "bottom": (0, 18, "middle"),
    "right": (9, 4, "start"),
    "left": (-9, 4, "end"),
}


def _points(f: _Frame, s: Series) -> list[str]:
    out = []
    sides = s.label_sides or ["top"] * len(s.x)
    for i, (x, y) in enumerate(zip(s.x, s.y, strict=True)):
        cx, cy = f.px(x), f.py(y)
        body = el("title", str(escape(s.tips[i]))) if s.tips else ""
        edge = {"stroke": "currentColor", "stroke_width": 0.7}
        if s.markers == "star":
            body += el("polygon", points=_star(cx, cy, s.size * 1.6), fill=s.color, **edge)
        elif s.markers == "circle":
            body += el("circle", cx=cx, cy=cy, r=float(s.size), fill=s.color, **edge)
        elif s.markers == "cross":  # an ×: a point shown, but ruled out
            r = s.size
            d = f"M{cx - r:.1f},{cy - r:.1f}L{cx + r:.1f},{cy + r:.1f}"
            d += f"M{cx - r:.1f},{cy + r:.1f}L{cx + r:.1f},{cy - r:.1f}"
            body += el("path", d=d, stroke=s.color, stroke_width=2.5, class_="ruled-out")
        if s.labels:
            dx, dy, anchor = SIDES[sides[i]]
            body += text(cx + dx, cy + dy, s.labels[i], anchor)
        if body:
            g = el("g", body, class_="pt", data_name=s.name)
            href = s.links[i] if s.links else None
            out.append(el("a", g, href=href) if href else g)
    return out


def _legend(items: Sequence[tuple[str, str, bool]], width: int) -> list[str]:
    """Names with their colour swatches along the top (dashed: a threshold line)."""
    out, x = [], float(PAD["l"])
    for name, color, dashed in items:
        dash = "4 3" if dashed else None
        out.append(
            el(
                "line",
                x1=x,
                x2=x + 16,
                y1=14,
                y2=14,
                stroke=color,
                stroke_width=2,
                stroke_dasharray=dash,
            )
        )
        out.append(text(x + 20, 18, name))
        x += 32 + 6.5 * len(name)
        if x > width - 80:
            break
    return out


def _svg(parts: list[str], width: int, height: int, label: str) -> Markup:
    return Markup(  # every piece built by el() / text(): escaped
        el(
            "svg",
            "".join(parts),
            class_="chart-svg",
            viewBox=f"0 0 {width} {height}",
            width="100%",
            role="img",
            aria_label=label,
            xmlns="http://www.w3.org/2000/svg",
        )
    )


def plot(
    series: Sequence[Series],
    x: Axis,
    y: Axis,
    *,
    hline: tuple[float, str] | None = None,
    legend: bool = False,
    width: int = W,
    height: int = H,
) -> Markup:
    """A scatter / line chart of the series, on axes fitted to their values (and `hline`'s)."""
    ys = [v for s in series for v in s.y] + ([hline[0]] if hline else [])
    f = _Frame(_fit(x, [v for s in series for v in s.x]), _fit(y, ys), width, height)
    parts = _axes(f)
    if hline is not None:
        yy = f.py(hline[0])
        line = {"stroke": "currentColor", "stroke_opacity": 0.6, "stroke_dasharray": "5 4"}
        parts.append(el("line", x1=f.x0, x2=f.x1, y1=yy, y2=yy, class_="threshold", **line))
        parts.append(text(f.x1 - 4, yy - 5, hline[1], "end"))
    for s in series:
        if s.lines:
            parts.append(_path(f, s))
    for s in series:
        parts += _points(f, s)
    if legend:
        parts += _legend([(s.name, s.color, s.dash) for s in series if s.name], width)
    return _svg(parts, width, height, f"{y.title} against {x.title}")


def box_plot(
    categories: Sequence[str],
    groups: Sequence[tuple[str, str, dict[str, Box]]],
    x_title: str,
    y_title: str,
    *,
    width: int = W,
    height: int = H,
) -> Markup:
    """Boxes per category (a load level), one per group (an endpoint) side by side."""
    vals = [v for _, _, boxes in groups for b in boxes.values() for v in (b.lo, b.hi)]
    y = _fit(Axis(y_title, lo=min(0.0, *vals) if vals else 0.0), vals)
    cat = {c: i for i, c in enumerate(categories)}
    xa = Axis(
        x_title, lo=-0.5, hi=len(categories) - 0.5, ticks=[float(i) for i in range(len(categories))]
    )
    f = _Frame(xa, y, width, height)
    parts = _axes(f, xlabels=lambda t: categories[round(t)])
    slot = (f.px(1) - f.px(0)) * 0.8 / max(len(groups), 1)
    for gi, (name, color, boxes) in enumerate(groups):
        for c, b in boxes.items():
            x = f.px(cat[c]) - slot * len(groups) / 2 + slot * (gi + 0.5)
            w = slot * 0.7
            tip = (
                f"{name} · {c}: p5 {b.lo:.1f} · p25 {b.q1:.1f} · median {b.median:.1f}"
                f" · p75 {b.q3:.1f} · p95 {b.hi:.1f}"
            )
            top, bottom, mid = f.py(b.q3), f.py(b.q1), f.py(b.median)
            body = el("title", str(escape(tip)))
            body += el("line", x1=x, x2=x, y1=f.py(b.lo), y2=f.py(b.hi), stroke=color)
            body += el(
                "rect",
                x=x - w / 2,
                y=top,
                width=w,
                height=max(1.0, bottom - top),
                fill=color,
                fill_opacity=0.35,
                stroke=color,
            )
            body += el(
                "line", x1=x - w / 2, x2=x + w / 2, y1=mid, y2=mid, stroke=color, stroke_width=2
            )
            parts.append(el("g", body, class_="box", data_name=name))
    parts += _legend([(n, c, False) for n, c, _ in groups], width)
    return _svg(parts, width, height, f"{y_title} by {x_title}")
