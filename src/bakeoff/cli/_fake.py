from __future__ import annotations

import errno
import sys
from pathlib import Path

import orjson
import typer

from bakeoff.cli._common import fail
from bakeoff.fake import (
    FAULTS,
    HOSTILE,
    PERSONAS,
    FakeConfig,
    Upstream,
    load_script,
    serve_forever,
)

_FAULT_HELP = "; ".join(f"{k}: {v}" for k, v in FAULTS.items())
_ALL_FAULTS = {**FAULTS, **HOSTILE}


def fake_server(  # noqa: PLR0913 — a typer command: its parameters are its options
    port: int = typer.Option(8800, "--port", "-p", help="Port (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    mode: str = typer.Option("echo", "--mode", help="echo | script | fixed."),
    script: str | None = typer.Option(
        None, "--script", help="JSON file: exact last user message → reply (implies --mode script)."
    ),
    reply: str = typer.Option(
        "I don't know.", "--reply", help="Reply for fixed mode / unscripted."
    ),
    reply_tokens: int | None = typer.Option(
        None, "--reply-tokens", help="Fixed mode: reply with exactly this many tokens."
    ),
    ttft_ms: float = typer.Option(0.0, "--ttft-ms", help="Delay before the first token."),
    itl_ms: float = typer.Option(0.0, "--itl-ms", help="Delay between tokens."),
    capacity: int | None = typer.Option(
        None, "--capacity", min=1, help="Requests served at once; more wait in a queue."
    ),
    context_length: int | None = typer.Option(
        None, "--context-length", min=1, help="Refuse longer prompts (tokens): a context error."
    ),
    fault: list[str] | None = typer.Option(
        None,
        "--fault",
        help=f"NAME=PROBABILITY, repeatable. Faults: {_FAULT_HELP}; and the hostile replies"
        f" of docs/RELIABILITY.md ({', '.join(HOSTILE)}).",
    ),
    markers: bool = typer.Option(
        True, "--markers/--no-markers", help="Obey `[[fault:NAME]]` in the last user message."
    ),
    max_faults_per_prompt: int | None = typer.Option(
        None, "--max-faults-per-prompt", help="Stop faulting a prompt after this many faults."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the fault draws."),
    log: str | None = typer.Option(None, "--log", help="Append every request to this JSONL file."),
    stamps: bool = typer.Option(False, "--stamps", help="Add send timestamps to stream events."),
    upstream: str | None = typer.Option(None, "--upstream", help="Name an upstream in responses."),
    model: str = typer.Option("fake-model", "--model", help="Model id reported."),
    persona: str | None = typer.Option(
        None,
        "--persona",
        help=f"Answer as this provider does (error bodies, refused fields, usage form, cost): "
        f"{', '.join(PERSONAS)}.",
    ),
    upstreams: str | None = typer.Option(
        None,
        "--upstreams",
        help="JSON file: the model's upstreams (list of {name, tag, quantization, "
        "context_length, max_completion_tokens, prompt_per_m, completion_per_m, backend, "
        "backend_model}), listed at /v1/models/{author}/{slug}/endpoints as OpenRouter lists "
        "them; a call pinned to an upstream with a `backend` (a real server's base URL) is "
        "forwarded to it.",
    ),
) -> None:
    """Serve a fake OpenAI-compatible provider on loopback, with scripted outputs and faults."""
    faults = _parse_faults(fault or [])
    if persona is not None and persona not in PERSONAS:
        raise fail(f"unknown persona {persona!r}; known: {', '.join(PERSONAS)}")
    cfg = FakeConfig(
        persona=persona,
        upstreams=_upstreams(upstreams),
        mode="script" if script else mode,
        script=load_script(script) if script else {},
        reply=reply,
        reply_tokens=reply_tokens,
        ttft_ms=ttft_ms,
        itl_ms=itl_ms,
        capacity=capacity,
        context_length=context_length,
        faults=faults,
        max_faults_per_prompt=max_faults_per_prompt,
        seed=seed,
        log_file=log,
        stamps=stamps,
        upstream=upstream,
        model=model,
        markers=markers,
    )
    _serve(cfg, host, port)


def _serve(cfg: FakeConfig, host: str, port: int) -> None:
    try:
        serve_forever(cfg, host, port, _ready)
    except OSError as e:  # the port taken, an address not this machine's: one line, no traceback
        hint = "; another process holds it: pick another --port (0 picks a free one)"
        busy = e.errno == errno.EADDRINUSE
        raise fail(
            f"cannot listen on {host}:{port}: {e.strerror or e}{hint if busy else ''}"
        ) from None


def _ready(url: str) -> None:
    print(f"fake provider listening on {url}", flush=True)
    sys.stdout.flush()


def _parse_faults(given: list[str]) -> dict[str, float]:
    """`--fault NAME=P` options as {name: probability}."""
    faults: dict[str, float] = {}
    for f in given:
        name, eq, p = f.partition("=")
        if name not in _ALL_FAULTS:
            raise fail(f"unknown fault {name!r}; known: {', '.join(_ALL_FAULTS)}")
        if not eq:
            raise fail(
                f"--fault {f!r}: give NAME=PROBABILITY, e.g. --fault {name}=0.1 (1 = always)"
            )
        try:
            faults[name] = float(p)
        except ValueError:
            raise fail(f"--fault {f!r}: the probability must be a number from 0 to 1") from None
        if not 0 <= faults[name] <= 1:
            raise fail(f"--fault {f!r}: the probability must be a number from 0 to 1")
    return faults


def _upstreams(path: str | None) -> list[Upstream]:
    """The `--upstreams` file: a JSON list of objects each with a `name` and a `tag`."""
    if path is None:
        return []
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise fail(f"--upstreams {path}: {e}") from None
    if not isinstance(data, list) or not all(
        isinstance(u, dict) and u.get("name") and u.get("tag") for u in data
    ):
        raise fail(f"--upstreams {path}: a JSON list of objects, each with a name and a tag")
    return data
