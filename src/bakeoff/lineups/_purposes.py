"""Sampling for the calls bakeoff makes for its own purposes, in one place.

A suite item's request merges the lineup's `defaults`, the endpoint's `params` and the item's own
(`Lineup.sampling_for`, `Item.request`). The calls below are not the user's to tune — a judge must
be deterministic, a probe must not wander — so their settings are named here and nowhere else."""

from __future__ import annotations

GREEDY: dict[str, object] = {"temperature": 0.0}
"""Deterministic decoding: probes, perf's synthetic load, the reference scorer."""
SAMPLED: dict[str, object] = {"temperature": 1.0}
"""The model's own distribution (the fidelity audit's sampled regime)."""
JUDGE: dict[str, object] = {**GREEDY, "max_tokens": 16}
"""An LLM judge of a dataset scorer: PASS or FAIL."""
ARENA_JUDGE: dict[str, object] = {**GREEDY, "max_tokens": 8}
"""The arena's judge: A, B or tie."""


def audit_regime(regime: str) -> dict[str, object]:
    """The fidelity audit's decoding for a regime: `greedy` or `sampled`."""
    return dict(GREEDY if regime == "greedy" else SAMPLED)


FIDELITY_PREFIX = "fidelity."
"""The suites of the fidelity audit's calls (`fidelity.greedy`, `fidelity.sampled`): stored like
any suite's, told apart by this prefix (the bill's `audit` purpose, exports, the analysis)."""


def fidelity_suite(regime: str) -> str:
    """The suite of a regime's audit calls: `fidelity.greedy` or `fidelity.sampled`."""
    return FIDELITY_PREFIX + regime
