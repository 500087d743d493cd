"""`bakeoff lineup ...`: write a lineup from what an API lists; `bakeoff providers`: the presets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from bakeoff.cli._common import err, fail, out
from bakeoff.discovery import (
    AUDIT_BUDGET,
    OPENROUTER,
    DiscoveryError,
    gateway_lineup,
    gateway_models,
    openrouter_lineup,
    openrouter_upstreams,
)

app = typer.Typer(help="Write a lineup from what an API lists.", no_args_is_help=True)

_OUT = typer.Option(None, "--out", "-o", help="Write the lineup here (default: print it).")
_SUITES = typer.Option(
    "arith,instructions", "--suites", help="Comma-separated suites to run ('' for none)."
)


def _write(text: str, path: Path | None) -> None:
    if path is None:
        out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
        return
    if path.exists():
        raise fail(f"{path} exists; not overwritten (remove it or choose another --out)")
    path.write_text(text, encoding="utf-8")
    err.print(f"wrote {escape(str(path))}")


def _key(env: str | None, required: bool) -> str | None:
    if env is None:
        return None
    key = os.environ.get(env)
    if not key and required:
        raise fail(f"environment variable {env} is not set (the listing needs the key)")
    return key or None


@app.command("openrouter")
def openrouter(
    model: str = typer.Argument(..., help="OpenRouter model id, author/slug."),
    base_url: str = typer.Option(OPENROUTER, "--base-url", help="OpenRouter's API base."),
    key_env: str = typer.Option(
        "OPENROUTER_API_KEY", "--key-env", help="Environment variable holding the key."
    ),
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="Routing tag of the upstream to audit the others against (default: the first "
        "listed at bf16/fp16/fp32).",
    ),
    suites: str = _SUITES,
    audit_budget: int = typer.Option(
        AUDIT_BUDGET,
        "--audit-budget",
        min=2,
        help="Most greedy audit calls per upstream in the written lineup.",
    ),
    out_path: Path | None = _OUT,
) -> None:
    """List MODEL's upstreams on OpenRouter (`/models/{author}/{slug}/endpoints`) and write a
    lineup with one endpoint per upstream, pinned to it (routing `only` + `order`,
    `allow_fallbacks: false`), with its claimed context, quantization, output limit and price.
    A run of it flags every call another upstream served, and audits every upstream against the
    reference (greedy, margins from the reference's own top log-probabilities)."""
    key = _key(key_env, required=False)
    try:
        ups = asyncio.run(openrouter_upstreams(model, base_url=base_url, api_key=key))
        text = openrouter_lineup(
            model,
            ups,
            base_url=base_url,
            key_env=key_env,
            reference=reference,
            suites=[s for s in suites.split(",") if s],
            audit_budget=audit_budget,
        )
    except DiscoveryError as e:
        raise fail(str(e)) from None
    err.print(f"{model}: {len(ups)} upstreams ({', '.join(u.tag for u in ups)})")
    _write(text, out_path)


@app.command("models")
def models(
    base_url: str = typer.Argument(..., help="API base of the server or gateway, with its /v1."),
    provider: str = typer.Option("openai", "--provider", help="Provider preset of the endpoints."),
    key_env: str | None = typer.Option(
        None, "--key-env", help="Environment variable holding the key (if it needs one)."
    ),
    suites: str = _SUITES,
    out_path: Path | None = _OUT,
) -> None:
    """List the models a server or gateway serves (`GET BASE_URL/models`) and write a lineup with
    one endpoint per model."""
    key = _key(key_env, required=True)
    try:
        ids = asyncio.run(gateway_models(base_url, api_key=key))
        text = gateway_lineup(
            base_url,
            ids,
            provider=provider,
            key_env=key_env,
            suites=[s for s in suites.split(",") if s],
        )
    except DiscoveryError as e:
        raise fail(str(e)) from None
    err.print(f"{base_url}: {len(ids)} models")
    _write(text, out_path)


def providers() -> None:
    """The provider presets: what `provider: NAME` fills in when the lineup leaves it out."""
    from bakeoff.plugins import providers as registered

    t = Table(title="providers", title_justify="left")
    for col in ("provider", "base URL", "key variable", "audit sampler fields", "removed", "note"):
        t.add_column(col)
    for name, cls in sorted(registered().items()):
        if getattr(cls, "starts_server", False):
            url = "(started by bakeoff)"
        else:
            url = getattr(cls, "default_base_url", None) or "(base_url required)"
        neutral = getattr(cls, "neutral_params", None)
        engine = getattr(cls, "engine", None)
        fields = f"engine {engine}" if engine else (", ".join(neutral or {}) or "-")
        t.add_row(
            name,
            url,
            getattr(cls, "default_key_env", None) or "-",
            fields,
            ", ".join(sorted(getattr(cls, "drops", ()))) or "-",
            getattr(cls, "summary", "") or (cls.__doc__ or "").strip().splitlines()[0],
        )
    out.print(t)
