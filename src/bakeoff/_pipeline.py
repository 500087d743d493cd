"""The pipeline as a library call: `bakeoff.run(lineup)` does what `bakeoff run` does — resume or
create the run, the suites, the capability probes, the fidelity audit, the report — and returns the
typed summary that `bakeoff run --json` prints. The CLI is a shell over it: it calls `drive` with
its `Hooks` (its notes, progress bars, tables, report bar) and turns the `Outcome` into an exit
code; it has no step of its own.

    import bakeoff
    summary = bakeoff.run("lineup.yaml", db="results.db")
    for ep in summary.endpoints:
        print(ep.name, ep.suites["arith"].score, ep.fidelity and ep.fidelity.claim)

`arun` is the same as a coroutine, for code that already runs an event loop (a notebook cell can
`await bakeoff.arun(...)`).

The steps, in order: `_preflighted` (a new run's lineup loaded, edited by the caller's hooks and
through `preflight`: no call, no database yet), `check_endpoints` (over the wire, `request.check`),
`_begin` (the database opened, `prepare`: resume or create, the preflight calls' bills kept),
`execute_stored` / `execute_run` (the calls), `_finish` (the summary, the report, the spans).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

# the checks before the first call and the pipeline's errors, re-exported: callers import the
# pipeline's steps from here
from bakeoff._preflight import PREFLIGHT_PROMPT as PREFLIGHT_PROMPT
from bakeoff._preflight import Log as Log
from bakeoff._preflight import PreflightCall
from bakeoff._preflight import RunError as RunError
from bakeoff._preflight import RunStopped as RunStopped
from bakeoff._preflight import check_endpoints as check_endpoints
from bakeoff._preflight import check_env as check_env
from bakeoff._preflight import check_local as check_local
from bakeoff._preflight import check_planned as check_planned
from bakeoff._preflight import check_sandbox as check_sandbox
from bakeoff._preflight import preflight as preflight
from bakeoff._preflight import record_preflight as record_preflight
from bakeoff.lineups import FieldProblems, Lineup, LineupError
from bakeoff.plugins import load, resolve_lineup
from bakeoff.runs import (
    EndpointProgress,
    RunOptions,
    RunSummary,
    config_hash,
    create_run,
    execute,
    lineup_of_run,
    summarize,
)
from bakeoff.store import Store, StoreError
from bakeoff.suites.datasets import DatasetError

OnProgress = Callable[[str, EndpointProgress], None]


@dataclass(frozen=True)
class RunRequest:
    """What to run and where (`run`'s keyword arguments but the hooks; the CLI's options)."""

    db: str | Path | None = None
    """The database (default `./bakeoff.db`, or `BAKEOFF_DB`)."""
    resume: str | None = None
    """A stored run to resume (its lineup is read from the store; the one given is ignored)."""
    new: bool = False
    """A new run even when an unfinished run of the same lineup exists (else it is resumed)."""
    use_cache: bool | None = None
    """Answer calls from the cache (None: the lineup's `run.cache`)."""
    report: str | Path | bool = True
    """Where the HTML report goes: True, `bakeoff-reports/<run>.html` beside the database."""
    unsafe_code: bool = False
    """Run model-written code unisolated where no sandbox can be made, instead of refusing."""
    check: bool = True
    """Each endpoint of a new run with a `base_url` of the user's answers `/models` and one
    one-token call before the run (`check_endpoints`)."""
    otel: str | None = None
    """An OTLP/HTTP collector the run's calls are sent to as spans once it is complete."""


class RunArgs(TypedDict, total=False):
    """`run`'s and `arun`'s keyword arguments: `RunRequest`'s fields (but `otel`), and the two
    hooks a Python caller sets — `log` (the pipeline's notes) and `on_progress`."""

    db: str | Path | None
    resume: str | None
    new: bool
    use_cache: bool | None
    report: str | Path | bool
    unsafe_code: bool
    check: bool
    on_progress: OnProgress | None
    log: Log | None


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its summary, and what the caller says of it."""

    summary: RunSummary
    status: str
    """As the calls ended: `complete`, or `interrupted` (Ctrl-C, SIGTERM, a cancelled task)."""
    db: str
    """The database, as it may be shown (a URL's password hidden)."""
    made: int
    """Successful calls made by this invocation."""
    carried: int
    """Successful calls stored before it (a resumed run's)."""


class Hooks:
    """What a caller is shown of a run, and when. By default: `log` is told the pipeline's notes (a
    resumed run, which key goes to which host, a warning), `on_progress` each endpoint's counters;
    nothing else. The CLI's (`cli/_run.py`) prints the notes, draws a progress bar per endpoint,
    applies its options to the lineup, prints the summary tables, and writes the report with a
    progress bar."""

    def __init__(self, log: Log | None = None, on_progress: OnProgress | None = None) -> None:
        self._log, self._on_progress = log, on_progress

    def log(self, message: str) -> None:
        if self._log is not None:
            self._log(message)

    def progress(self, endpoint: str, p: EndpointProgress) -> None:
        if self._on_progress is not None:
            self._on_progress(endpoint, p)

    def edit(self, lineup: Lineup) -> None:
        """A new run's lineup as read, before its checks: the caller's changes go in here."""

    def calls(self) -> AbstractContextManager[object]:
        """Entered while the run's calls are made (a live display)."""
        return contextlib.nullcontext()

    def summarized(self, outcome: Outcome) -> None:
        """The run's summary, once the calls ended, before the report is written."""

    def write_report(self, store: Store, run_id: str, path: Path) -> Path:
        from bakeoff.ui import write_report

        return write_report(store, run_id, path).path


def prepare(
    store: Store, fresh: Lineup | None, source: str | None, request: RunRequest, log: Log | None
) -> tuple[str, Lineup]:
    """Resume or create: the run to execute and its lineup. `request.resume` names a stored run
    (its lineup read from the store, its keys and sandbox checked again); else `fresh`, a new
    run's lineup already preflighted (`_preflighted`), resumes an unfinished run of the same
    lineup (unless `request.new`) or is stored as a new run (with `source`, its file's path)."""
    if request.resume is not None:
        return _resumed(store, request, log)
    if fresh is None:
        raise RunError("no lineup to run")
    prior = None if request.new else store.unfinished_run(config_hash(fresh))
    if prior is not None:
        if log:
            log(
                f"resuming unfinished run {prior['id']} of this lineup (for a fresh run: --new, new=True)"
            )
        return prior["id"], fresh
    try:
        return create_run(store, fresh, source), fresh
    except (DatasetError, ValueError) as e:
        raise RunError(str(e)) from None


def _resumed(store: Store, request: RunRequest, log: Log | None) -> tuple[str, Lineup]:
    row = store.find_run(str(request.resume))
    if row is None:
        raise RunError(f"no run {request.resume!r} in {store.path} (see `bakeoff runs`)")
    if row["status"] == "complete" and log:
        log(f"run {row['id']} is already complete; nothing to resume")
    lineup = lineup_of_run(store, row["id"])
    check_env(lineup, log)
    check_sandbox(lineup, request.unsafe_code, log)
    return row["id"], lineup


def _preflighted(
    lineup: Lineup | str | Path | None, request: RunRequest, hooks: Hooks
) -> tuple[Lineup | None, str | None]:
    """A new run's lineup (and its file's path) loaded, edited by `hooks.edit` and through
    `preflight`, before any database is opened (a file that fails leaves none behind); None for a
    resumed run, whose lineup is read from the store."""
    if request.resume is not None:
        return None, None
    source = None
    if not isinstance(lineup, Lineup):
        path = lineup if lineup is not None else _default_lineup(hooks)
        source, lineup = str(path), _load(path)
    hooks.edit(lineup)
    lineup = _resolved(lineup)
    preflight(lineup, unsafe_code=request.unsafe_code, log=hooks.log)
    return lineup, source


def _resolved(lineup: Lineup) -> Lineup:
    """A lineup made in code, completed by its providers as a loaded file is."""
    try:
        return resolve_lineup(lineup)
    except FieldProblems as e:
        raise RunError(
            "\n".join(f"{'.'.join(map(str, loc))}: {m}" for loc, m in e.problems)
        ) from None


def _default_lineup(hooks: Hooks) -> Path:
    from bakeoff.local import default_lineup_path

    path = default_lineup_path()
    hooks.log(f"no lineup given: using the default local lineup ({path})")
    return path


def _load(path: str | Path) -> Lineup:
    try:
        return load(Path(path))
    except LineupError as e:
        raise RunError(str(e)) from None


def open_store(db: str | Path | None, *, existing: bool = False) -> Store:
    """The database (created if missing, unless `existing`: a resume never leaves an empty
    database behind)."""
    from bakeoff.store import database_exists, default_db_path, redact

    path = db or default_db_path()
    if existing and not database_exists(path):
        raise RunError(
            f"no database at {redact(path)}: `bakeoff run` makes one; --db (or BAKEOFF_DB) names"
            " another"
        )
    try:
        return Store(path)
    except StoreError as e:
        raise RunError(str(e)) from None


def _begin(
    fresh: Lineup | None,
    source: str | None,
    request: RunRequest,
    hooks: Hooks,
    bills: list[PreflightCall],
) -> tuple[Store, str, Lineup]:
    """The database opened and the run to execute (resumed or created), with the preflight
    calls' bills; the database is closed again if that fails."""
    store = open_store(request.db, existing=request.resume is not None)
    try:
        run_id, lineup = prepare(store, fresh, source, request, hooks.log)
        record_preflight(store, run_id, lineup, bills)
    except BaseException:
        store.close()
        raise
    return store, run_id, lineup


async def execute_run(
    store: Store,
    run_id: str,
    lineup: Lineup,
    *,
    use_cache: bool | None = None,
    on_progress: OnProgress | None = None,
) -> str:
    """Execute a stored run: its suites, then (endpoints still up) the capability probes and the
    fidelity audit as the lineup asks. Returns the run's status; a storage, server or audit
    failure is a `RunStopped` (the calls made so far are kept: fix it, then resume the run)."""
    from bakeoff.audit import AuditError, run_audit
    from bakeoff.local import AssetError, ServerError
    from bakeoff.perf import run_probes
    from bakeoff.runs import EndpointSession

    wants_audit = lineup.audits()

    async def after(session: EndpointSession) -> None:
        if lineup.run.probe:
            await run_probes(session, max_context_cap=lineup.run.probe_max_context)
        if wants_audit:
            await run_audit(session, lineup.audit)

    cache = lineup.run.cache if use_cache is None else use_cache
    opts = RunOptions(use_cache=cache, on_progress=on_progress)
    try:
        outcome = await execute(store, run_id, opts, after=after)
    except (AssetError, ServerError, AuditError, StoreError, OSError) as e:
        raise RunStopped(f"run {run_id} stopped: {e}", run_id) from None
    return outcome.status


def execute_stored(
    store: Store, run_id: str, lineup: Lineup, *, use_cache: bool | None, hooks: Hooks
) -> str:
    """`execute_run` from synchronous code, inside `hooks.calls()`: a Ctrl-C (or SIGTERM) stops
    the calls and the run is stored as interrupted."""
    with hooks.calls():
        try:
            return asyncio.run(
                execute_run(store, run_id, lineup, use_cache=use_cache, on_progress=hooks.progress)
            )
        except (KeyboardInterrupt, asyncio.CancelledError):
            return "interrupted"


def default_report_path(store: Store, run_id: str) -> Path:
    """`bakeoff-reports/<run id>.html` next to the database (a server database's: in the working
    directory)."""
    return store.home / "bakeoff-reports" / f"{run_id}.html"


def stored_summary(store: Store, run_id: str) -> RunSummary:
    """The run's typed summary (`runs.summarize`: kept in the store, so that the UI's next read of
    the same run costs a query)."""
    return RunSummary.model_validate(summarize(store, run_id))


def _finish(
    store: Store, run_id: str, status: str, before: int, request: RunRequest, hooks: Hooks
) -> Outcome:
    """The summary (shown by `hooks.summarized`); then, for a complete run, the report and the
    spans. `before`: the successful calls stored before this invocation."""
    outcome = Outcome(
        summary=stored_summary(store, run_id),
        status=status,
        db=store.path,
        made=len(store.succeeded_call_ids(run_id)) - before,
        carried=before,
    )
    hooks.summarized(outcome)
    if status != "complete":
        return outcome
    if request.report is not False:
        report = request.report
        path = default_report_path(store, run_id) if report is True else Path(report)
        hooks.write_report(store, run_id, path)
    if request.otel is not None:
        _send_spans(store, run_id, request.otel, hooks)
    return outcome


def _finish_apart(
    target: str, run_id: str, status: str, before: int, request: RunRequest, hooks: Hooks
) -> Outcome:
    """`_finish` over a connection of its own (`arun` finishes in a worker thread, and a SQLite
    connection belongs to the thread that opened it)."""
    store = Store(target)
    try:
        return _finish(store, run_id, status, before, request, hooks)
    finally:
        store.close()


def _send_spans(store: Store, run_id: str, endpoint: str, hooks: Hooks) -> None:
    from bakeoff.runs._otel import OtelError, send_run

    try:
        n = send_run(store, run_id, endpoint)
    except OtelError as e:
        raise RunError(str(e)) from None
    hooks.log(f"sent {n} call spans of run {run_id} to {endpoint}")


def drive(lineup: Lineup | str | Path | None, request: RunRequest, hooks: Hooks) -> Outcome:
    """The pipeline from synchronous code, every step: what `run` and `bakeoff run` do."""
    fresh, source = _preflighted(lineup, request, hooks)
    bills = []
    if request.check and fresh is not None:
        bills = asyncio.run(check_endpoints(fresh, log=hooks.log))
    store, run_id, ready = _begin(fresh, source, request, hooks, bills)
    try:
        before = len(store.succeeded_call_ids(run_id))
        status = execute_stored(store, run_id, ready, use_cache=request.use_cache, hooks=hooks)
        return _finish(store, run_id, status, before, request, hooks)
    finally:
        store.close()


async def adrive(lineup: Lineup | str | Path | None, request: RunRequest, hooks: Hooks) -> Outcome:
    """`drive` as a coroutine (cancelling it stores the run as interrupted, then re-raises)."""
    fresh, source = _preflighted(lineup, request, hooks)
    bills = []
    if request.check and fresh is not None:
        bills = await check_endpoints(fresh, log=hooks.log)
    store, run_id, ready = _begin(fresh, source, request, hooks, bills)
    try:
        before = len(store.succeeded_call_ids(run_id))
        with hooks.calls():
            status = await execute_run(
                store, run_id, ready, use_cache=request.use_cache, on_progress=hooks.progress
            )
        finish = (store.target, run_id, status, before, request, hooks)
        return await asyncio.to_thread(_finish_apart, *finish)
    finally:
        store.close()


def _split(args: RunArgs) -> tuple[RunRequest, Hooks]:
    """`run`'s keyword arguments as the request and the hooks."""
    hooks = Hooks(log=args.get("log"), on_progress=args.get("on_progress"))
    request = RunRequest(
        db=args.get("db"),
        resume=args.get("resume"),
        new=args.get("new", False),
        use_cache=args.get("use_cache"),
        report=args.get("report", True),
        unsafe_code=args.get("unsafe_code", False),
        check=args.get("check", True),
    )
    return request, hooks


async def arun(lineup: Lineup | str | Path | None = None, **args: Unpack[RunArgs]) -> RunSummary:
    """`run` as a coroutine (cancelling it stores the run as interrupted, then re-raises)."""
    request, hooks = _split(args)
    return (await adrive(lineup, request, hooks)).summary


def run(lineup: Lineup | str | Path | None = None, **args: Unpack[RunArgs]) -> RunSummary:
    """Run a lineup (a `Lineup`, a YAML path, or None for the default local lineup) exactly as
    `bakeoff run` does and return its summary — the model whose JSON `bakeoff run --json` prints.

    Keyword arguments (`RunArgs`, each optional): every call is stored in `db` (default
    `./bakeoff.db`); an unfinished run of the same lineup is resumed unless `new`; `resume` names
    a run. `report` is where the HTML report goes (True: `bakeoff-reports/<run>.html` beside the
    database; False: none). `use_cache`: answer calls from the cache (None: the lineup's
    `run.cache`). `unsafe_code`: run model-written code unisolated where no sandbox can be made.
    `check`: each endpoint of a new run with a `base_url` of the user's answers `/models` first
    (`check_endpoints`; a dead host, a missing `/v1`, a refused key raise `RunError`).
    `log(message)` is told the pipeline's notes, `on_progress(endpoint, progress)` each
    endpoint's counters. A Ctrl-C stops the calls, stores the run as interrupted and returns its
    summary (`status == "interrupted"`); a problem before any call, or a fatal one during the
    run, raises `RunError` (and leaves no database behind that was not there)."""
    try:
        asyncio.get_running_loop()  # Jupyter runs one, where asyncio.run refuses, mid-way
    except RuntimeError:
        pass  # none running: the normal case
    else:
        raise RunError(
            "bakeoff.run() cannot start inside a running event loop (Jupyter, an async app): "
            "use `await bakeoff.arun(...)` there"
        )
    request, hooks = _split(args)
    return drive(lineup, request, hooks).summary
