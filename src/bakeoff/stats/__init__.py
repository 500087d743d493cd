"""Small pure statistics: intervals, percentiles, paired comparisons and corrections."""

from bakeoff.stats._betting import BettingCS, betting_confidence_sequence
from bakeoff.stats._bt import Vote, bradley_terry
from bakeoff.stats._compare import (
    bootstrap_mean_ci,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    pass_at_k,
)
from bakeoff.stats._intervals import clopper_pearson, percentile, wilson_interval
from bakeoff.stats._items import (
    item_bootstrap_ci,
    item_mean_ci,
    paired_item_differences,
    per_item_means,
    sign_flip_test,
)
from bakeoff.stats._small import bootstrap_t_interval, bootstrap_t_pvalue, paired_mean_test

__all__ = [
    "BettingCS",
    "Vote",
    "betting_confidence_sequence",
    "bootstrap_mean_ci",
    "bootstrap_t_interval",
    "bootstrap_t_pvalue",
    "bradley_terry",
    "clopper_pearson",
    "holm",
    "item_bootstrap_ci",
    "item_mean_ci",
    "mcnemar_exact",
    "paired_bootstrap",
    "paired_item_differences",
    "paired_mean_test",
    "pass_at_k",
    "per_item_means",
    "percentile",
    "sign_flip_test",
    "wilson_interval",
]
