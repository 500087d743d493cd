"""Re-analysis: a run's audit rebuilt from its stored calls and scorer answers (no call made)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bakeoff.audit._analysis import SUITES, analyse
from bakeoff.audit._audit import (
    RUN_ANALYSIS,
    _analysis_id,
    _now,
    _stored_scorers,
    stated,
)
from bakeoff.audit._errors import AuditError
from bakeoff.audit._factories import alternative_scorers_for, scorer_factory_for
from bakeoff.lineups import AuditSettings, Lineup
from bakeoff.store import Store, Verdict
from bakeoff.suites import Item

if TYPE_CHECKING:
    from bakeoff.audit._types import ScorerLoad

Settings = dict[str, object]
"""Audit settings as JSON: stored with an analysis, or overrides of a re-analysis."""


@dataclass
class Reanalysis:
    """What `bakeoff audit --rerun` found."""

    analysis_id: str
    """`run` (the run's own analysis, rebuilt) or the id of a re-analysis stored beside it."""
    verdicts: dict[str, Verdict]
    identical: bool | None
    """Equal, number for number, to the stored verdicts of that analysis (None: none stored)."""
    differ: list[str]
    """The endpoints whose stored verdict differs (an analysis that did not reproduce)."""
    settings: Settings
    replayed: int
    """Scorer answers read back from the store; `computed` were asked of a live scorer."""
    computed: int


def reanalyse(
    store: Store,
    run_id: str,
    lineup: Lineup,
    overrides: Settings | None = None,
) -> Reanalysis:
    """Rebuild a run's audit analysis from its stored calls and scorer answers: no call is made
    to an endpoint, and no scorer is asked for what was stored. With no `overrides` it is the
    run's own analysis — the settings stored with the run, the scorers' stored answers — and its
    verdicts are compared with the stored ones (never written over them). `overrides` (audit
    settings, e.g. `{"margin": 0.2}`) make another analysis, stored beside the run's under its
    own id."""
    own = store.analysis(run_id, RUN_ANALYSIS)
    items = _stored_items(store, run_id)
    settings = _settings(own, lineup, overrides, list(items))
    try:
        scorer_load = scorer_factory_for(lineup, settings)
    except AuditError:
        if own is None:
            raise  # nothing stored to replay: the scorer is needed
        scorer_load = None  # no GGUF or server here: the stored answers must do
    alt_loads = {name: _optional(lineup, settings, name) for name in settings.alternatives or []}
    scorer, alternatives, wrapped = _stored_scorers(
        store, run_id, scorer_load, alt_loads, replay=True
    )
    used = (own or {}).get("scorers") or {}
    if scorer_load is None and ("reference" not in used or not _scored(settings)):
        # answers stored by another analysis (`--set scorer=local`) are not this one's scorer:
        # replayed, they would turn a run judged without a scorer into one judged with it
        scorer = None
    missing = [
        role
        for role in used
        if (role == "reference" and scorer is None)
        or (role.startswith("alt:") and role[4:] not in alternatives)
    ]
    if missing:
        raise AuditError(
            f"the run's analysis used the scorer {missing[0]} ({used[missing[0]]}); it has no "
            "stored answers and cannot be loaded here"
        )
    verdicts = analyse(store, run_id, lineup, settings, items, scorer, alternatives=alternatives)
    replayed = sum(w.replayed for w in wrapped)
    computed = sum(w.flush() for w in wrapped)
    fresh = stated(verdicts)
    if overrides:
        analysis_id = _analysis_id(settings)
        before = store.analysis(run_id, analysis_id)
        stored = before["verdicts"] if before is not None else None
    else:
        analysis_id = RUN_ANALYSIS
        stored = own["verdicts"] if own is not None else (_kept(store, run_id) or None)
    differ = sorted(ep for ep in fresh if stored is not None and stored.get(ep) != fresh[ep])
    identical = None if stored is None else (not differ and set(stored) == set(fresh))
    if analysis_id == RUN_ANALYSIS and identical is False:
        analysis_id = _analysis_id(settings) + "-rerun"  # the run's own is kept; this beside it
    if analysis_id != RUN_ANALYSIS:
        identities = own["scorers"] if own is not None else {}
        store.put_analysis(
            run_id, analysis_id, settings.model_dump(mode="json"), identities, fresh, _now()
        )
    return Reanalysis(
        analysis_id,
        verdicts,
        identical,
        differ,
        settings.model_dump(mode="json"),
        replayed,
        computed,
    )


def _scored(settings: AuditSettings) -> bool:
    """The settings judge by a reference scorer (not `none`, nor the reference's top-k)."""
    return settings.scorer not in ("none", "top_logprobs")


def _stored_items(store: Store, run_id: str) -> dict[str, list[Item]]:
    items = {}
    for regime in ("greedy", "sampled"):
        rows = store.items(run_id, SUITES[regime])
        if rows:
            items[regime] = [Item.from_stored(r) for r in rows]
    if not items:
        raise AuditError(f"run {run_id} has no fidelity calls to re-analyse")
    return items


def _settings(
    own: dict[str, Any] | None,
    lineup: Lineup,
    overrides: Settings | None,
    regimes: list[str],
) -> AuditSettings:
    """The run's stored settings (else, audited before they were kept, the lineup's), with the
    overrides of this re-analysis, each checked as the lineup's would be."""
    settings = AuditSettings.model_validate(own["settings"]) if own else lineup.audit
    if overrides:
        try:
            settings = AuditSettings.model_validate(
                {**settings.model_dump(mode="json"), **overrides}
            )
        except ValueError as e:
            raise AuditError(f"re-analysis settings: {e}") from None
    if settings.regimes != regimes:
        settings = settings.model_copy(update={"regimes": regimes})
    return settings


def _optional(lineup: Lineup, settings: AuditSettings, name: str) -> ScorerLoad | None:
    """The loader of one alternative's scorer, or None where it cannot be had here."""
    try:
        one = settings.model_copy(update={"alternatives": [name]})
        return alternative_scorers_for(lineup, one)[name]
    except AuditError:
        return None


def _kept(store: Store, run_id: str) -> dict[str, object]:
    """The `verdicts` table's rows as stored (a run audited before analyses were kept)."""
    return stated(store.verdicts(run_id))


def rerun_audit(store: Store, run_id: str, lineup: Lineup) -> dict[str, Verdict]:
    """The verdicts of the run's own analysis rebuilt from the store (see `reanalyse`)."""
    return reanalyse(store, run_id, lineup).verdicts
