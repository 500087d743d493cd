"""`bakeoff lineup openrouter` → `bakeoff run`, one command to the answer: the fake's `openrouter`
persona lists four upstreams of `acme/model`, each forwarding to a real local server — F16 claiming
bf16 (the reference), the same F16 weights on PyTorch (an honest engine), Q4_K_M claiming fp8, and a
weight-perturbed F16 claiming bf16 ("another model"). The lineup is written by the real CLI, then
`bakeoff run -c` alone audits it: no GGUF, no scorer, margins from the reference upstream's own
top log-probabilities asked through OpenRouter."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bakeoff.local import ServerSettings, launch, stop, variant_path, wait_ready
from bakeoff.local._perturb import PERTURBED
from conftest import bakeoff

pytestmark = pytest.mark.slow

PARAMS = ["max_tokens", "temperature", "top_p", "seed", "logprobs", "top_logprobs"]


@pytest.fixture(scope="module")
def backends(servers):
    """The session's F16 server, and Q4_K_M, the perturbed F16 and the PyTorch F16 started here."""
    specs = {
        "q4_k_m": ("Q4_K_M", ServerSettings()),
        "perturbed": (PERTURBED, ServerSettings()),
        "torch": ("F16", ServerSettings(engine="transformers")),
    }
    started = {}
    try:
        for name, (variant, st) in specs.items():
            started[name] = launch(f"or-{name}", variant_path(variant), alias="smol", settings=st)

        async def ready():
            await asyncio.gather(*(wait_ready(s) for s in started.values()))

        asyncio.run(ready())
        yield {"f16": servers["f16"].url, **{n: s.url for n, s in started.items()}}
    finally:
        for s in started.values():
            stop(s)


def upstreams(urls: dict[str, str]) -> list[dict[str, object]]:
    rows = [
        ("Alpha", "alpha/bf16", "bf16", "f16"),
        ("Beta", "beta", "fp16", "torch"),
        ("Gamma", "gamma/fp8", "fp8", "q4_k_m"),
        ("Delta", "delta", "bf16", "perturbed"),
    ]
    return [
        {
            "name": name,
            "tag": tag,
            "quantization": q,
            "backend": urls[backend],
            "backend_model": "smol",
            "supported_parameters": PARAMS,
        }
        for name, tag, q, backend in rows
    ]


def test_lineup_openrouter_then_run_flags_the_quantized_and_the_other_model(
    backends, fake_proc, tmp_path
):
    ups = tmp_path / "upstreams.json"
    ups.write_text(json.dumps(upstreams(backends)))
    fake = fake_proc("--persona", "openrouter", "--model", "acme/model", "--upstreams", str(ups))
    cfg, db = tmp_path / "acme.yaml", tmp_path / "or.db"
    env = {"OPENROUTER_API_KEY": "sk-or-test", "COLUMNS": "250"}  # a row's cell on one line
    t0 = time.monotonic()
    wrote = bakeoff(
        "lineup",
        "openrouter",
        "acme/model",
        "--base-url",
        fake.url,
        "--suites",
        "",
        "--audit-budget",
        "30",  # measured: Q4_K_M 14/20 confident, the perturbed F16 11/20 (p 0.0017, 0.0081 at 20)
        "-o",
        str(cfg),
        env=env,
    )
    assert wrote.returncode == 0, wrote.stderr
    text = cfg.read_text()
    assert "reference: alpha-bf16" in text and "audit:" in text
    run = bakeoff("run", "-c", str(cfg), "--db", str(db), "--json", "--no-report", env=env)
    took = time.monotonic() - t0
    print(f"\nlineup + run: {took:.0f} s")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    fid = {e["name"]: e["fidelity"] for e in summary["endpoints"]}
    print({n: (f or {}).get("claim") for n, f in fid.items()})
    verdicts = {n: f["verdict"] for n, f in fid.items()}
    assert verdicts["alpha-bf16"] == "reference"
    assert verdicts["gamma-fp8"] == "different" and verdicts["delta"] == "different", verdicts
    assert verdicts["beta"] != "different", verdicts
    top5 = "the reference's top-5 log-probabilities"
    for name in ("beta", "gamma-fp8", "delta"):
        assert fid[name]["margins"] == top5, fid[name]
    assert fid["delta"]["vs_claim"] == "claims bf16 — behaves unlike the reference"
    assert fid["gamma-fp8"]["vs_claim"] == "claims fp8 — behaves unlike the reference"
    assert fid["alpha-bf16"]["vs_claim"] == "claims bf16 — the reference"
    # the table (stderr under --json) says the same, row by row
    table = " ".join(run.stderr.split())
    assert "claims bf16 — behaves unlike the reference" in table
    assert f"margins: {top5}" in table
    # every call was served by the upstream it was pinned to, as the fake's replies said
    assert all(not e.get("wrong_upstream") for e in summary["endpoints"])


def test_the_perturbed_f16_is_derived_once_seeded_with_the_norms_left_alone(tmp_path, monkeypatch):
    """`F16_PERTURBED`: made once in the cache (not again), the same bytes from the same seed,
    every F16 matrix moved by noise of 0.02 of its own spread, the F32 norms and the metadata as
    the F16's (a server of it reads its tokenizer and template from them)."""
    import gguf
    import numpy as np

    from bakeoff.local._perturb import SCALE, SEED, perturb

    monkeypatch.setenv("BAKEOFF_CACHE_DIR", str(tmp_path))
    p = variant_path(PERTURBED)
    assert f".{SCALE:g}.{SEED}." in p.name  # a file of other noise is never taken for it
    assert p.parent == variant_path("F16").parent and not list(p.parent.glob("*.tmp*"))
    mtime = p.stat().st_mtime_ns
    assert variant_path("f16_perturbed") == p and p.stat().st_mtime_ns == mtime
    again = tmp_path / "again.gguf"
    perturb(variant_path("F16"), again)
    assert again.read_bytes() == p.read_bytes()
    ref, got = gguf.GGUFReader(variant_path("F16")), gguf.GGUFReader(p)
    assert [f.name for f in ref.fields.values()] == [f.name for f in got.fields.values()]
    moved = 0
    for a, b in zip(ref.tensors, got.tensors, strict=True):
        assert a.name == b.name
        x, y = np.asarray(a.data, np.float32), np.asarray(b.data, np.float32)
        if a.tensor_type == gguf.GGMLQuantizationType.F16 and len(a.shape) == 2:
            assert np.std(y - x) == pytest.approx(SCALE * np.std(x), rel=0.1), a.name
            moved += 1
        else:
            assert np.array_equal(x, y), a.name
    assert moved > 100
