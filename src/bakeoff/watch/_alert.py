"""A watch's alerts by webhook (`bakeoff watch --alert-url`): at each new alarm, one JSON POST per
endpoint in alarm — the watch, the endpoint, what changed (the statistic against its threshold, the
counts, the check, the re-check) and the evidence (the check's run, its page in the UI, the anchors
that changed).

The POST is `endpoints.post_json` (the project's one synchronous HTTP path: a deadline over the
whole call, a size cap, error bodies redacted). A key, when given, comes from an environment
variable and is sent as `Authorization: Bearer ...`: it is never stored, never in the body, and
never in a log line or an exception (the error text is redacted of it). The URL itself can hold a
secret (a Slack-style hook's path): log lines name only its scheme and host.

5xx answers and failures to connect or to answer in time are retried with a bounded exponential
backoff; a 4xx is not (the receiver refused this alert: sending it again would not help). An alert
that still fails is an `AlertOutcome` with a class, logged by the caller — never an exception that
ends the watch.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bakeoff.endpoints import PostError, post_json
from bakeoff.watch._check import CheckResult, EndpointStep

ANSWER_BYTES = 65_536
"""What is read of a receiver's answer (its content is not used)."""


@dataclass(frozen=True)
class AlertTarget:
    url: str
    key: str | None = None
    """The bearer key (read from the environment by the caller; held in memory only)."""
    retries: int = 3
    """Attempts after the first, on a 5xx or a failure to connect or answer."""
    backoff: float = 1.0
    """Seconds before the first retry, doubled at each (capped at `max_backoff`)."""
    max_backoff: float = 30.0
    timeout: float = 10.0

    def __repr__(self) -> str:  # never the key, never the URL's path (it may be a secret)
        return f"AlertTarget({where(self.url)!r}, key={'set' if self.key else 'none'})"


@dataclass(frozen=True)
class AlertOutcome:
    endpoint: str
    ok: bool
    attempts: int
    error_class: str | None = None
    """`alert_rejected` (a 4xx), `alert_server_error` (5xx after every retry),
    `alert_unreachable` (no answer: connection refused, timeout, a bad URL)."""
    detail: str | None = None


def where(url: str) -> str:
    """The URL as a log line may show it: scheme and host only."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or '?'}://{host}{port}"


def new_alarms(result: CheckResult) -> list[EndpointStep]:
    """The endpoints whose alarm this check raised (not those already in alarm before it)."""
    return [s for s in result.steps if s.step.alarm and s.step.statistic is not None]


def payload(name: str, result: CheckResult, s: EndpointStep) -> dict[str, object]:
    """The alert's JSON body: what changed, and where the evidence is."""
    st = s.step
    evidence: dict[str, object] = {
        "run_id": result.run_id,
        "ui_path": f"/run/{result.run_id}" if result.run_id else None,
        "changed_anchors": [item for item, _, _ in s.changes],
    }
    if s.recheck is not None:
        evidence["recheck_run_id"] = s.recheck.run_id
        evidence["recheck_ui_path"] = f"/run/{s.recheck.run_id}" if s.recheck.run_id else None
    return {
        "event": "alarm",
        "watch": name,
        "endpoint": s.endpoint,
        "check": result.seq,
        "slot": result.slot,
        "change": {
            "test": "e-detector (Shiryaev-Roberts) on greedy anchor answers against the "
            "endpoint's own baseline",
            "statistic": st.statistic,
            "threshold": st.threshold,
            "anchors_changed": st.changed,
            "anchors_compared": st.n,
            "honest_rate_bound": s.state.p0,
            "recheck": None if s.recheck is None else s.recheck.as_json(),
        },
        "evidence": evidence,
        "sent_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def send(
    target: AlertTarget,
    body: dict[str, object],
    endpoint: str,
    sleep: Callable[[float], None] = time.sleep,
) -> AlertOutcome:
    """POST one alert, retrying 5xx and unanswered attempts with a bounded backoff."""
    headers = {"Content-Type": "application/json", "User-Agent": "bakeoff-watch"}
    if target.key:
        headers["Authorization"] = f"Bearer {target.key}"
    delay = target.backoff
    cls, detail = "alert_unreachable", ""
    for attempt in range(1, target.retries + 2):
        try:
            post_json(
                target.url,
                body,
                headers,
                timeout=target.timeout,
                max_bytes=ANSWER_BYTES,
                secret=target.key,
                parse=False,
            )
        except PostError as e:
            detail = _clean(str(e), target)
            if e.status is not None and 400 <= e.status < 500:
                return AlertOutcome(endpoint, False, attempt, "alert_rejected", detail)
            cls = "alert_server_error" if e.status is not None else "alert_unreachable"
            if attempt <= target.retries:
                sleep(min(delay, target.max_backoff))
                delay *= 2
            continue
        return AlertOutcome(endpoint, True, attempt)
    return AlertOutcome(endpoint, False, target.retries + 1, cls, detail)


def _clean(text: str, target: AlertTarget) -> str:
    text = text.replace(target.url, where(target.url))
    if target.key:
        text = text.replace(target.key, "***")
    return text


def alert(
    target: AlertTarget,
    name: str,
    result: CheckResult,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> list[AlertOutcome]:
    """Alert every new alarm of the check; each outcome logged (a failure with its class)."""
    outcomes = []
    for s in new_alarms(result):
        o = send(target, payload(name, result, s), s.endpoint, sleep)
        if o.ok:
            log(f"watch {name}: alert for {s.endpoint} sent to {where(target.url)}")
        else:
            log(
                f"watch {name}: alert for {s.endpoint} to {where(target.url)} failed after "
                f"{o.attempts} attempt(s) ({o.error_class}): {o.detail}; the watch goes on"
            )
        outcomes.append(o)
    return outcomes
