"""`bakeoff audit`: is each endpoint serving the reference model?"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from bakeoff.cli._common import (
    AllowEnvOption,
    DbOption,
    err,
    fail,
    find_run_or_fail,
    open_store,
    out,
    override,
)
from bakeoff.cli._run import execute_with_progress
from bakeoff.lineups import LineupError
from bakeoff.plugins import load
from bakeoff.runs import RegimeCost, audit_costs
from bakeoff.store import AuditStop, Store, TestEvidence, Verdict, margin_source_text

COST_CAP_EXIT = 6
"""`bakeoff audit` stopped at its cost cap before its budget (docs/CLI.md's exit codes)."""

app = typer.Typer(
    help="Audit every endpoint against the reference: same / different / inconclusive, with "
    "evidence; re-analyse, bundle and verify audits.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)


@app.callback()
def audit(  # noqa: PLR0913 — a typer command: its parameters are its options
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Lineup YAML (default: the local lineup).", dir_okay=False
    ),
    regime: list[str] | None = typer.Option(
        None, "--regime", "-r", help="greedy and/or sampled (repeatable; default: the lineup's)."
    ),
    budget: int | None = typer.Option(None, "--budget", help="Most calls per regime per endpoint."),
    seed: int | None = typer.Option(
        None,
        "--seed",
        help="The audit prompts' seed (default: a fresh private one per audit, stored with the "
        "run). Give one to compare runs on the same prompts, or the seed of a published "
        "commitment (`bakeoff audit seed`).",
    ),
    rerun: str | None = typer.Option(
        None,
        "--rerun",
        help="Rebuild a stored run's audit analysis — its settings and its scorer's stored "
        "answers — without a single new call; the verdicts are compared with the stored ones.",
    ),
    set_: list[str] | None = typer.Option(
        None,
        "--set",
        help="With --rerun: an audit setting changed for this re-analysis (KEY=VALUE, e.g. "
        "margin=0.2; repeatable). It is stored beside the run's own analysis under its own id.",
    ),
    max_cost: float | None = typer.Option(
        None,
        "--max-cost",
        metavar="USD",
        help="Most USD the audit may spend (default: the lineup's audit.max_cost, else no cap). "
        "Before each round its cost is projected from what each endpoint's calls cost so far; a "
        f"round that would pass the cap is not started, and the audit exits {COST_CAP_EXIT} with "
        "the verdicts of the calls made. Calls with no price are not counted.",
    ),
    db: str | None = DbOption,
    json_out: bool = typer.Option(False, "--json", help="Print the verdicts as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    allow_env: list[str] | None = AllowEnvOption,
) -> None:
    """Audit every endpoint against the reference: same / different / inconclusive, with evidence."""
    if ctx.invoked_subcommand is not None:
        return
    if set_ and not rerun:
        raise fail("--set changes a re-analysis: use it with --rerun RUN")
    store = open_store(db, existing=bool(rerun))
    analysis = "run"
    if rerun:
        run_id, analysis, verdicts = _rerun(store, rerun, _settings_of(set_ or []), quiet)
    else:
        run_id = _audit_now(store, config, (regime, budget, seed, max_cost), quiet)
        verdicts = store.verdicts(run_id)
    stop = store.audit_stop(run_id)
    _print_audit(store, run_id, analysis, verdicts, stop, json_out)
    if stop is not None and not rerun:
        raise typer.Exit(COST_CAP_EXIT)


def _print_audit(
    store: Store,
    run_id: str,
    analysis: str,
    verdicts: dict[str, Verdict],
    stop: AuditStop | None,
    json_out: bool,
) -> None:
    """The verdicts, who scored them, what they cost, and what they assumed or lacked: tables on
    the terminal, or the same as JSON on stdout (`--json`)."""
    console = err if json_out else out
    console.print(verdict_table(run_id, verdicts, stop))
    for line in scorer_lines(store, run_id, analysis):
        console.print(escape(line), highlight=False)
    costs = audit_costs(store.calls_light(run_id), store.side_calls(run_id))
    if costs:
        console.print(cost_table(run_id, costs))
    assumed = next((v.assumed_reference for v in verdicts.values() if v.assumed_reference), None)
    if assumed is not None:
        err.print(f"[yellow]{escape(assumed.text)}[/]", highlight=False)
    if any(v.margin_source == "none" for v in verdicts.values()):
        err.print(f"[yellow]warning:[/] {escape(NO_MARGINS_HELP)}", highlight=False)
    if stop is not None:
        err.print(f"[yellow]{escape(stop.text())}[/]", highlight=False)
    if json_out:
        stated = {k: v.to_json() for k, v in verdicts.items()}
        body = {
            "run_id": run_id,
            "analysis": analysis,
            "verdicts": stated,
            "cost": {ep: {r: c.model_dump() for r, c in rc.items()} for ep, rc in costs.items()},
            "audit_stop": None if stop is None else stop.model_dump(),
        }
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")


def scorer_lines(store: Store, run_id: str, analysis: str = "run") -> list[str]:
    """Who scored the verdicts' tokens (the analysis's stored scorer identities): a GGUF by its
    file and hash, a server — a provider itself — by its endpoint, model and URL."""
    found = store.analysis(run_id, analysis)
    out = []
    for role, who in ((found or {}).get("scorers") or {}).items():
        if not isinstance(who, dict):
            continue
        if who.get("kind") == "gguf":
            what = f"{who.get('file')} in-process (sha256 {str(who.get('sha256'))[:12]}…)"
        else:
            where = f" at {who['base_url']}" if who.get("base_url") else ""
            what = f"endpoint {who.get('endpoint')} (model {who.get('model')}{where})"
        out.append(f"{role} scorer: {what}")
    return out


def cost_table(run_id: str, costs: dict[str, dict[str, RegimeCost]]) -> Table:
    """What the audit's calls cost, per endpoint and regime, from the stored calls."""
    t = Table(title=f"audit cost, run {run_id}", title_justify="left")
    for col in ("endpoint", "regime", "calls", "failed", "cached", "tokens in+out", "$"):
        t.add_column(col)
    for ep, by_regime in costs.items():
        for regime, c in by_regime.items():
            row = (str(c.calls), str(c.failed), str(c.cached), c.tokens_text(), c.usd_text())
            t.add_row(ep, regime, *row)
    t.caption = (
        "a cached answer (bakeoff's response cache) costs nothing; a failed call counts as a call, "
        "with no tokens stored; `scorer`: the reference scorer's scoring calls to that endpoint "
        "(a scorer in-process costs nothing)"
    )
    return t


NO_MARGINS_HELP = (
    "no reference scorer, and the reference returned no log-probabilities (its provider drops "
    "them, or its server ignores `top_logprobs`): every greedy divergence was counted, so an "
    "honest engine that flips near-ties may be called different. Give a scorer (audit.scorer: "
    "local with reference_gguf, or endpoint) or a reference that returns top_logprobs."
)


def _settings_of(pairs: list[str]) -> dict[str, object]:
    """KEY=VALUE pairs as audit settings (values read as YAML: numbers, lists, null), as the user
    typed them: `reanalyse` validates them as the lineup's would be."""
    import yaml

    out: dict[str, object] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise fail(f"--set {pair!r}: use KEY=VALUE, e.g. margin=0.2")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _rerun(
    store: Store, run: str, overrides: dict[str, object], quiet: bool
) -> tuple[str, str, dict[str, Verdict]]:
    from bakeoff.audit import AuditError, reanalyse
    from bakeoff.runs import lineup_of_run

    run_id = find_run_or_fail(store, run)["id"]
    try:
        r = reanalyse(store, run_id, lineup_of_run(store, run_id), overrides)
    except AuditError as e:
        raise fail(str(e)) from None
    how = f"{r.replayed} stored scorer answers replayed, {r.computed} computed, no endpoint called"
    if overrides:
        err.print(
            f"re-analysed with {_show(overrides)} ({how}): stored as analysis {r.analysis_id}"
        )
    elif r.identical:
        err.print(f"re-analysed ({how}): identical to the run's own analysis")
    elif r.identical is None:
        err.print(f"re-analysed ({how}): no stored verdicts to compare with")
    else:
        err.print(
            f"[bold red]re-analysed ({how}): differs from the run's own analysis on "
            f"{', '.join(r.differ)}[/]; the run's own is kept, this one stored beside it as "
            f"analysis {r.analysis_id}",
            highlight=False,
        )
    if not overrides:
        from bakeoff.cli._ui import refresh_report

        refresh_report(store, run_id, quiet)
    if not overrides and r.identical is False:
        raise typer.Exit(1)
    return run_id, r.analysis_id, r.verdicts


def _show(overrides: dict[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in overrides.items())


def _audit_now(
    store: Any,
    config: Path | None,
    options: tuple[list[str] | None, int | None, int | None, float | None],
    quiet: bool,
) -> str:
    """Audit the lineup now (`options`: --regime, --budget, --seed, --max-cost); the run's id."""
    from bakeoff.runs import create_run

    if config is None:
        from bakeoff.local import default_lineup_path

        config = default_lineup_path()
    try:
        lineup = load(config)
    except LineupError as e:
        raise fail(str(e)) from None
    if lineup.reference is None and lineup.audit.reference != "consensus":
        raise fail(
            f"{config}: the audit needs `reference:` naming the reference endpoint, or "
            "`audit.reference: consensus` to assume the largest agreeing group is it"
        )
    regime, budget, seed, max_cost = options
    lineup.run.suites = []
    lineup.audit.enabled = True
    if regime:
        bad = [r for r in regime if r not in ("greedy", "sampled")]
        if bad:
            raise fail(f"unknown regime {bad[0]!r}; use greedy or sampled")
        override(lineup.audit, "regimes", list(regime), "--regime")
    if budget is not None:
        override(lineup.audit, "budget", budget, "--budget")
    if seed is not None:
        override(lineup.audit, "seed", seed, "--seed")
    if max_cost is not None:
        override(lineup.audit, "max_cost", max_cost, "--max-cost")
    from bakeoff._pipeline import RunError, check_env, check_local

    try:
        check_env(lineup)
        check_local(lineup)
    except RunError as e:
        raise fail(str(e)) from None
    run_id = create_run(store, lineup, str(config))
    status = execute_with_progress(store, run_id, lineup, use_cache=False, quiet=quiet)
    if status != "complete":
        err.print(f"audit {run_id} was interrupted; resume with: bakeoff run --resume {run_id}")
        raise typer.Exit(130)
    return str(run_id)


@app.command("analyses")
def analyses_cmd(
    run_id: str = typer.Argument(..., help="Run id, a unique prefix of one, or `last`."),
    analysis: str | None = typer.Option(
        None, "--analysis", help="Print this analysis's verdicts (default: list them all)."
    ),
    db: str | None = DbOption,
    json_out: bool = typer.Option(False, "--json", help="As JSON on stdout."),
) -> None:
    """A run's audit analyses: its own (`run`, what `show`, the UI and `compare` read) and every
    re-analysis stored beside it (`audit --rerun --set`), with the settings each changed."""
    store = open_store(db, existing=True)
    rid = find_run_or_fail(store, run_id)["id"]
    found = store.analyses(rid)
    if analysis is not None:
        one = next((a for a in found if a["id"] == analysis), None)
        if one is None or one["verdicts"] is None:
            raise fail(
                f"run {rid} has no analysis {analysis!r}: see `bakeoff audit analyses {rid}`"
            )
        if json_out:
            sys.stdout.write(orjson.dumps(one, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            typed = {k: Verdict.model_validate(v) for k, v in one["verdicts"].items()}
            out.print(verdict_table(f"{rid}, analysis {analysis}", typed))
        return
    if json_out:
        sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    own: dict[str, object] = next((a["settings"] for a in found if a["id"] == "run"), {})
    t = Table(title=f"audit analyses of run {rid}", title_justify="left")
    for col in ("id", "created", "settings changed", "verdicts"):
        t.add_column(col)
    for a in found:
        changed = {k: v for k, v in a["settings"].items() if own.get(k) != v}
        claims = ", ".join(
            f"{ep}: {v.get('claim') or v['verdict']}" for ep, v in (a["verdicts"] or {}).items()
        )
        t.add_row(a["id"], a["created_at"], escape(str(changed or "-")), escape(claims or "-"))
    out.print(t)


@app.command("seed")
def seed_cmd() -> None:
    """Draw a private audit seed and print its commitment: publish the commitment now, run the
    audit with `--seed SEED` (or `audit.seed`), reveal the seed with the bundle afterwards."""
    import secrets

    from bakeoff.audit._bundle import commitment

    s = secrets.randbits(62)
    out.print(f"seed        {s}   (keep it private until the audit is done)")
    out.print(f"commitment  {commitment(s)}   (publish this now)")


@app.command("bundle")
def bundle_cmd(
    run_id: str = typer.Argument(..., help="Run id, a unique prefix of one, or `last`."),
    output: Path = typer.Option(..., "--output", "-o", help="The bundle file (.tar.gz)."),
    db: str | None = DbOption,
) -> None:
    """Write a run's audit as one file a provider can re-check: prompts and seed, every raw
    request and reply, the settings, the scorers' identities and numbers, the verdicts, and a
    manifest of SHA-256 hashes. Prints the bundle's hash (publish it)."""
    from bakeoff.audit import AuditError
    from bakeoff.audit._bundle import write_bundle

    store = open_store(db, existing=True)
    rid = find_run_or_fail(store, run_id)["id"]
    try:
        root = write_bundle(store, rid, output)
    except AuditError as e:
        raise fail(str(e)) from None
    out.print(f"wrote {output}\nbundle hash {root}")


@app.command("verify")
def verify_cmd(
    bundle: Path = typer.Argument(..., help="An audit bundle (.tar.gz)."),
    commitment_: str | None = typer.Option(
        None, "--commitment", help="The seed commitment published before the audit."
    ),
) -> None:
    """Recompute every verdict of an audit bundle from the bundle alone (no call, no database,
    no model file) and check every hash; exit 1 on any difference."""
    from bakeoff.audit._bundle import verify_bundle

    v = verify_bundle(bundle, expected_commitment=commitment_)
    if v.root:
        out.print(f"bundle hash {v.root}  (run {v.run_id or '?'})")
    for line in v.checked:
        out.print(f"[green]ok[/]  {escape(line)}")
    for line in v.problems:
        err.print(f"[bold red]FAIL[/] {escape(line)}", highlight=False)
    if not v.ok:
        raise typer.Exit(1)
    out.print("verified: every verdict follows from the bundle")


def _margins(v: Verdict, g: TestEvidence | None) -> str:
    """Where the greedy margins came from, in words, with the prompts left out for want of them."""
    if g is None or v.margin_source is None:
        return "-"
    text = margin_source_text(v.margin_source, g.top_k)
    left = sum((g.left_out or {}).values())
    if left:
        text += f" ({left} prompts left out: no usable log-probabilities)"
    return f"[yellow]{escape(text)}[/]" if v.margin_source == "none" else escape(text)


def verdict_table(
    run_id: str, verdicts: dict[str, Verdict], stop: AuditStop | None = None
) -> Table:
    """The verdicts, one row each; an inconclusive one says when the cost cap stopped the audit."""
    t = Table(title=f"fidelity audit, run {run_id}", title_justify="left")
    for col in (
        "endpoint",
        "verdict",
        "p-value",
        "calls",
        "greedy: confident / differ / n",
        "margins from",
        "sampled",
        "MMD p",
        "why",
    ):
        t.add_column(col)
    for name, v in verdicts.items():
        g, s = v.tests.get("greedy"), v.tests.get("sampled")
        colour = {"same": "green", "different": "red"}.get(v.verdict, "yellow")
        why = (v.why or "") + "".join(f"\n! {f}" for f in v.behaviour.flags)
        if stop is not None and v.verdict == "inconclusive":
            why += f"\n! stopped by the cost cap (${stop.cap_usd:.4g})"
        confident = "-" if g is None or g.confident_differ is None else g.confident_differ
        t.add_row(
            name,
            f"[{colour}]{escape(v.claim or v.verdict)}[/]",
            f"{v.p_value:.2g}",
            str(v.calls),
            f"{confident} / {g.differ} / {g.n}" if g else "-",
            _margins(v, g),
            f"p={s.p_value:.2g} n={s.n}" if s else "-",
            f"{s.mmd_p_value:.2g}" if s else "-",
            why,
        )
    return t
