"""Rerun = run: `bakeoff audit --rerun` rebuilds exactly the analysis the run made — its stored
settings, its scorer's stored answers — and gives identical verdicts, with the scorer's server
gone; a re-analysis with other settings is stored beside the run's own, never over it."""

from __future__ import annotations

import asyncio
import json

from bakeoff.audit import reanalyse, run_audit
from bakeoff.lineups import parse_lineup
from bakeoff.plugins import resolve_lineup
from bakeoff.runs import RunOptions, create_run, execute
from bakeoff.store import Store
from conftest import FakeProc, bakeoff

LINEUP = """
reference: ref
run: {{suites: []}}
audit: {{regimes: [greedy], budget: 20, batch: 10, scorer: endpoint, prompts: "{prompts}"}}
endpoints:
  - {{name: ref, provider: vllm, base_url: "{url}", model: m}}
  - {{name: twin, provider: openai, base_url: "{url}", model: m}}
  - {{name: other, provider: fake, fake: {{mode: fixed, reply: "The capital of France is Rome."}}}}
"""


# the reference echoes the prompt; the other endpoint parts from it at " Rome", which the fake
# vLLM's toy model finds far less likely than " Paris" (a confident divergence of 4.48 nats)
PROMPTS = ["The capital of France is Paris, not Rome."]


def _audit(tmp_path, url):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS * 24))
    lineup = parse_lineup(LINEUP.format(url=url, prompts=prompts), resolve=resolve_lineup)
    db = tmp_path / "a.db"
    store = Store(db)
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    return store, db, run_id, lineup


def test_rerun_replays_the_scorer_and_gives_identical_verdicts(tmp_path):
    vllm = FakeProc("--persona", "vllm", "--model", "m")
    try:
        store, db, run_id, lineup = _audit(tmp_path, vllm.url)
    finally:
        vllm.stop()  # the scorer's server is gone: the rerun must not need it
    own = store.verdicts(run_id)
    assert own["other"].tests["greedy"].confident_differ > 0
    assert store.scorer_answers(run_id, "reference")
    analysis = store.analysis(run_id, "run")
    assert analysis is not None and analysis["settings"]["seed"] is not None
    assert analysis["scorers"]["reference"]["kind"] == "server"

    again = reanalyse(store, run_id, lineup)
    assert again.identical is True and again.differ == []
    assert again.analysis_id == "run" and again.computed == 0 and again.replayed > 0
    stated = {ep: v.to_json() for ep, v in own.items()}
    assert json.loads(json.dumps({ep: v.to_json() for ep, v in again.verdicts.items()})) == stated
    store.close()

    # the CLI, as a user runs it: identical, and the run's stored verdicts untouched
    r = bakeoff("audit", "--rerun", run_id, "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    assert "identical to the run's own analysis" in r.stderr
    assert json.loads(r.stdout)["verdicts"] == json.loads(json.dumps(stated))

    # another margin is another analysis, stored beside the run's own
    r = bakeoff("audit", "--rerun", run_id, "--db", str(db), "--set", "margin=50", "--json")
    assert r.returncode == 0, r.stderr
    other_id = json.loads(r.stdout)["analysis"]
    assert other_id != "run"
    store = Store(db)
    assert store.verdicts(run_id) == own
    beside = store.analysis(run_id, other_id)
    assert beside is not None and beside["settings"]["margin"] == 50
    g = beside["verdicts"]["other"]["tests"]["greedy"]
    assert (
        g["margin"] == 50 and g["confident_differ"] < own["other"].tests["greedy"].confident_differ
    )
    assert {a["id"] for a in store.analyses(run_id)} == {"run", other_id}
    store.close()
    r = bakeoff("audit", "analyses", run_id, "--db", str(db))
    assert r.returncode == 0 and other_id in r.stdout and "'margin': 50" in r.stdout
    r = bakeoff("audit", "analyses", run_id, "--db", str(db), "--analysis", other_id, "--json")
    assert json.loads(r.stdout)["verdicts"] == beside["verdicts"]


def _rewrite(src, dst, name, edit, *, fix_manifest=False):
    """A copy of a bundle with one member's bytes edited (and its manifest entry, if asked)."""
    import hashlib
    import io
    import tarfile

    with tarfile.open(src, "r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar}
    files[name] = edit(files[name])
    if fix_manifest:
        manifest = json.loads(files["MANIFEST.json"])
        manifest[name] = hashlib.sha256(files[name]).hexdigest()
        files["MANIFEST.json"] = json.dumps(manifest, sort_keys=True).encode()
    with tarfile.open(dst, "w:gz") as tar:
        for n, b in files.items():
            info = tarfile.TarInfo(n)
            info.size = len(b)
            tar.addfile(info, io.BytesIO(b))


def test_a_bundle_verifies_alone_and_one_changed_character_fails(tmp_path):
    vllm = FakeProc("--persona", "vllm", "--model", "m")
    try:
        store, db, run_id, _ = _audit(tmp_path, vllm.url)
    finally:
        vllm.stop()
    seed = store.analysis(run_id, "run")["settings"]["seed"]
    store.close()
    bundle = tmp_path / "audit.tar.gz"
    r = bakeoff("audit", "bundle", run_id, "-o", str(bundle), "--db", str(db))
    assert r.returncode == 0, r.stderr
    root = r.stdout.split("bundle hash ")[1].split()[0]
    db.unlink()  # verify needs no database

    from bakeoff.audit._bundle import commitment

    r = bakeoff("audit", "verify", str(bundle), "--commitment", commitment(seed))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"bundle hash {root}" in r.stdout and "verified" in r.stdout
    assert "every prompt" not in r.stdout  # a prompts file: not rebuilt from the seed
    assert "the seed matches the published commitment" in r.stdout
    r = bakeoff("audit", "verify", str(bundle), "--commitment", commitment(seed + 1))
    assert r.returncode == 1 and "does not match the published commitment" in r.stderr

    def one_char(b: bytes) -> bytes:
        assert b"is Rome." in b
        return b.replace(b"is Rome.", b"is Rome!", 1)

    edited = tmp_path / "edited.tar.gz"
    _rewrite(bundle, edited, "calls.jsonl", one_char)
    r = bakeoff("audit", "verify", str(edited))
    assert r.returncode == 1 and "calls.jsonl: its SHA-256 is not the manifest's" in r.stderr
    # the manifest rewritten to match: the bundle's hash is no longer the published one, and
    # the verdicts recomputed from the edited replies are not the ones the bundle states
    _rewrite(bundle, edited, "calls.jsonl", one_char, fix_manifest=True)
    r = bakeoff("audit", "verify", str(edited))
    assert r.returncode == 1 and root not in r.stdout
    assert "the audit's scorer never saw it" in r.stderr
    # a reply the scorer did see, put where another was: the recomputed verdict differs

    def swap(b: bytes) -> bytes:
        rows = [json.loads(x) for x in b.splitlines()]
        other = [r for r in rows if r["endpoint"] == "other"]
        twin = next(r for r in rows if r["endpoint"] == "twin")
        other[0]["output_text"] = twin["output_text"]
        return b"".join(json.dumps(r).encode() + b"\n" for r in rows)

    _rewrite(bundle, edited, "calls.jsonl", swap, fix_manifest=True)
    r = bakeoff("audit", "verify", str(edited))
    assert r.returncode == 1
    assert "other: the verdict recomputed from the bundle is not the one it states" in r.stderr


GENERATED = """
reference: ref
run: {{suites: []}}
audit: {{regimes: [greedy], budget: 10, batch: 10{seed}}}
endpoints:
  - {{name: ref, provider: fake, fake: {{mode: echo}}}}
  - {{name: twin, provider: fake, fake: {{mode: echo}}}}
"""


def _prompts_of(tmp_path, name, seed=""):
    lineup = parse_lineup(GENERATED.format(seed=seed))
    store = Store(tmp_path / f"{name}.db")
    run_id = create_run(store, lineup)

    async def after(session):
        await run_audit(session, lineup.audit)

    asyncio.run(execute(store, run_id, RunOptions(use_cache=False), after=after))
    rows = store.items(run_id, "fidelity.greedy")
    return [json.loads(r["input_json"])["messages"][0]["content"] for r in rows], store, run_id


def test_two_audits_send_different_prompts_unless_a_seed_is_given(tmp_path):
    a, store, run_id = _prompts_of(tmp_path, "a")
    b, _, _ = _prompts_of(tmp_path, "b")
    assert len(a) == len(b) == 10 and not set(a) & set(b)
    c, _, _ = _prompts_of(tmp_path, "c", ", seed: 42")
    d, _, _ = _prompts_of(tmp_path, "d", ", seed: 42")
    assert c == d and not set(c) & set(a)
    # the drawn seed is stored with the run: its bundle rebuilds every prompt from it
    bundle = tmp_path / "a.tar.gz"
    from bakeoff.audit._bundle import verify_bundle, write_bundle

    write_bundle(store, run_id, bundle)
    v = verify_bundle(bundle)
    assert v.ok, v.problems
    assert "every prompt rebuilt from the seed" in v.checked


def test_the_prompt_space_is_not_a_few_patterns():
    """Fixed templates around a topic match one regex each; here no opening and no shape
    dominates: among 1,000 prompts of one seed, the most common first three words cover under
    8% and the most common last word under 15%, and two seeds share no prompt."""
    from collections import Counter

    from bakeoff.suites._prompt_space import draw_prompts

    ps = draw_prompts(1, 1000)
    assert len(set(ps)) == 1000
    heads = Counter(" ".join(p.lower().split()[:3]) for p in ps)
    assert heads.most_common(1)[0][1] < 80
    assert len(heads) > 300
    tails = Counter(p.split()[-1] for p in ps)
    assert tails.most_common(1)[0][1] < 150
    assert not set(ps) & set(draw_prompts(2, 1000))
