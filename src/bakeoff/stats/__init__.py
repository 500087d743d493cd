"""Small pure statistics: intervals, percentiles, paired comparisons and corrections."""

from bakeoff.stats._bt import Vote, bradley_terry
from bakeoff.stats._compare import (
    bootstrap_mean_ci,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    pass_at_k,
)
from bakeoff.stats._intervals import clopper_pearson, percentile, wilson_interval

__all__ = [
    "Vote",
    "bootstrap_mean_ci",
    "bradley_terry",
    "clopper_pearson",
    "holm",
    "mcnemar_exact",
    "paired_bootstrap",
    "pass_at_k",
    "percentile",
    "wilson_interval",
]
