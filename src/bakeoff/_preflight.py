"""Everything checked before a run's first call. Here, without a call (`preflight`): the suites and
providers exist, every key variable is allowed and set, model-written code has its sandbox, the
local model is installed. Over the wire (`check_endpoints`): every endpoint the run does not start
itself answers its listing, then one real one-token call, whose bills `record_preflight` keeps
with the run. `RunError` is the error of the whole pipeline (`_pipeline.py` re-exports these)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bakeoff.lineups import Endpoint, Lineup, keys, missing_env
from bakeoff.plugins import UnknownPluginError, get_provider
from bakeoff.runs import suite_for
from bakeoff.store import Store
from bakeoff.suites.datasets import DatasetError

Log = Callable[[str], None]


class RunError(Exception):
    """The run could not start (no call was made) or stopped; the message says why and what to do
    next."""


class RunStopped(RunError):
    """A stored run stopped on a fatal error (storage, a server, the audit): the calls made so far
    are kept, and `run_id` resumes it once the cause is fixed."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


@dataclass
class PreflightCall:
    """The bill of one one-token preflight call, kept with the run once it exists (`side_calls`,
    purpose `preflight`): every call bakeoff makes is on the bill."""

    endpoint: str
    started_at: float
    ok: bool
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    """`usage.cost` when the endpoint reports it (OpenRouter); else priced from the lineup. (Its
    serving upstream is not kept: the call carries no routing, so it is not a pinned call.)"""


async def check_endpoints(
    lineup: Lineup, *, log: Log | None = None, timeout: float = 10.0
) -> list[PreflightCall]:
    """Before any call: every endpoint the run does not start itself (a `base_url` of the user's)
    answers `GET /models` with the key it will be given, then one real one-token call. A dead
    host, a base URL without its `/v1`, a refused key or bill is one line each, in one `RunError`;
    a model the listing does not name is a warning (gateways serve aliases they do not list).
    Returns the one-token calls' bills (`record_preflight` keeps them with the run)."""
    from bakeoff.endpoints import open_session
    from bakeoff.runs import api_keys

    keys = api_keys(lineup)
    remote = [e for e in lineup.endpoints if e.base_url and e.provider not in ("local", "proxy")]
    if not remote:
        return []
    calls: list[PreflightCall] = []
    async with open_session(total=timeout, connect=min(5.0, timeout)) as session:
        found = await asyncio.gather(*(_check(session, e, keys.get(e.name)) for e in remote))
        for _, warning in found:
            if warning and log:
                log(f"warning: {warning}")
        problems = [p for p, _ in found if p]
        if not problems:  # every listing answered: then one real call each
            refused = await asyncio.gather(
                *(_one_token(session, e, keys.get(e.name), calls) for e in remote)
            )
            problems = [p for p in refused if p]
            if problems:
                lines = "\n  ".join(problems)
                raise RunError(
                    f"only the one-token preflight calls were made:\n  {lines}\n"
                    "(preflight: --no-preflight skips it)"
                )
    if problems:
        lines = "\n  ".join(problems)
        raise RunError(f"no call was made:\n  {lines}\n(preflight: --no-preflight skips it)")
    return calls


async def _check(session: Any, ep: Any, key: str | None) -> tuple[str | None, str | None]:
    """(why the endpoint cannot be used, a warning)."""
    import aiohttp
    import orjson

    base = str(ep.base_url).rstrip("/")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with session.get(f"{base}/models", headers=headers, allow_redirects=False) as r:
            status = r.status
            body = await r.content.read(1_000_000) if status == 200 else b""
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return f"endpoint {ep.name!r}: cannot reach {base} ({type(e).__name__})", None
    if status == 404:
        why = "is the base_url right? (OpenAI-compatible servers serve under /v1)"
        return f"endpoint {ep.name!r}: {base}/models answered 404: {why}", None
    if status in (401, 403):
        which = f"the key in {ep.api_key_env}" if ep.api_key_env else "no key (api_key_env unset)"
        return f"endpoint {ep.name!r}: {base} refused {which} (HTTP {status})", None
    if status >= 400:
        return f"endpoint {ep.name!r}: {base}/models answered HTTP {status}", None
    try:
        data = orjson.loads(body).get("data") or []
        listed = [m.get("id") for m in data if isinstance(m, dict)]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None, None  # answered, but not a listing we can read: the calls will tell
    if listed and ep.model not in listed:
        shown = ", ".join(str(m) for m in listed[:5]) + (", ..." if len(listed) > 5 else "")
        return None, f"endpoint {ep.name!r}: model {ep.model!r} is not listed at {base} ({shown})"
    return None, None


PREFLIGHT_PROMPT = "Reply with one word."
"""The prompt of the one-token preflight call (`_one_token`)."""


async def _one_token(
    session: Any, ep: Any, key: str | None, calls: list[PreflightCall]
) -> str | None:
    """One real call of the API the endpoint is used with (`max_tokens: 1`): a listing that
    answers proves little — a key refused for generation, or an account out of credits (HTTP
    402), fails every call of the run. Refusals of the key or the bill stop the run here; other
    answers are left to the run (the real calls carry the preset's fields, this one does not)."""
    import aiohttp

    from bakeoff.store import HELD

    base = str(ep.base_url).rstrip("/")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    hi = PREFLIGHT_PROMPT
    path, body = (
        ("/completions", {"model": ep.model, "prompt": hi, "max_tokens": 1})
        if ep.api == "completions"
        else (
            "/chat/completions",
            {"model": ep.model, "messages": [{"role": "user", "content": hi}], "max_tokens": 1},
        )
    )
    started = time.time()
    try:
        async with session.post(base + path, json=body, headers=headers) as r:
            raw = await r.content.read(100_000)
    except (aiohttp.ClientError, OSError, TimeoutError):
        calls.append(PreflightCall(ep.name, started, False))
        return None  # reachable a moment ago: the run's own calls will classify it
    calls.append(_bill(ep.name, started, r.status, raw))
    if r.status not in (401, 402, 403):
        return None
    from bakeoff.store import provider_message

    why = HELD.message(provider_message(f"HTTP {r.status}", raw[:2000].decode("utf-8", "replace")))
    return f"endpoint {ep.name!r}: a one-token call to {base}{path} was refused ({why})"


def _bill(name: str, started: float, status: int, raw: bytes) -> PreflightCall:
    """Tokens and `usage.cost` of a one-token answer (whatever it holds: anything not a number
    where one is expected is left out)."""
    import orjson

    call = PreflightCall(name, started, status == 200)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return call
    usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(usage, dict):
        num = {k: v for k, v in usage.items() if type(v) in (int, float) and v >= 0}
        call.prompt_tokens = int(num["prompt_tokens"]) if "prompt_tokens" in num else None
        call.completion_tokens = (
            int(num["completion_tokens"]) if "completion_tokens" in num else None
        )
        call.cost_usd = float(num["cost"]) if "cost" in num else None
    return call


def preflight(lineup: Lineup, *, unsafe_code: bool = False, log: Log | None = None) -> None:
    """Everything that would stop the run, checked before any call: the suites and providers
    exist, every key variable is set, model-written code has its sandbox (or `unsafe_code`), the
    local model is installed."""
    try:
        for s in lineup.run.suites:
            suite_for(lineup, s)
        for ep in lineup.endpoints:
            get_provider(ep.provider)
    except (UnknownPluginError, DatasetError) as e:
        raise RunError(str(e)) from None
    check_planned(lineup)
    check_env(lineup, log)
    check_sandbox(lineup, unsafe_code, log)
    check_local(lineup)


def check_planned(lineup: Lineup) -> None:
    """The lineup plans calls, and its datasets read whole (a bad row is reported with its file
    and line before a run is stored: a run left behind would "resume" with nothing planned)."""
    from bakeoff.runs import suite_items

    n = 0
    for ds in lineup.datasets:
        if ds.name in lineup.run.suites:
            try:
                n += len(suite_items(lineup, ds.name))
            except (DatasetError, ValueError) as e:
                raise RunError(str(e)) from None
    builtin = [s for s in lineup.run.suites if not any(d.name == s for d in lineup.datasets)]
    audits = lineup.audits()
    if not (n or builtin or audits or lineup.run.probe) or not lineup.endpoints:
        raise RunError(
            "the lineup plans no call: no suite item, no audit (it needs a `reference` or "
            "`audit.reference: consensus`, and a second endpoint) and no probe (`run.probe`) — "
            "nothing would be measured"
        )


def record_preflight(store: Store, run_id: str, lineup: Lineup, calls: list[PreflightCall]) -> None:
    """Keep the one-token preflight calls' bills with the run (`side_calls`, purpose
    `preflight`): their `usage.cost`, else their tokens at the endpoint's `price`."""
    from bakeoff.store import SideCallRecord

    for c in calls:
        ep = lineup.endpoint(c.endpoint)
        cost, source = c.cost_usd, "usage" if c.cost_usd is not None else None
        if cost is None and ep.price is not None and c.prompt_tokens is not None:
            out = c.completion_tokens or 0
            cost = (c.prompt_tokens * ep.price.input_per_m + out * ep.price.output_per_m) / 1e6
            source = "price"
        store.record_side_call(
            SideCallRecord(
                run_id=run_id,
                endpoint=c.endpoint,
                purpose="preflight",
                started_at=c.started_at,
                status="ok" if c.ok else "error",
                prompt_tokens=c.prompt_tokens,
                completion_tokens=c.completion_tokens,
                cost_usd=cost,
                cost_source=source,
            )
        )


def check_env(lineup: Lineup, log: Log | None = None) -> None:
    """Every key variable is one the lineup may send (`lineups.keys`: an LLM API key's name, the
    preset's own, or one the user allowed) and is set; `log` is told which variable goes to which
    host."""
    allowed = keys.allowed_variables()
    problems = []
    for ep in lineup.endpoints:
        if not ep.api_key_env:
            continue
        try:
            default = getattr(get_provider(ep.provider), "default_key_env", None)
        except UnknownPluginError:
            default = None
        problem = keys.key_variable_problem(ep.api_key_env, default=default, allowed=allowed)
        if problem:
            problems.append(f"endpoint {ep.name!r}: {problem}")
    problems += missing_env(lineup)
    if problems:
        raise RunError("no call was made:\n  " + "\n  ".join(problems))
    for ep in lineup.endpoints:
        if ep.api_key_env and log:
            log(f"key: endpoint {ep.name!r} sends {ep.api_key_env} to {_host(ep)}")


def _host(ep: Endpoint) -> str:
    from urllib.parse import urlsplit

    if not ep.base_url:
        return f"the server bakeoff starts for it (provider {ep.provider})"
    try:
        return urlsplit(ep.base_url).netloc or ep.base_url
    except ValueError:
        return str(ep.base_url)


def check_sandbox(lineup: Lineup, unsafe_code: bool, log: Log | None = None) -> None:
    """Suites that run model-written code need the bubblewrap sandbox: refused before any call
    without it, unless `unsafe_code` (then they run unisolated, and the summary says so)."""
    try:
        needs = [s for s in lineup.run.suites if suite_for(lineup, s).runs_model_code]
    except (UnknownPluginError, DatasetError) as e:
        raise RunError(str(e)) from None
    if not needs:
        return
    from bakeoff.sandbox import isolation_problem, permit_unisolated, refusal

    problem = isolation_problem()
    if problem is None:
        return
    if not unsafe_code:
        raise RunError(f"no call was made: {', '.join(needs)}: {refusal(problem)}")
    permit_unisolated()
    if log:
        log(
            f"warning: {', '.join(needs)}: model-written code will run UNISOLATED "
            f"(unsafe_code): {problem}"
        )


def check_local(lineup: Lineup) -> None:
    if any(ep.provider == "local" for ep in lineup.endpoints):
        from bakeoff.local import AssetError, source_model

        try:
            source_model()
        except AssetError as e:
            raise RunError(str(e)) from None
