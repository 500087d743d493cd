"""Gates for CI: rules a run's summary must pass (`bakeoff run --fail-on RULE`), else exit code
`GATE_EXIT` — the code promptfoo uses for failed assertions, distinct from bakeoff's own errors
(2), interruptions (130) and crashes (1).

Rules, each checked on every endpoint but the reference unless it names one (`NAME:RULE`):
- `different` — the fidelity audit says "different";
- `not-same` — anything but "same" (inconclusive counts: the strict nightly gate);
- `error-rate>X` — more than this share of its calls failed;
- `score<X` — a suite's primary score below X (`SUITE.score<X` for one suite).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bakeoff.runs._results import EndpointSummary, RunSummary

GATE_EXIT = 100

_RULE = re.compile(
    r"^(?:(?P<endpoint>[^:\s]+):)?(?:(?P<verdict>different|not-same)"
    r"|error-rate>(?P<error_rate>[0-9.]+)"
    r"|(?:(?P<suite>[A-Za-z0-9_.-]+)\.)?score<(?P<score>[0-9.]+))$"
)


@dataclass(frozen=True)
class Gate:
    text: str
    endpoint: str | None = None
    verdict: str | None = None
    error_rate: float | None = None
    suite: str | None = None
    score: float | None = None


def parse_gate(text: str) -> Gate:
    """A rule as written on the command line; ValueError naming the forms otherwise."""
    m = _RULE.match(text.strip())
    if m is None:
        raise ValueError(
            f"--fail-on {text!r}: expected different, not-same, error-rate>X, score<X or "
            "SUITE.score<X, optionally prefixed by ENDPOINT:"
        )
    try:
        er = float(m["error_rate"]) if m["error_rate"] is not None else None
        sc = float(m["score"]) if m["score"] is not None else None
    except ValueError:
        raise ValueError(f"--fail-on {text!r}: not a number") from None
    return Gate(text.strip(), m["endpoint"], m["verdict"], er, m["suite"], sc)


def failed_gates(summary: RunSummary, gates: list[Gate]) -> list[str]:
    """One line per (gate, endpoint) that fails, saying what was seen."""
    out = []
    endpoints = {e.name: e for e in summary.endpoints}
    for g in gates:
        if g.endpoint is not None and g.endpoint not in endpoints:
            out.append(f"{g.text}: no endpoint {g.endpoint!r} in the run")
            continue
        names = [g.endpoint] if g.endpoint else [n for n, e in endpoints.items() if not e.reference]
        for name in names:
            why = _fails(g, endpoints[name])
            if why:
                out.append(f"{g.text}: {name} {why}")
    return out


def _fails(g: Gate, e: EndpointSummary) -> str | None:
    if g.verdict is not None:
        if e.fidelity is None:
            return "has no fidelity verdict (the audit did not run)"
        verdict = e.fidelity.verdict
        if (g.verdict == "different" and verdict == "different") or (
            g.verdict == "not-same" and verdict != "same"
        ):
            return f"is {e.fidelity.claim or verdict}"
        return None
    if g.error_rate is not None:
        rate = e.error_rate
        return (
            f"failed {rate:.1%} of its calls" if rate is not None and rate > g.error_rate else None
        )
    assert g.score is not None
    suites = [g.suite] if g.suite else list(e.suites)
    low = []
    for s in suites:
        st = e.suites.get(s)
        if st is None:
            return f"has no suite {s!r}"
        if st.score is None:  # no score is never a pass
            low.append(f"{s} n/a ({st.no_score or 'no answered call'})")
        elif st.score < g.score:
            low.append(f"{s} {st.score:.3f}")
    return "scored " + ", ".join(low) if low else None
