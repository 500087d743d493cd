"""The HTTP reference scorer on vLLM: against `bakeoff fake-server --persona vllm`, which answers
`/v1/completions` (echo, `prompt_logprobs`), `/tokenize` and `/detokenize` in vLLM's documented
shapes with a toy model whose log-probabilities are stated (`bakeoff.fake._vllm`)."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from bakeoff.audit import AuditError, first_divergence, run_audit, scorer_factory_for
from bakeoff.audit._scorer import HttpReferenceScorer, ReferenceScorerError
from bakeoff.audit._vllm_scorer import VllmReferenceScorer, http_reference_scorer
from bakeoff.fake import _vllm as toy
from bakeoff.lineups import parse_lineup
from bakeoff.plugins import resolve_lineup
from bakeoff.runs import RunOptions, create_run, execute
from bakeoff.store import Store
from conftest import FakeProc

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    """One fake vLLM server for the module, in its own process, logging every request."""
    log = tmp_path_factory.mktemp("vllm") / "log.jsonl"
    proc = FakeProc("--persona", "vllm", "--model", "m", log=log)
    yield proc
    proc.stop()


def _requests(proc: FakeProc, path: str) -> list[dict]:
    assert proc.log is not None
    rows = [json.loads(line) for line in proc.log.read_text().splitlines()]
    return [r for r in rows if r["path"] == path]


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_fake_answers_in_vllms_shapes(vllm):
    """What the scorer relies on, as vLLM documents it: token ids from /tokenize (BOS for a
    prompt, the chat template's own for messages), echo-only scoring at max_tokens 0, one
    prompt_logprobs entry per prompt token keyed by token id, the first null."""
    root = vllm.url.removesuffix("/v1")
    status, tok = _post(root + "/tokenize", {"model": "m", "prompt": "The capital"})
    assert status == 200 and set(tok) == {"count", "max_model_len", "tokens", "token_strs"}
    assert tok["tokens"][0] == toy.BOS and tok["count"] == len(tok["tokens"]) == 3
    _, chat = _post(root + "/tokenize", {"model": "m", "messages": QUESTION})
    assert chat["tokens"].count(toy.BOS) == 1  # the template's BOS, no second one
    _, text = _post(root + "/detokenize", {"model": "m", "tokens": chat["tokens"]})
    assert text["prompt"].startswith("<|begin_of_text|><|start_header_id|>user")

    body = {"model": "m", "prompt": tok["tokens"], "echo": True, "max_tokens": 0, "logprobs": 2}
    status, out = _post(vllm.url + "/completions", body)
    assert status == 200 and out["usage"]["completion_tokens"] == 0
    c = out["choices"][0]
    plp = c["prompt_logprobs"]  # echo turns `logprobs` into prompt log-probabilities
    assert len(plp) == 3 and plp[0] is None
    assert plp[2][str(tok["tokens"][2])] == {
        "logprob": -0.25,
        "rank": 1,
        "decoded_token": " capital",
    }
    assert c["logprobs"]["token_logprobs"] == [None, -12.0, -0.25]
    assert c["logprobs"]["tokens"] == ["<|begin_of_text|>", "The", " capital"]
    assert c["logprobs"]["top_logprobs"][2] == {" capital": -0.25, " city": -2.0}
    # vLLM's 400s: no generation without echo, at most --max-logprobs (20)
    status, err = _post(vllm.url + "/completions", {**body, "echo": False, "prompt_logprobs": 2})
    assert status == 400 and "max_tokens must be at least 1" in err["error"]["message"]
    status, _ = _post(vllm.url + "/completions", {**body, "logprobs": 21})
    assert status == 400


def test_alignment_on_a_known_sentence(vllm):
    """ " of" after "The capital": each completion token is scored by the entry at its own
    position, given the prompt before it — the fake's stated numbers, exactly. One position off
    reads " capital" after "The" (−0.25) or " France" after " of" (−1.204) instead."""
    scorer = http_reference_scorer(vllm.url, "m")
    assert isinstance(scorer, VllmReferenceScorer)  # detected by its /tokenize
    prompt = scorer.tokenize("The capital")
    s = scorer.score(prompt, " of France is Paris.")
    assert s.pieces == [" of", " France", " is", " Paris", "."]
    assert s.tokens == scorer.tokenize(" of France is Paris.")  # the boundary: prompt + completion
    assert s.logprobs.tolist() == [-0.339, -1.204, -0.105, -0.02, -0.05]
    # vLLM's own ranks (" the" is likelier after " of"), and the PIT from the top-k mass
    assert s.ranks.tolist() == [0, 1, 0, 0, 0]
    assert s.pit.min() >= 0 and s.pit.max() <= 1 and s.pit[1] >= math.exp(-0.916)
    # a prompt whose last token is not " capital": the first number changes with it
    other = scorer.score(scorer.tokenize("The city"), " of France is Paris.")
    assert other.logprobs[0] == toy.FILLER.get(" of", toy.UNSEEN) == -12.0
    assert other.logprobs[1:].tolist() == s.logprobs[1:].tolist()


def test_the_prompt_is_the_chat_endpoints_tokens_one_bos(vllm):
    """The prompt is what vLLM's chat endpoint feeds the model (/tokenize with the messages: the
    template's BOS, none added); sent as text to /v1/completions it would get a second BOS."""
    scorer = VllmReferenceScorer(vllm.url, "m")
    root = vllm.url.removesuffix("/v1")
    _, chat = _post(root + "/tokenize", {"model": "m", "messages": QUESTION})
    prompt = scorer.prompt_tokens(QUESTION)
    assert prompt == chat["tokens"] and prompt.count(toy.BOS) == 1
    s = scorer.score(prompt, "The capital of France is Paris.")
    # "The" after the template's last "\n\n", then the sentence's own bigrams
    assert s.logprobs.tolist() == [-0.7, -0.25, -0.339, -1.204, -0.105, -0.02, -0.05]
    generic = HttpReferenceScorer(vllm.url, "m")  # the echo of text: BOS twice
    assert len(generic.prompt_tokens(QUESTION)) == len(prompt) + 1


def test_characters_split_over_tokens_stay_aligned(vllm):
    """vLLM decodes each token alone, so a character split over byte tokens reads U+FFFD; by
    token ids the completion's tokens and numbers are still the right ones."""
    scorer = VllmReferenceScorer(vllm.url, "m")
    completion = " Paris café ☕."  # " Paris", 6 bytes of " café", 4 of " ☕", "."
    s = scorer.score(scorer.tokenize("The capital of France is"), completion)
    ids = scorer.tokenize(completion)
    assert s.tokens == ids and len(s.logprobs) == len(ids) == 12
    assert s.logprobs[0] == -0.02 and s.logprobs[-1] == toy.FILLER["."]
    assert "\ufffd" in s.pieces


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("no_prompt_logprobs", "answered no `prompt_logprobs`"),
        ("null_prompt_logprob", "only the first entry may be null"),
        ("short_prompt_logprobs", "entries for the"),
        ("shifted_prompt_logprobs", "prompt_logprobs[0] is not null"),
        ("other_tokenizer", "tokenizer is not the one"),
    ],
)
def test_an_answer_in_another_shape_is_a_classified_error(vllm, fault, says):
    """Never a crash, never a silently shifted number: an audit error naming what is wrong."""
    scorer = VllmReferenceScorer(vllm.url, "m")
    messages = [{"role": "user", "content": f"Tell me [[fault:{fault}]]"}]
    with pytest.raises(ReferenceScorerError) as e:
        scorer.score(scorer.prompt_tokens(messages), " of France")
    assert says in str(e.value)
    assert isinstance(e.value, AuditError)  # a run stops with it, calls kept (RunError)


def test_an_unreachable_server_a_wrong_model_and_unknown_ids_are_classified(vllm):
    dead = VllmReferenceScorer("http://127.0.0.1:9/v1", "m", timeout=2)
    with pytest.raises(ReferenceScorerError):
        dead.tokenize("x")
    with pytest.raises(ReferenceScorerError, match=r"answered 404.*does not exist"):
        VllmReferenceScorer(vllm.url, "not-served").tokenize("x")
    with pytest.raises(ReferenceScorerError, match="answered 400"):
        VllmReferenceScorer(vllm.url, "m").score([toy.BOS, 10**9], "x")


def test_a_vllm_that_refuses_max_tokens_0_is_scored_with_1(vllm):
    """vLLM before echo-only scoring wants max_tokens ≥ 1: one token is generated, ignored; the
    prompt log-probabilities are the same."""
    scorer = VllmReferenceScorer(vllm.url, "m")
    prompt = scorer.tokenize("[[fault:old_max_tokens]] The capital")
    assert scorer.score(prompt, " of France").logprobs.tolist() == [-0.339, -1.204]
    assert scorer.max_tokens == 1


def test_batched_scoring_is_fewer_requests_same_numbers(vllm):
    """score_many sends `batch` prompts per request (vLLM schedules them together); score()
    then answers from memory with the numbers one request per sample gives."""
    pairs = []
    one = VllmReferenceScorer(vllm.url, "m", batch=1)
    for i, word in enumerate(["France", "Italy", "Spain", "Paris", "Rome", "Madrid", "it"]):
        pairs.append((one.tokenize(f"The capital of {word}"), f" is Paris{'.' * i}"))
    many = VllmReferenceScorer(vllm.url, "m", batch=3)
    before = len(_requests(vllm, "/v1/completions"))
    many.score_many(pairs)
    assert len(_requests(vllm, "/v1/completions")) - before == 3  # ceil(7 / 3)
    for prompt, completion in pairs:
        a, b = one.score(prompt, completion), many.score(prompt, completion)
        assert a.tokens == b.tokens and np.array_equal(a.logprobs, b.logprobs)
    assert len(_requests(vllm, "/v1/completions")) - before == 3 + 7


def test_greedy_divergence_is_found_by_token(vllm):
    """The greedy test's first differing token and the reference's margin there: " France"
    (−1.204) against " Italy" (−2.303). The echo scorer gives token ids too (by text): before, it
    numbered tokens 0, 1, 2… and two outputs of one length never parted."""
    for scorer in (VllmReferenceScorer(vllm.url, "m"), HttpReferenceScorer(vllm.url, "m")):
        prompt = scorer.prompt_tokens(QUESTION)
        d = first_divergence(scorer, prompt, "The capital of France", "The capital of Italy")
        assert d is not None and d.token == 3, type(scorer)
        assert d.reference_piece == " France" and d.candidate_piece == " Italy"
        assert abs(d.margin - (2.303 - 1.204)) < 1e-9


def test_the_documented_recipe_lineup_scores_on_vllm(vllm, monkeypatch):
    """docs/FIDELITY.md's lineup for a vLLM deployment, pointed at the fake: the vLLM scorer,
    batched as it says, with the key from the variable it names."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "FIDELITY.md").read_text()
    recipe = doc[doc.index("## Scoring on a vLLM deployment") :]
    block = recipe[recipe.index("```yaml\n") + 8 : recipe.index("```\n", recipe.index("```yaml"))]
    monkeypatch.setenv("VLLM_API_KEY", "sk-test")
    assert "model: meta-llama/Llama-3.1-70B-Instruct " in block  # the fake serves "m"
    block = block.replace("meta-llama/Llama-3.1-70B-Instruct ", "m ")
    block = block.replace("http://gpu-head:8000/v1", vllm.url)
    lineup = parse_lineup(block, resolve=resolve_lineup)
    scorer = scorer_factory_for(lineup, lineup.audit)()
    assert isinstance(scorer, VllmReferenceScorer) and scorer.batch == 16
    assert scorer._headers["Authorization"] == "Bearer sk-test"
    assert scorer.score(scorer.tokenize("The capital"), " of").logprobs.tolist() == [-0.339]


def test_the_lineup_picks_the_vllm_scorer(vllm, fake_proc):
    """`audit.scorer: endpoint` on a `provider: vllm` reference scores by token ids, batched at
    `audit.scorer_batch`; on a server that is not vLLM, by the generic echo."""
    text = f"""
reference: ref
audit: {{regimes: [sampled], scorer: endpoint, scorer_batch: 8}}
endpoints:
  - {{name: ref, provider: vllm, base_url: "{vllm.url}", model: m}}
  - {{name: other, provider: openai, base_url: "{vllm.url}", model: m}}
"""
    lineup = parse_lineup(text, resolve=resolve_lineup)
    scorer = scorer_factory_for(lineup, lineup.audit)()
    assert isinstance(scorer, VllmReferenceScorer) and scorer.batch == 8
    plain = fake_proc()  # the fake without the vLLM persona: no /tokenize
    lineup = parse_lineup(
        text.replace("provider: vllm", "provider: openai"), resolve=resolve_lineup
    )
    lineup.endpoints[0].base_url = plain.url
    assert type(scorer_factory_for(lineup, lineup.audit)()) is HttpReferenceScorer


def test_a_sampled_audit_scores_on_vllm(vllm, tmp_path):
    """A whole sampled audit with the reference on vLLM: every sample scored under the toy model,
    in batched requests, the candidate's mean log-probability the stated numbers' mean."""
    text = f"""
reference: ref
run: {{suites: []}}
audit: {{regimes: [sampled], budget: 6, batch: 6, scorer: endpoint, scorer_batch: 4}}
endpoints:
  - {{name: ref, provider: vllm, base_url: "{vllm.url}", model: m}}
  - {{name: other, provider: fake, fake: {{mode: fixed, reply: "The capital of France is Paris."}}}}
"""
    lineup = parse_lineup(text, resolve=resolve_lineup)
    store = Store(tmp_path / "a.db")
    run_id = create_run(store, lineup)
    before = len(_requests(vllm, "/v1/completions"))

    async def after(session):
        await run_audit(session, lineup.audit)

    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    sampled = store.verdicts(run_id)["other"].tests["sampled"]
    assert sampled.n == 6
    stated = [-0.7, -0.25, -0.339, -1.204, -0.105, -0.02, -0.05]
    assert sampled.mean_logprob_candidate == round(float(np.mean(stated)), 4)
    assert sampled.mean_logprob_reference < -5  # its echoes: mostly bytes the toy never saw
    # 12 distinct samples (6 echoes, 6 prompts × one sentence), 4 per request, scored once
    scoring = _requests(vllm, "/v1/completions")[before:]
    assert len([r for r in scoring if "prompt_logprobs" in r["params"]]) == 3


def test_the_echo_scorer_on_a_server_without_echo_is_a_classified_error(fake_proc):
    """The generic echo scorer on a server that answers completions without log-probabilities:
    an audit error saying so (it was a TypeError)."""
    plain = fake_proc()
    scorer = HttpReferenceScorer(plain.url, "m", chat_template="{{ messages[0]['content'] }}")
    with pytest.raises(ReferenceScorerError, match="no echo log-probabilities"):
        scorer.prompt_tokens(QUESTION)
