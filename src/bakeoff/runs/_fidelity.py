"""The audit's verdict on an endpoint as the run summary states it (`Fidelity`): beside it the
mode that decided the greedy test (where its margins came from) and what the endpoint claims."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bakeoff.runs._results import Fidelity, vs_claim
from bakeoff.store import Verdict, margin_source_text

if TYPE_CHECKING:
    from bakeoff.store import AuditStop


def fidelity_of(
    v: Verdict | None, is_reference: bool, stop: AuditStop | None = None, claimed: str | None = None
) -> Fidelity | None:
    """The audit's verdict as the summary states it, beside the claimed quantization; an
    inconclusive one says when the audit's cost cap stopped it."""
    if v is None and not is_reference:
        return None
    f = Fidelity(verdict="reference")
    if v is not None and not is_reference:
        f = Fidelity(
            verdict=v.verdict,
            claim=v.claim,
            p_value=v.p_value,
            multiplicity=v.multiplicity,
            alpha=v.alpha,
            calls=v.calls,
            tokens=v.tokens,
            why=f"{v.why or ''} ({stop.text()})".lstrip()
            if stop is not None and v.verdict == "inconclusive"
            else v.why,
            flags=v.behaviour.flags,
        )
    said = {"margins": None if is_reference or v is None else _margins(v)}
    said["vs_claim"] = vs_claim(f.verdict, claimed)
    for key, text in said.items():
        if text is not None:
            setattr(f, key, text)
    return f


def _margins(v: Verdict) -> str | None:
    g = v.tests.get("greedy")
    if v.margin_source is None or g is None:
        return None
    return margin_source_text(v.margin_source, g.top_k)
