"""`bakeoff perf`: load sweeps; `bakeoff probe`: the capability matrix."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bakeoff.cli._common import (
    AllowEnvOption,
    DbOption,
    err,
    fail,
    find_run_or_fail,
    load_lineup_or_default,
    open_store,
    out,
)
from bakeoff.lineups import Lineup
from bakeoff.store import ProbeResult

if TYPE_CHECKING:
    from bakeoff.perf import PerfOptions

ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    help="Lineup YAML file (default: the local lineup of llama.cpp servers).",
    dir_okay=False,
)


def load_or_default(config: Path | None) -> tuple[Path, Lineup]:
    from bakeoff._pipeline import RunError, check_env

    config, lineup = load_lineup_or_default(config)
    try:
        check_env(lineup, lambda m: err.print(m, highlight=False, markup=False))
    except RunError as e:
        raise fail(str(e)) from None
    return config, lineup


ProcessesOption = typer.Option(
    1,
    "--processes",
    min=1,
    help="Client processes sharing the load (when one core is not enough); per node with --ray.",
)
RayOption = typer.Option(
    None,
    "--ray",
    metavar="[ADDRESS]",
    help="Place the load generators on the nodes of a Ray cluster (bare --ray: the one "
    "`ray start` runs on this host, or RAY_ADDRESS); --processes is then per node. "
    "Needs pip install 'bakeoff[ray]'.",
)


def _levels(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise fail(f"--levels: expected numbers separated by commas, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise fail("--levels: give positive numbers, e.g. 1,2,4,8")
    return vals


def perf(  # noqa: PLR0913 — a typer command: its parameters are its options
    config: Path | None = ConfigOption,
    endpoint: list[str] | None = typer.Option(
        None, "--endpoint", "-e", help="Endpoint to measure (repeatable; default: all)."
    ),
    mode: str = typer.Option("closed", "--mode", help="closed (fixed concurrency) or open (rate)."),
    levels: str | None = typer.Option(
        None,
        "--levels",
        help="Concurrency levels (closed) or rates in req/s (open), e.g. 1,2,4,8. "
        "Default: 1,2,4,...,64 (closed), 1,2,5,10,20,50 (open).",
    ),
    duration: float = typer.Option(20.0, "--duration", help="Seconds per level."),
    requests: int | None = typer.Option(
        None, "--requests", help="At most this many requests per level."
    ),
    warmup: float = typer.Option(2.0, "--warmup", help="Seconds at the start left out of stats."),
    cooldown: float = typer.Option(1.0, "--cooldown", help="Seconds at the end left out."),
    workload: str = typer.Option(
        "128x128", "--workload", "-w", help="INPUTxOUTPUT tokens, e.g. 100x128, 1000x256, 10000x64."
    ),
    suite: str | None = typer.Option(
        None, "--suite", "-s", help="Draw prompts from this suite's items instead."
    ),
    arrival: str = typer.Option("constant", "--arrival", help="Open loop: constant or poisson."),
    slo: str | None = typer.Option(
        None, "--slo", help="Goodput objectives, e.g. ttft=500ms,tpot=50ms,e2e=10s."
    ),
    processes: int = ProcessesOption,
    ray: str | None = RayOption,
    no_stop: bool = typer.Option(False, "--no-stop", help="Run every level, even past saturation."),
    seed: int = typer.Option(0, "--seed"),
    db: str | None = DbOption,
    json_out: bool = typer.Option(False, "--json", help="Print the JSON summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    run_ref: str | None = typer.Option(
        None, "--run", help="Attach the measurements to this run (shown in its report)."
    ),
    allow_env: list[str] | None = AllowEnvOption,
) -> None:
    """Measure latency and throughput under load: sweep concurrency (closed loop) or request rate
    (open loop, absolute schedule) up to saturation, per endpoint, and store every request."""
    run_id = None
    if run_ref is not None:
        run_id = find_run_or_fail(open_store(db, existing=True), run_ref)["id"]
    opts = PerfFlags(
        mode=mode,
        levels=levels,
        duration=duration,
        requests=requests,
        warmup=warmup,
        cooldown=cooldown,
        workload=workload,
        suite=suite,
        arrival=arrival,
        slo=slo,
        processes=processes,
        no_stop=no_stop,
        seed=seed,
        endpoint=endpoint,
    ).options()
    opts.ray = ray
    _, lineup = load_or_default(config)
    store = open_store(db)
    perf_id, summary = _sweep(store, lineup, opts, run_id, quiet)
    _print_summary(summary, json_out)
    err.print(f"perf run [bold]{perf_id}[/] stored in {store.path}")
    if run_id is not None:
        from bakeoff.cli._ui import refresh_report

        refresh_report(store, run_id, quiet)


def _print_summary(summary: dict[str, Any], json_out: bool) -> None:
    """The sweep's tables (on stderr with --json, which prints the summary on stdout), caveats."""
    console = err if json_out else out
    console.print(perf_table(summary))
    if summary.get("skipped_nodes"):
        err.print(
            "[yellow]nodes given no load generator (fewer CPUs than --processes): "
            + escape(", ".join(summary["skipped_nodes"]))
            + "[/]"
        )
    if any("nodes" in lv for e in summary["endpoints"].values() for lv in e["levels"]):
        console.print(nodes_table(summary))
    if json_out:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    _caveats(summary)


def _sweep(store: Any, lineup: Any, opts: Any, run_id: str | None, quiet: bool) -> Any:
    """The sweep with a progress bar per endpoint and level: (perf id, summary)."""
    from bakeoff.perf import RayError, run_perf

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )

    def on_level(name: str, label: str, expected: int) -> Any:
        task = progress.add_task(f"{name} {label}", total=expected or None)
        return lambda: progress.advance(task)

    try:
        with progress:
            return asyncio.run(run_perf(store, lineup, opts, run_id=run_id, on_level=on_level))
    except ValueError as e:
        raise fail(str(e)) from None
    except RayError as e:
        raise fail(f"--ray: {e}") from None
    except KeyboardInterrupt:
        raise fail("interrupted; the levels finished so far are stored", 130) from None


@dataclass(frozen=True)
class PerfFlags:
    """`bakeoff perf`'s options as typed on the command line, before they are checked."""

    mode: str
    levels: str | None
    duration: float
    requests: int | None
    warmup: float
    cooldown: float
    workload: str
    suite: str | None
    arrival: str
    slo: str | None
    processes: int
    no_stop: bool
    seed: int
    endpoint: list[str] | None

    def options(self) -> PerfOptions:
        return _perf_options(self)


def _perf_options(f: PerfFlags) -> PerfOptions:
    """The sweep's `PerfOptions` from the command line, each option checked (exit 2 naming it)."""
    from bakeoff.perf import SLO, PerfOptions

    mode, levels, duration, workload, slo = f.mode, f.levels, f.duration, f.workload, f.slo
    warmup, cooldown, arrival, endpoint = f.warmup, f.cooldown, f.arrival, f.endpoint

    if mode not in ("closed", "open"):
        raise fail("--mode: closed or open")
    if arrival not in ("constant", "poisson"):
        raise fail("--arrival: constant or poisson")
    m = re.fullmatch(r"(\d+)[xX](\d+)", workload)
    if not m:
        raise fail(f"--workload: expected INPUTxOUTPUT tokens like 128x128, got {workload!r}")
    try:
        slo_v = SLO.parse(slo)
    except ValueError as e:
        raise fail(str(e)) from None
    if warmup + cooldown >= duration:
        raise fail("--warmup plus --cooldown must be shorter than --duration")
    default: list[float] = [1, 2, 4, 8, 16, 32, 64] if mode == "closed" else [1, 2, 5, 10, 20, 50]
    return PerfOptions(
        mode=mode,  # type: ignore[arg-type]
        levels=_levels(levels) if levels else default,
        duration_s=duration,
        max_requests=f.requests,
        warmup_s=warmup,
        cooldown_s=cooldown,
        input_tokens=int(m.group(1)),
        output_tokens=int(m.group(2)),
        suite=f.suite,
        arrival=arrival,  # type: ignore[arg-type]
        seed=f.seed,
        slo=slo_v,
        processes=f.processes,
        stop_at_saturation=not f.no_stop,
        endpoints=list(endpoint) if endpoint else None,
    )


def _ms(d: dict[str, Any] | None, q: str = "p50") -> str:
    return "-" if not d or d.get(q) is None else f"{d[q]:.1f}"


def _caveats(summary: dict[str, Any]) -> None:
    """What makes a sweep's figures shaky, one line each: a load generator that fell behind, a
    level whose replies were far shorter than asked."""
    if not summary["valid"]:
        err.print(
            "[yellow]some levels are marked invalid: the client could not keep up (see why)[/]"
        )
    for name, e in summary["endpoints"].items():
        short = [lv for lv in e["levels"] if lv["metrics"].get("workload_mismatch")]
        if short:
            err.print(
                f"[yellow]{escape(name)}, {len(short)} level(s): "
                f"{escape(short[0]['metrics']['workload_mismatch'])}[/]"
            )


def perf_table(summary: dict[str, Any]) -> Table:
    t = Table(title=f"perf {summary['perf_id']}", title_justify="left")
    for col in (
        "endpoint",
        "level",
        "req/s",
        "out tok/s",
        "TTFT p50/p99 ms",
        "ITL p50 ms",
        "TPOT p50 ms",
        "E2E p50 ms",
        "errors",
        "goodput/s",
        "check",
    ):
        t.add_column(col, justify="right" if col not in ("endpoint", "check") else "left")
    for name, e in summary["endpoints"].items():
        for lv in e["levels"]:
            m = lv["metrics"]
            sc = lv["self_check"]
            gp = (m.get("goodput") or {}).get("requests_per_s")
            t.add_row(
                name,
                lv["label"],
                f"{m['request_throughput'] or 0:.2f}",
                f"{m['output_tok_s'] or 0:.0f}",
                f"{_ms(m['ttft_ms'])} / {_ms(m['ttft_ms'], 'p99')}",
                _ms(m["itl_pooled_ms"]),
                _ms(m["tpot_ms"]),
                _ms(m["e2e_ms"]),
                f"{m['error_rate']:.0%}" if m["error_rate"] else "0",
                "-" if gp is None else f"{gp:.2f}",
                "ok" if sc["valid"] else "[red]invalid[/]: " + "; ".join(sc["why"]),
            )
        sat = e.get("saturation")
        if sat:
            cap = f" (capacity: {sat['capacity']:g})" if sat.get("capacity") else ""
            t.add_row(name, "[bold]saturated[/]", "", "", "", "", "", "", "", "", sat["why"] + cap)
    return t


def nodes_table(summary: dict[str, Any]) -> Table:
    """Per node of the Ray cluster, per level: what its generators offered, achieved and whether
    they kept up."""
    t = Table(title="load generators per node (Ray)", title_justify="left")
    for col in ("endpoint", "level", "node", "shards", "offered/s", "req/s", "TTFT p50 ms"):
        t.add_column(col, justify="left" if col in ("endpoint", "node") else "right")
    t.add_column("late sends")
    t.add_column("CPU", justify="right")
    t.add_column("clock ± ms", justify="right")
    t.add_column("check")
    for name, e in summary["endpoints"].items():
        for lv in e["levels"]:
            for n in lv.get("nodes", []):
                t.add_row(
                    name,
                    lv["label"],
                    n["address"],
                    str(len(n["shards"])),
                    "-" if n["offered_rate"] is None else f"{n['offered_rate']:.2f}",
                    "-" if n["request_throughput"] is None else f"{n['request_throughput']:.2f}",
                    "-" if n["ttft_p50_ms"] is None else f"{n['ttft_p50_ms']:.1f}",
                    f"{n['late_share']:.1%}",
                    f"{n['client_cpu']:.0%}",
                    f"{n['clock_uncertainty_ms']:.2f}",
                    "ok" if n["valid"] else "[red]invalid[/]: " + "; ".join(n["why"]),
                )
    return t


def probe(
    config: Path | None = ConfigOption,
    endpoint: list[str] | None = typer.Option(
        None, "--endpoint", "-e", help="Endpoint to probe (repeatable; default: all)."
    ),
    max_context: int | None = typer.Option(
        None, "--max-context", help="Largest prompt to try, tokens (default: 1.25x the claim)."
    ),
    output_tokens: int = typer.Option(512, "--output-tokens", help="Output length to ask for."),
    db: str | None = DbOption,
    json_out: bool = typer.Option(False, "--json", help="Print the probe results as JSON."),
    allow_env: list[str] | None = AllowEnvOption,
) -> None:
    """Probe what each endpoint really does: context length (and silent truncation), output limit,
    stream usage, logprobs, tools, JSON mode, seed determinism — the capability matrix."""
    import time
    import uuid

    from bakeoff.perf import ProbeOptions, run_probes
    from bakeoff.runs import EndpointSession, RunOptions

    _, lineup = load_or_default(config)
    if endpoint:
        unknown = set(endpoint) - {e.name for e in lineup.endpoints}
        if unknown:
            raise fail(f"no endpoint named {', '.join(sorted(unknown))} in the lineup")
        keep = set(endpoint)
        # keep proxies' targets running too
        for e in lineup.endpoints:
            if e.name in keep and e.proxy is not None:
                keep |= {e.proxy.target, *([e.proxy.route_to] if e.proxy.route_to else [])}
        lineup.endpoints = [e for e in lineup.endpoints if e.name in keep]
        if lineup.reference not in keep:
            lineup.reference = None
    store = open_store(db)
    owner = "probe-" + time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    opts = ProbeOptions(max_context=max_context, output_tokens=output_tokens)

    async def go() -> dict[str, Any]:
        only = endpoint or None  # the others are started for the proxies in front of them
        async with EndpointSession(store, owner, lineup, RunOptions(), only=only) as session:
            with err.status("probing endpoints..."):
                return await run_probes(session, opts, only_missing=False)

    try:
        results = asyncio.run(go())
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    console = err if json_out else out
    console.print(capability_table(results))
    if json_out:
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    err.print(f"probe results stored in {store.path} under {owner}")


def capability_table(results: dict[str, ProbeResult]) -> Table:
    from bakeoff.runs import capability_row

    return capability_rows_table({name: capability_row(r) for name, r in results.items()})


def capability_rows_table(rows: Mapping[str, Mapping[str, object]]) -> Table:
    """The capability matrix: one row per endpoint, coloured yes / accepted / no / unknown / not
    tested; a context figure `≥ N` where the search stopped before the limit."""
    from bakeoff.runs import CAPABILITY_COLUMNS

    t = Table(title="capabilities", title_justify="left")
    t.add_column("endpoint")
    cols = CAPABILITY_COLUMNS
    for c in cols:
        t.add_column(c.replace("_", " "))
    colour = {"yes": "green", "accepted": "yellow", "no": "red", "unknown": "yellow", "not": "dim"}
    for name, row in rows.items():
        cells = []
        for c in cols:
            v = row.get(c)
            if isinstance(v, str) and (hue := colour.get(v.split(" ")[0].rstrip(":"))):
                cells.append(f"[{hue}]{escape(v)}[/]")
            elif c == "silent_truncation" and v:
                cells.append(f"[red]at {v}[/]")
            elif c == "output_capped_at" and v:
                cells.append(f"[red]{v}[/]")
            else:
                cells.append("-" if v is None else str(v))
        t.add_row(name, *cells)
    return t
