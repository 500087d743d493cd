"""`bakeoff watch`: the same endpoints checked on a schedule against their own baseline, with a change
detector whose false-alarm rate is stated (docs/WATCH.md)."""

from __future__ import annotations

import os
import re
import time
from contextlib import closing
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from bakeoff._pipeline import RunError
from bakeoff.cli._common import DbOption, err, fail, open_store, out
from bakeoff.lineups import LineupError
from bakeoff.plugins import load
from bakeoff.store import default_db_path
from bakeoff.watch import (
    AlertTarget,
    CheckInterrupted,
    CheckResult,
    CostCaps,
    DetectorSettings,
    EndpointStatus,
    Watch,
    WatchSettings,
    acknowledge,
    alert,
    cost_lines,
    make_check,
    watch_every,
    where,
)
from bakeoff.watch import status as watch_status

EXIT_GAP = 4
"""`--once`: an endpoint's check was a gap (its calls failed: nothing was learned of it)."""
EXIT_ALARM = 5
"""`--once`: an endpoint is in alarm (a change detected); wins over a gap."""
EXIT_COST = 6
"""`--once`: a cost cap kept the check from being made (the audit's "stopped at its cost cap")."""

app = typer.Typer(
    help="Check the same endpoints on a schedule against their own baseline; alarm on a change, "
    "with a stated false-alarm rate.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float:
    """`90s`, `30m`, `6h`, `1d` (or a number of seconds) as seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise fail(f"--every {text!r}: give a duration such as 90s, 30m, 6h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


PerCheckOption = typer.Option(
    None,
    "--max-cost-per-check",
    min=0,
    metavar="USD",
    help="Make no check whose projected cost (all endpoints, the re-check's worst case "
    "included) is over USD; it is stored as skipped for cost, a gap.",
)
PerDayOption = typer.Option(
    None,
    "--max-cost-per-day",
    min=0,
    metavar="USD",
    help="Make no check that would take the spend of the checks begun in the last 24 hours "
    "(stored calls) plus its projection over USD; it is stored as skipped for cost, a gap.",
)


@app.callback()
def watch(  # noqa: PLR0913 — a typer command: its parameters are its options
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Lineup YAML: the endpoints to watch.", dir_okay=False
    ),
    once: bool = typer.Option(
        False,
        "--once",
        help="Make one check and exit: 0 no change seen, 4 a gap (an endpoint's calls failed), "
        "5 an alarm, 6 not made: over a cost cap (for cron, systemd timers, CI).",
    ),
    every: str | None = typer.Option(
        None,
        "--every",
        help="Check at every such interval (6h, 30m, 1d) until stopped (SIGTERM, Ctrl-C); the "
        "schedule resumes from the store, a missed slot is made once.",
    ),
    name: str | None = typer.Option(
        None, "--name", help="The watch's name in the store (default: the lineup file's stem)."
    ),
    arl: float = typer.Option(
        1000.0,
        min=2,
        help="A new watch's promise: the average run length to a false alarm, in checks.",
    ),
    anchors: int = typer.Option(24, min=1, help="A new watch's anchor prompts (every check)."),
    rotating: int = typer.Option(8, min=0, help="A new watch's prompts new at each check."),
    baseline_checks: int = typer.Option(
        4, min=2, help="A new watch's checks that form each endpoint's baseline."
    ),
    alert_url: str | None = typer.Option(
        None,
        "--alert-url",
        help="POST a JSON alert here at each new alarm (the endpoint, what changed, the evidence's "
        "run); 5xx and unreachable retried with backoff, a failure logged, never the watch's end.",
    ),
    alert_key_env: str | None = typer.Option(
        None,
        "--alert-key-env",
        help="The environment variable holding the webhook's key (sent as a bearer header; "
        "never stored or printed).",
    ),
    max_cost_per_check: float | None = PerCheckOption,
    max_cost_per_day: float | None = PerDayOption,
    db: str | None = DbOption,
) -> None:
    """Watch the lineup's endpoints: each check is an ordinary stored run of the watch's private
    prompts (greedy, 48 tokens): anchors asked every time, each compared with its own baseline
    answer, and a few new ones. The first checks form each endpoint's baseline (its honest
    change rate); after it, an e-detector raises an alarm when the changes outgrow it. A failed
    check is a gap, never evidence. The settings of a new watch are stored with it."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None or once == (every is not None):
        raise fail("give -c LINEUP and one of --once or --every INTERVAL")
    seconds = parse_every(every) if every is not None else None
    new = WatchSettings(
        anchors=anchors,
        rotating=rotating,
        detector=DetectorSettings(arl=arl, baseline_checks=baseline_checks),
    )
    target = _alert_target(alert_url, alert_key_env)
    db = db or default_db_path()
    caps = CostCaps(max_cost_per_check, max_cost_per_day)
    log = lambda m: err.print(escape(m))  # noqa: E731
    spec = Watch(db, config, name or config.stem, new, log=log, caps=caps)
    _promise(spec, seconds)
    _go(spec, seconds, target)


def _alert_target(url: str | None, key_env: str | None) -> AlertTarget | None:
    if key_env is not None and url is None:
        raise fail("--alert-key-env names the key of --alert-url: give both")
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise fail(f"--alert-url {where(url)}: give an http(s) URL")
    key = None
    if key_env is not None:
        key = os.environ.get(key_env)
        if not key:
            raise fail(f"--alert-key-env {key_env}: that environment variable is not set")
    return AlertTarget(url, key)


def _go(spec: Watch, seconds: float | None, target: AlertTarget | None) -> None:
    def done(result: CheckResult) -> int:
        code = _report(spec.name, result)
        if target is not None:
            alert(target, spec.name, result, lambda m: err.print(escape(m), highlight=False))
        return code

    try:
        if seconds is None:
            raise typer.Exit(done(make_check(spec, now=time.time())))
        watch_every(spec, every=seconds, now=time.time, wait=_sleep, on_check=done)
    except RunError as e:
        raise fail(str(e)) from None
    except CheckInterrupted as e:
        raise fail(f"{e}; the same command finishes it", 130) from None


def _sleep(seconds: float) -> bool:
    """The wall clock's wait: never asks to stop (SIGTERM and Ctrl-C end it)."""
    time.sleep(seconds)
    return False


def _promise(spec: Watch, seconds: float | None) -> None:
    with closing(open_store(spec.db)) as store:
        row = store.watch(spec.name)
    settings = WatchSettings.model_validate_json(row.settings_json) if row else spec.new
    assert settings is not None
    d = settings.detector
    span = f" ({d.arl * seconds / 86400:,.0f} days at this interval)" if seconds else ""
    err.print(
        f"watch {spec.name}: {settings.anchors} anchors + {settings.rotating} rotating prompts "
        f"per endpoint per check; baseline {d.baseline_checks} checks; alarm at statistic >= "
        f"{d.arl:g}: average run length to a false alarm >= {d.arl:g} checks{span}, and a false "
        f"alarm within H checks has probability <= H/{d.arl:g} (given the baseline's bound on the "
        f"honest change rate, {d.confidence:.0%})",
        highlight=False,
    )
    _cost(spec, settings, seconds)


def _cost(spec: Watch, settings: WatchSettings, seconds: float | None) -> None:
    """The projected cost, before the first check (a lineup that cannot load: said, exit 2)."""
    try:
        lineup = load(spec.lineup_path)
    except LineupError as e:
        raise fail(str(e)) from None
    with closing(open_store(spec.db)) as store:
        lines = cost_lines(store, spec.name, lineup, settings, seconds, time.time(), spec.caps)
    for line in lines:
        err.print(line, highlight=False)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _report(name: str, result: CheckResult) -> int:
    """One line per endpoint; the exit code of `--once`."""
    if result.skipped is not None:
        out.print(f"watch {name} check {result.seq}: {result.skipped.text()}", highlight=False)
        return EXIT_COST
    if result.held_by is not None:
        out.print(
            f"watch {name} check {result.seq}: made by another watcher ({result.held_by}); "
            "nothing done here",
            highlight=False,
        )
        return 0
    for s in result.steps:
        st = s.step
        if st.gap:
            what = f"gap: {s.why}"
        elif st.phase == "baseline" and s.state.baseline_seen == 1:
            out.print(
                f"watch {name} check {result.seq} (run {result.run_id}): {s.endpoint}: baseline "
                f"1/{s.state.settings.baseline_checks}: {st.n} anchor answers kept",
                highlight=False,
            )
            continue
        elif st.statistic is None:
            what = f"baseline {s.state.baseline_seen}/{s.state.settings.baseline_checks}"
        else:
            what = f"statistic {st.statistic:.3g} / {st.threshold:g}"
        tag = "ALARM " if st.alarm else ""
        out.print(
            f"{tag}watch {name} check {result.seq} (run {result.run_id}): {s.endpoint}: "
            f"{st.changed}/{st.n} anchors changed; {what}",
            highlight=False,
        )
        if s.recheck is not None:
            rc = s.recheck
            said = "the change holds" if rc.confirmed else "it did not hold: no alarm"
            out.print(
                f"  re-check (run {rc.run_id}): {rc.held}/{rc.answered} of the "
                f"{rc.asked} changed anchors changed again (statistic before it "
                f"{rc.raw_statistic:.3g}): {said}",
                highlight=False,
            )
        if st.alarm:
            for item, before, after in s.changes:
                out.print(f"  {item}: {_short(before)!r} -> {_short(after)!r}", highlight=False)
    for ep, c in result.cost.items():
        out.print(
            f"  {ep}: cost {c.calls} calls, {c.tokens_text()} tokens, {c.usd_text()}",
            highlight=False,
        )
    if result.alarms:
        return EXIT_ALARM
    return EXIT_GAP if result.gaps else 0


def _cost_24h(r: EndpointStatus) -> str:
    """`12 calls, $0.0012` (or "no price"), and the checks a cost cap skipped."""
    c = r.cost_24h
    text = "-" if c is None else f"{c.calls} calls, {c.usd_text()}"
    return text + (f"; {r.skipped_24h} skipped for cost" if r.skipped_24h else "")


@app.command("ack")
def ack(
    endpoint: str = typer.Argument(..., help="The endpoint whose change is acknowledged."),
    name: str = typer.Option(..., "--name", help="The watch (see `bakeoff watch status`)."),
    db: str | None = DbOption,
) -> None:
    """Acknowledge an endpoint's change (an alarm, or a change you made): its next checks form a
    new baseline, against which it is watched from then on. Its history stays in the store."""
    with closing(open_store(db, existing=True)):
        pass  # a clear error for a missing database, before anything else
    try:
        seq = acknowledge(db or default_db_path(), name, endpoint)
    except ValueError as e:
        raise fail(str(e)) from None
    out.print(
        f"watch {name}: {endpoint} acknowledged after check {seq}; its next checks form a new "
        "baseline",
        highlight=False,
    )


@app.command("status")
def status(db: str | None = DbOption) -> None:
    """Every watch's endpoints: the last check, the phase (baseline, watching, alarm), the
    statistic against its threshold, the honest change rate's bound, the gaps, and what the
    checks of the last 24 hours cost (and how many a cost cap skipped)."""
    with closing(open_store(db, existing=True)) as store:
        rows = watch_status(store)
    if not rows:
        out.print("no watch in this database (`bakeoff watch -c LINEUP --once` makes one)")
        return
    table = Table(
        "watch",
        "endpoint",
        "last check",
        "phase",
        "changed",
        "statistic",
        "p0",
        "gaps",
        "cost 24h",
    )
    for r in rows:
        at = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.last_at)) if r.last_at else "-"
        stat = "-" if r.statistic is None else f"{r.statistic:.3g} / {r.threshold:g}"
        table.add_row(
            r.watch,
            r.endpoint,
            f"#{r.last_seq} {at}",
            r.phase,
            f"{r.changed}/{r.n}",
            stat,
            "-" if r.p0 is None else f"{r.p0:.3f}",
            str(r.gaps),
            _cost_24h(r),
        )
    out.print(table)
