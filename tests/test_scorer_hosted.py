"""A hosted provider as the reference scorer (`audit.scorer: endpoint` on a provider that returns
prompt log-probabilities with `echo` on `/v1/completions`, and no chat-template route): the fake's
persona in front of the real F16 llama.cpp server (`FakeConfig.model_server`, so every number is
the model's), the chat template from a `tokenizer_config.json`, every scoring call through the
run's call policy and on its bill. Its verdicts are the in-process GGUF scorer's; a malformed, an
oversized or an endless answer is one classified audit error, the run's calls kept."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bakeoff.audit import AuditError
from bakeoff.audit._scorer_template import chat_template_of
from bakeoff.fake import FakeConfig, FakeServer
from bakeoff.fake._hostile_scorer import HostileScorerServer
from bakeoff.lineups import load_lineup
from bakeoff.local import source_model
from bakeoff.store import Store
from conftest import bakeoff

NEUTRAL = "neutral_params: {top_k: 0, min_p: 0.0, repeat_penalty: 1.0}"
"""What a user gives a host whose sampler defaults are llama.cpp's (tests/test_audit_hosted.py)."""


@functools.cache
def _gguf_template() -> str:
    """The chat template the packaged model's GGUF holds, as `LocalReferenceScorer` reads it (its
    vocabulary alone loaded: 2 s; gguf's GGUFReader took 5)."""
    from llama_cpp import Llama

    from bakeoff.local._llama import no_repacked_weights

    with no_repacked_weights():
        llm = Llama(str(source_model()), vocab_only=True, verbose=False)
    return str(llm.metadata["tokenizer.chat_template"])


def _write_config(folder: Path) -> Path:
    """A Hugging Face tokenizer_config.json carrying the model's template."""
    path = folder / "tokenizer_config.json"
    cfg = {
        "chat_template": _gguf_template(),
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
    }
    path.write_text(json.dumps(cfg))
    return path


class _Loop:
    """Servers of the test (the persona, the hostile scorer) on an event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[_Loop]:
    lp = _Loop()
    yield lp
    lp.close()


# -- the template file --------------------------------------------------------------------------
def test_the_template_comes_from_a_tokenizer_config_or_a_jinja_file(tmp_path):
    """Relative to the lineup file; a tokenizer config's `chat_template` with its BOS and EOS; a
    Jinja file as it is; a file missing, without a template, or not UTF-8 is one error naming it."""
    (tmp_path / "tpl").mkdir()
    _write_config(tmp_path / "tpl")
    (tmp_path / "t.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    text = "reference: a\nendpoints: [{name: a, provider: fake}]\naudit: {scorer_template: %s}\n"
    (tmp_path / "l.yaml").write_text(text % "tpl/tokenizer_config.json")
    spec = load_lineup(tmp_path / "l.yaml").audit.scorer_template
    assert spec == str(tmp_path / "tpl" / "tokenizer_config.json")
    t = chat_template_of(spec)
    assert t.template == _gguf_template() and t.bos_token == "<|im_start|>"
    assert chat_template_of(str(tmp_path / "t.jinja")).template.startswith("{% for m")
    (tmp_path / "none.json").write_text('{"eos_token": "</s>"}')
    (tmp_path / "bin.jinja").write_bytes(b"\xff\xfe{{ x }}")
    for name, says in [
        ("missing.json", "cannot read it"),
        ("none.json", "no `chat_template` in it"),
        ("bin.jinja", "not UTF-8"),
    ]:
        with pytest.raises(AuditError, match="audit.scorer_template: .*" + name) as e:
            chat_template_of(str(tmp_path / name))
        assert says in str(e.value)


# -- the same verdicts as the in-process scorer -------------------------------------------------
@pytest.fixture(scope="module")
def persona(servers, loop) -> Iterator[str]:
    """A Fireworks-style host in front of the session's F16 server: its base URL."""
    fake = FakeServer(FakeConfig(persona="fireworks", model_server=servers["f16"].url))
    url = loop.run(fake.start())
    yield url
    loop.run(fake.stop())


def _lineup(ref_url: str, servers, scorer: str) -> str:
    others = {"q2_k": servers["q2_k"].url, "f16-twin": servers["f16b"].url}
    eps = "".join(
        f"  - {{name: {n}, provider: openai, base_url: '{u}', model: smol, max_concurrency: 1,"
        f" {NEUTRAL}}}\n"
        for n, u in others.items()
    )
    return f"""reference: ref
run: {{suites: []}}
audit: {{regimes: [greedy], budget: 10, batch: 10, max_tokens: 24, seed: 11, {scorer}}}
endpoints:
  - {{name: ref, provider: openai, base_url: '{ref_url}', model: smol, max_concurrency: 1,
      {NEUTRAL}, price: {{input_per_m: 0.5, output_per_m: 1.5}}}}
{eps}  - name: f16-sysprompt
    provider: proxy
    model: smol
    proxy: {{target: f16-twin, inject_system: "You are a pirate. Answer in pirate speak."}}
    max_concurrency: 1
"""


def _audit(tmp_path: Path, name: str, text: str) -> tuple[dict, str, Path]:
    cfg, db = tmp_path / f"{name}.yaml", tmp_path / f"{name}.db"
    cfg.write_text(text)
    r = bakeoff("audit", "-c", str(cfg), "--db", str(db), "--json", "-q")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr, db


def _margins(v: dict) -> dict[str, float | None]:
    """Each divergence's margin (nats), by prompt: the examples the verdict shows."""
    return {ex["item"]: ex.get("margin") for ex in v["tests"]["greedy"].get("examples") or []}


def test_a_hosted_scorer_gives_the_in_process_verdicts(persona, servers, tmp_path):
    """Seeded, 10 greedy prompts, the reference a host in front of F16: scored by that host's
    echo log-probabilities (the template from a tokenizer_config.json beside the lineup), every
    verdict is the in-process GGUF scorer's, its margins within llama.cpp's batch numerics; the
    scoring calls are the run's: on its bill (the audit's `scorer` row, priced) and named."""
    _write_config(tmp_path)
    local, _, _ = _audit(
        tmp_path, "local", _lineup(persona, servers, "scorer: local, reference_gguf: F16")
    )
    hosted, said, db = _audit(
        tmp_path,
        "hosted",
        _lineup(persona, servers, "scorer: endpoint, scorer_template: tokenizer_config.json"),
    )
    lv, hv = local["verdicts"], hosted["verdicts"]
    assert set(lv) == set(hv) == {"q2_k", "f16-twin", "f16-sysprompt"}
    for name in lv:
        assert hv[name]["verdict"] == lv[name]["verdict"], name
        assert hv[name]["claim"] == lv[name]["claim"], name
        assert hv[name]["margin_source"] == "endpoint" and lv[name]["margin_source"] == "gguf"
        hg, lg = hv[name]["tests"]["greedy"], lv[name]["tests"]["greedy"]
        assert (hg["n"], hg["differ"]) == (lg["n"], lg["differ"]), name
        assert hg["confident_differ"] == lg["confident_differ"], name
        hm, lm = _margins(hv[name]), _margins(lv[name])
        assert hm.keys() == lm.keys(), name
        for item, m in lm.items():
            assert (hm[item] is None) == (m is None), (name, item)
            assert m is None or hm[item] == pytest.approx(m, abs=0.02), (name, item)
    assert lv["q2_k"]["verdict"] == "different" and lv["f16-twin"]["verdict"] != "different"
    # on the bill: the scorer's calls to `ref`, priced at its price, beside its greedy calls
    scorer = hosted["cost"]["ref"]["scorer"]
    assert scorer["calls"] > 0 and scorer["failed"] == 0 and scorer["cost_usd"] > 0
    assert "scorer" not in local["cost"].get("ref", {})
    assert f"reference scorer: endpoint ref (model smol at {persona})" in said
    store = Store(db)
    rows = store.side_calls(hosted["run_id"])
    store.close()
    assert {(r["endpoint"], r["purpose"], r["status"]) for r in rows} == {("ref", "scorer", "ok")}


# -- hostile answers through the call policy ----------------------------------------------------
@pytest.fixture(scope="module")
def hostile(loop) -> Iterator[HostileScorerServer]:
    server = HostileScorerServer(hostile_bytes=64 * 1024 * 1024, drip_for_s=30)
    loop.run(server.start())
    yield server
    loop.run(server.stop())


@pytest.mark.parametrize(
    ("mode", "klass", "says"),
    [
        ("tokens_int", None, "choices[0].logprobs.tokens[0] is 0 (type int), not a string"),
        ("logprobs_flood", "too_large", "too_large"),
        ("endless_body", "too_large", "too_large"),
        ("drip", "timeout", "timeout"),
    ],
)
def test_a_hostile_scorer_answer_is_one_classified_audit_error(
    hostile, tmp_path, mode, klass, says
):
    """Malformed (integers for token texts), oversized (60 MB of top-k maps), endless (a body
    that never ends; one that drips for 30 s): the run stops with one classified error naming
    it, its calls kept, and each scoring call's bill kept with it (`side_calls`, purpose
    `scorer`: the error's class where the call itself failed) — in this same process, which
    goes on to the next mode."""
    from bakeoff._pipeline import execute_run
    from bakeoff._preflight import RunStopped
    from bakeoff.runs import create_run

    url = hostile.base_url(mode)
    lineup = load_lineup_text(
        tmp_path,
        "run: {suites: []}\nreference: ref\n"
        "audit: {regimes: [greedy], budget: 2, batch: 2, scorer: endpoint,"
        " scorer_template: '{% for m in messages %}{{ m.content }}{% endfor %}'}\nendpoints:\n"
        f"  - {{name: ref, provider: openai, base_url: '{url}', model: m,"
        " limits: {max_response_bytes: 2000000}, timeouts: {first_token: 2, total: 3},"
        " retry: {max_retries: 1, backoff_base_s: 0}}\n"
        "  - {name: cand, provider: fake, fake: {mode: fixed, reply: 'Something else.'}}\n",
    )
    store = Store(tmp_path / "h.db")
    run_id = create_run(store, lineup)
    with pytest.raises(RunStopped) as e:
        asyncio.run(execute_run(store, run_id, lineup, use_cache=False))
    assert says in str(e.value) and "Traceback" not in str(e.value)
    calls = store.calls_light(run_id)
    assert len(calls) >= 3  # the reference twice and the candidate, per prompt answered
    bills = [r for r in store.side_calls(run_id) if r["purpose"] == "scorer"]
    store.close()
    assert bills and all(r["endpoint"] == "ref" for r in bills)
    assert bills[-1]["status"] == ("ok" if klass is None else "error")
    assert bills[-1]["error_class"] == klass


def load_lineup_text(folder: Path, text: str):  # type: ignore[no-untyped-def]
    path = folder / "l.yaml"
    path.write_text(text)
    return load_lineup(path)
