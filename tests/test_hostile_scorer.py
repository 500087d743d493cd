"""The HTTP reference scorer against a hostile scorer server (`bakeoff.fake._hostile_scorer`, a
real loopback server): every mode — endless, dripping, absurd counts, wrong shapes, NaN and
infinities, a secret echoed in an error — is one `ReferenceScorerError` (an `AuditError`: a run
stops with it, its calls kept, `--resume` offered) naming what is wrong; never a traceback, a
MemoryError or a hang."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from bakeoff.audit import AuditError
from bakeoff.audit._scorer import HttpReferenceScorer, ReferenceScorerError
from bakeoff.audit._vllm_scorer import VllmReferenceScorer, http_reference_scorer
from bakeoff.fake import FakeConfig, FakeServer
from bakeoff.fake._hostile_scorer import HOSTILE_SCORER, REPLY, HostileScorerServer
from conftest import bakeoff

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
ENDLESS = 256 * 1024 * 1024
"""What an endless mode sends at most here (the scorer must stop far sooner)."""


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileScorerServer]:
    """The hostile scorer server and a healthy fake provider, on a loop in a daemon thread."""
    server = HostileScorerServer(hostile_bytes=ENDLESS)
    healthy = FakeServer(FakeConfig(markers=False))
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def start() -> None:
        await server.start()
        server.healthy = await healthy.start()  # type: ignore[attr-defined]
        ready.set()

    async def stop() -> None:
        await server.stop()
        await healthy.stop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield server
    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)


def _score(server: HostileScorerServer, mode: str, **kw) -> None:
    """Build the scorer the lineup would (vLLM detected by its /tokenize) and score REPLY."""
    scorer = http_reference_scorer(server.base_url(mode), "m", **kw)
    if isinstance(scorer, VllmReferenceScorer):
        prompt = scorer.prompt_tokens(QUESTION)
        scorer.score_many([(prompt, REPLY), (prompt, " Paris.")])
    scorer.score(scorer.prompt_tokens(QUESTION), REPLY)


def _refused(server: HostileScorerServer, mode: str, **kw) -> str:
    with pytest.raises(ReferenceScorerError) as e:
        _score(server, mode, **kw)
    assert isinstance(e.value, AuditError)
    return str(e.value)


def test_the_healthy_dialects_score(hostile):
    """Outside its hostile route each mode's server scores right: a failure below is the mode's."""
    echo = HttpReferenceScorer(hostile.base_url("drip"), "m")  # drip harms only completions
    assert echo.chat_prompt(QUESTION).startswith("<|begin_of_text|>")
    vllm = http_reference_scorer(hostile.base_url("index_mixed"), "m")
    assert isinstance(vllm, VllmReferenceScorer)
    s = vllm.score(vllm.tokenize("The capital"), " of France")
    assert s.logprobs.tolist() == [-0.339, -1.204]
    ok = HttpReferenceScorer(hostile.base_url("secret_401"), "m", chat_template="{{ 'The' }}")
    with pytest.raises(ReferenceScorerError, match="answered 401"):
        ok.score(ok.prompt_tokens(QUESTION), " capital")


@pytest.mark.parametrize("mode", ["endless_body", "endless_error", "endless_tokenize"])
def test_an_endless_answer_is_cut_unread(hostile, mode):
    """An endless 200 is cut where the tokens sent cannot account for more (at most
    `max_body_bytes`, 64 MB; the vLLM probe's /tokenize included), an endless error body after
    4 KB: the server could send no more than that and the socket's buffers before the scorer
    hung up (it was made to send all 256 MB)."""
    says = _refused(hostile, mode)
    if mode == "endless_error":
        assert "answered 500" in says and len(says) < 500
    else:
        assert "bytes (what the tokens sent account for, at most max_body_bytes)" in says
    assert hostile.sent[mode] < 80 * 1024 * 1024


def test_a_flood_of_small_objects_is_refused_before_parsing(hostile):
    """60 MB of `{}` — 20 million objects, ~1.3 GB parsed — for a 30-token prompt: refused at
    what that many tokens' log-probabilities take (64 KB + 896 bytes a token), never parsed."""
    says = _refused(hostile, "logprobs_flood")
    assert "bytes (what the tokens sent account for" in says


def test_a_drip_ends_at_the_calls_deadline(hostile):
    """One byte every 0.25 s never trips a per-read timeout (it hung past 170 s at 120 s): the
    timeout is a deadline for the whole call."""
    says = _refused(hostile, "drip", timeout=2)
    assert "within the 2 s deadline" in says


@pytest.mark.parametrize(
    ("mode", "field"),
    [
        ("prompt_tokens_1e7", "usage.prompt_tokens is 10000000"),
        ("prompt_tokens_1e12", "usage.prompt_tokens is 1000000000000"),
        ("usage_list", "usage is [1] (type list), not an object"),
        ("prompt_tokens_string", "usage.prompt_tokens is 'lots' (type str), not an integer"),
        ("tokens_int", "choices[0].logprobs.tokens[0] is 0 (type int), not a string"),
        ("logprob_object", "choices[0].logprobs.token_logprobs[1] is {} (type dict)"),
        ("top_list", "choices[0].logprobs.top_logprobs[1]["),
        ("top_string", "choices[0].logprobs.top_logprobs[1]["),
        ("template_list", "the /apply-template answer is ["),
        ("html_200", "not strict JSON (an HTML page"),
        ("index_mixed", "choices[1].index is '1' (type str), not an integer"),
        ("neg_infinity", "not strict JSON"),
        ("nan_literal", "not strict JSON"),
        ("nan_string", "token_logprobs[1] is 'NaN' (type str), not a finite number"),
        ("inf_string", "token_logprobs[1] is '-inf' (type str), not a finite number"),
    ],
)
def test_a_wrong_answer_is_one_error_naming_the_field(hostile, mode, field):
    """Counts bounded by the text sent (10**7 prompt tokens built a 1.7 GB list; 10**12 a
    traceback), every field's type checked, strict JSON, finite numbers only."""
    says = _refused(hostile, mode)
    assert field in says, says
    if mode.startswith("prompt_tokens_1e"):
        assert "bounded by what was sent" in says


@pytest.mark.parametrize("key", ["sk-evil-SECRET-123", "EMPTY"])
def test_an_error_body_never_shows_the_scorers_key(hostile, key):
    """A 401 echoing `Bearer <key>` and the key: redacted, capped at a few hundred characters;
    a key too short to redact safely (vLLM's dummy `EMPTY`) drops the body instead."""
    url = hostile.base_url("secret_401")
    with_template = HttpReferenceScorer(url, "m", api_key=key, chat_template="{{ 'The' }}")
    with pytest.raises(ReferenceScorerError) as e:  # the 401 of /v1/completions itself
        with_template.score(with_template.prompt_tokens(QUESTION), " capital")
    for says in (str(e.value), _refused(hostile, "secret_401", api_key=key)):
        assert "answered 401" in says and key not in says and len(says) < 500, says
        if key == "EMPTY":
            assert "body not shown" in says
        else:
            assert "unauthorized: got Bearer ***; key ***" in says


def test_every_mode_is_in_a_test():
    tested = {"endless_body", "endless_error", "endless_tokenize", "drip", "secret_401"}
    tested |= {"logprobs_flood"}
    tested |= {
        m for m, _ in test_a_wrong_answer_is_one_error_naming_the_field.pytestmark[0].args[1]
    }
    assert tested == set(HOSTILE_SCORER)


def test_a_run_stops_classified_and_resumes(hostile, tmp_path):
    """Through the CLI: a run whose reference scores with NaN strings stops with one line naming
    the field (no traceback), keeps its calls, and offers `--resume`."""
    lineup = tmp_path / "l.yaml"
    lineup.write_text(
        "run: {suites: []}\nreference: ref\n"
        "audit: {regimes: [sampled], budget: 2, batch: 2, scorer: endpoint}\nendpoints:\n"
        f"  - {{name: ref, base_url: '{hostile.base_url('nan_string')}', model: m, stream: false}}\n"
        f"  - {{name: cand, base_url: '{hostile.healthy}', model: fake-model}}\n"
    )
    db = tmp_path / "b.db"
    r = bakeoff("run", "-c", str(lineup), "--db", str(db), "-q", timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "token_logprobs[1] is 'NaN' (type str), not a finite number" in r.stderr
    assert "--resume" in r.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM calls").fetchone()[0] > 0
