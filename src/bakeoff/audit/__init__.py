"""The fidelity audit: is each endpoint serving the reference model? Verdicts with p-values, the
calls they took, and the evidence."""

from bakeoff.audit._analysis import SUITES, analyse
from bakeoff.audit._audit import audit_items_for_run, run_audit
from bakeoff.audit._errors import AuditError
from bakeoff.audit._factories import scorer_factory_for
from bakeoff.audit._greedy import (
    calls_for_equivalence,
    first_divergence,
    greedy_power,
    rate_upper_bound,
)
from bakeoff.audit._rerun import Reanalysis, reanalyse, rerun_audit
from bakeoff.audit._stats import (
    BettingResult,
    bounded,
    e_bh,
    mmd_hamming_test,
    normalize_text,
    sign_flip_test,
    symmetric_betting_test,
)
from bakeoff.suites.fidelity import audit_items

__all__ = [
    "SUITES",
    "AuditError",
    "BettingResult",
    "Reanalysis",
    "analyse",
    "audit_items",
    "audit_items_for_run",
    "bounded",
    "calls_for_equivalence",
    "e_bh",
    "first_divergence",
    "greedy_power",
    "mmd_hamming_test",
    "normalize_text",
    "rate_upper_bound",
    "reanalyse",
    "rerun_audit",
    "run_audit",
    "scorer_factory_for",
    "sign_flip_test",
    "symmetric_betting_test",
]
