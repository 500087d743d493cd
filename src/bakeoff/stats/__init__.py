"""Small pure statistics: intervals and percentiles used by summaries."""

from bakeoff.stats._intervals import percentile, wilson_interval

__all__ = ["percentile", "wilson_interval"]
