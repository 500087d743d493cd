import random

import pytest

from bakeoff.endpoints import CallError, ErrorClass, RetryPolicy, decide, parse_retry_after


@pytest.mark.parametrize(
    "cls,retried",
    [
        (ErrorClass.rate_limited, True),
        (ErrorClass.server_error, True),
        (ErrorClass.timeout, True),
        (ErrorClass.connection_error, True),
        (ErrorClass.bad_response, True),
        (ErrorClass.auth, False),
        (ErrorClass.context_overflow, False),
        (ErrorClass.content_filter, False),
        (ErrorClass.bad_request, False),
        (ErrorClass.cancelled, False),
    ],
)
def test_only_infrastructure_errors_are_retried(cls, retried):
    d = decide(RetryPolicy(), 1, CallError(cls, "x"))
    assert d.retry is retried


def test_gives_up_after_max_retries():
    pol = RetryPolicy(max_retries=2)
    err = CallError(ErrorClass.server_error, "500")
    assert decide(pol, 2, err).retry
    d = decide(pol, 3, err)
    assert not d.retry and "3 attempts" in d.reason


def test_backoff_grows_and_is_jittered_within_bounds():
    pol = RetryPolicy(backoff_base_s=1, backoff_max_s=8, jitter=0.5)
    rng = random.Random(1)
    err = CallError(ErrorClass.server_error, "500")
    for attempt, full in [(1, 1), (2, 2), (3, 4), (4, 8)]:
        w = decide(pol, attempt, err, rng).wait_s
        assert full * 0.5 <= w <= full
    assert decide(RetryPolicy(max_retries=10, backoff_max_s=8), 9, err, rng).wait_s <= 8


def test_retry_after_is_honoured_and_capped():
    pol = RetryPolicy(retry_after_max_s=10)
    d = decide(pol, 1, CallError(ErrorClass.rate_limited, "429", retry_after=3.0))
    assert d.wait_s == 3.0 and "Retry-After" in d.reason
    assert decide(pol, 1, CallError(ErrorClass.rate_limited, "429", retry_after=99)).wait_s == 10


def test_parse_retry_after_forms():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
