"""The fidelity audit: is each endpoint serving the reference model? Verdicts with p-values, the
calls they took, and the evidence."""

from bakeoff.audit._analysis import SUITES, analyse
from bakeoff.audit._audit import audit_items_for_run, run_audit
from bakeoff.audit._cap import guess_call_usd, prompt_tokens_bound
from bakeoff.audit._errors import AuditError
from bakeoff.audit._factories import scorer_factory_for
from bakeoff.audit._greedy import (
    calls_for_equivalence,
    excess_lower_bound,
    excess_upper_bound,
    first_divergence,
    greedy_tests,
)
from bakeoff.audit._power import Power, greedy_power
from bakeoff.audit._rerun import Reanalysis, reanalyse, rerun_audit
from bakeoff.audit._stats import (
    BettingResult,
    NonFiniteEvidence,
    bounded,
    e_bh,
    mmd_hamming_test,
    normalize_text,
    sign_flip_test,
    symmetric_betting_test,
    tolerant_paired_test,
)
from bakeoff.suites.fidelity import audit_items

__all__ = [
    "SUITES",
    "AuditError",
    "BettingResult",
    "NonFiniteEvidence",
    "Power",
    "Reanalysis",
    "analyse",
    "audit_items",
    "audit_items_for_run",
    "bounded",
    "calls_for_equivalence",
    "e_bh",
    "excess_lower_bound",
    "excess_upper_bound",
    "first_divergence",
    "greedy_power",
    "greedy_tests",
    "guess_call_usd",
    "mmd_hamming_test",
    "normalize_text",
    "prompt_tokens_bound",
    "reanalyse",
    "rerun_audit",
    "run_audit",
    "scorer_factory_for",
    "sign_flip_test",
    "symmetric_betting_test",
    "tolerant_paired_test",
]
