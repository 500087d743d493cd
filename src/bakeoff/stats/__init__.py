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
from bakeoff.stats._items import (
    cs_half_width,
    item_bootstrap_ci,
    item_mean_ci,
    items_for_width,
    mean_confidence_sequence,
    paired_item_differences,
    per_item_means,
    sign_flip_test,
)

__all__ = [
    "Vote",
    "bootstrap_mean_ci",
    "bradley_terry",
    "clopper_pearson",
    "cs_half_width",
    "holm",
    "item_bootstrap_ci",
    "item_mean_ci",
    "items_for_width",
    "mcnemar_exact",
    "mean_confidence_sequence",
    "paired_bootstrap",
    "paired_item_differences",
    "pass_at_k",
    "per_item_means",
    "percentile",
    "sign_flip_test",
    "wilson_interval",
]
