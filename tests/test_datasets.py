"""Your own data as a suite: every supported format loads to the same items, scorers judge them, and
a broken file gets an error naming the file and the line."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest

from bakeoff._pipeline import PREFLIGHT_PROMPT
from bakeoff.lineups import DatasetSpec, parse_lineup
from bakeoff.runs import RunOptions, create_run, execute, summarize
from bakeoff.store import Store
from bakeoff.suites.datasets import DatasetError, DatasetSuite
from conftest import bakeoff

RECORDS = [
    {
        "id": "q1",
        "question": "Which is a fruit?",
        "options": ["car", "apple", "stone"],
        "answer": "B",
    },
    {"id": "q2", "question": "Which is blue?", "options": ["sky", "grass", "sun"], "answer": 0},
    {
        "id": "q3",
        "question": "Which can fly?",
        "options": ["fish", "rock", "bird"],
        "answer": "bird",
    },
]
PROMPT = "{{ question }}\n{{ options }}\nAnswer with the letter."


def _spec(path: Path, **kw: object) -> DatasetSpec:
    base = {
        "name": "mine",
        "path": str(path),
        "prompt": PROMPT,
        "target": "answer",
        "choices": "options",
        "id": "id",
        "scorer": "choice",
    }
    return DatasetSpec.model_validate({**base, **kw})


def _write_all(tmp: Path) -> dict[str, Path]:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {}
    p = tmp / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    paths["jsonl"] = p
    table = pa.Table.from_pylist([{**r, "answer": str(r["answer"])} for r in RECORDS])
    pq.write_table(table, tmp / "d.parquet")
    paths["parquet"] = tmp / "d.parquet"
    ds = datasets.Dataset.from_list([{**r, "answer": str(r["answer"])} for r in RECORDS])
    ds.save_to_disk(str(tmp / "hf"))
    paths["hf"] = tmp / "hf"
    datasets.DatasetDict({"train": ds.select([0]), "test": ds}).save_to_disk(str(tmp / "hfdict"))
    paths["hfdict"] = tmp / "hfdict"
    return paths


def test_every_format_gives_the_same_items(tmp_path: Path) -> None:
    paths = _write_all(tmp_path)
    got = {}
    for fmt, p in paths.items():
        items = DatasetSuite(_spec(p)).items(seed=0)
        got[fmt] = [(it.id, it.messages, it.target) for it in items]
    first = got["jsonl"]
    assert [t for _, _, t in first] == ["B", "A", "C"]  # letter, index and option text all map
    assert "A. car\nB. apple\nC. stone" in first[0][1][0]["content"]
    for fmt, items in got.items():
        assert items == first, fmt


def test_csv_with_plain_fields(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["q", "a"])
        w.writerow(["What is 6 times 7?", "42"])
        w.writerow(["What is 10 minus 3?", "7"])
    spec = DatasetSpec(
        name="arith-csv", path=str(p), fields={"question": "q"}, target="a", scorer="numeric"
    )
    items = DatasetSuite(spec).items(seed=0)
    assert [it.messages[-1]["content"] for it in items] == [
        "What is 6 times 7?",
        "What is 10 minus 3?",
    ]


@pytest.mark.parametrize(
    ("content", "where", "what"),
    [
        (
            '{"id": "a", "question": "x", "options": ["1", "2"], "answer": "A"}\n{"id": "b", "question": "y"',
            ":2:",
            "not valid JSON",
        ),
        (
            '{"id": "a", "question": "x", "options": ["1", "2"], "answer": "A"}\n\n{"id": "b", "options": ["1", "2"], "answer": "A"}\n',
            ":3:",
            "prompt template",
        ),
        ('{"id": "a", "question": "x", "options": ["1", "2"]}\n', ":1:", "missing field 'answer'"),
        (
            '{"id": "a", "question": "x", "options": ["1", "2"], "answer": "Z"}\n',
            ":1:",
            "not an option",
        ),
        ("[1, 2]\n", ":1:", "JSON object"),
    ],
)
def test_broken_jsonl_names_file_and_line(
    tmp_path: Path, content: str, where: str, what: str
) -> None:
    p = tmp_path / "broken.jsonl"
    p.write_text(content)
    with pytest.raises(DatasetError) as e:
        DatasetSuite(_spec(p)).items(seed=0)
    assert f"{p}{where}" in str(e.value) and what in str(e.value)


def test_csv_missing_column_names_line(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("q,a\nfirst,1\nsecond\n")
    spec = DatasetSpec(name="c", path=str(p), fields={"question": "q"}, target="a", scorer="exact")
    with pytest.raises(DatasetError, match=rf"{p}:3: wrong number of columns"):
        DatasetSuite(spec).items(seed=0)


def test_dataset_suite_runs_against_fake(tmp_path: Path) -> None:
    p = _write_all(tmp_path)["jsonl"]
    replies = {
        "Which is a fruit?": "B",
        "Which is blue?": "The answer is (A).",
        "Which can fly?": "A",
    }
    script = {
        f"{q}\n"
        + "\n".join(f"{'ABC'[i]}. {o}" for i, o in enumerate(r["options"]))
        + "\nAnswer with the letter.": replies[q]
        for q, r in ((r["question"], r) for r in RECORDS)
    }
    (tmp_path / "script.json").write_text(json.dumps(script))
    prompt_yaml = json.dumps(PROMPT)
    lineup = parse_lineup(
        f"""
run: {{suites: [mine]}}
datasets:
  - {{name: mine, path: {p}, prompt: {prompt_yaml}, target: answer, choices: options, id: id, scorer: choice}}
endpoints:
  - name: fake
    provider: fake
    fake: {{mode: script, script_file: {tmp_path}/script.json}}
""",
        "t.yaml",
    )
    store = Store(tmp_path / "runs.db")
    run_id = create_run(store, lineup)
    asyncio.run(execute(store, run_id, RunOptions()))
    s = summarize(store, run_id)["endpoints"][0]["suites"]["mine"]
    assert (s["correct"], s["n"]) == (2, 3)


def test_cli_reports_a_broken_dataset(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"id": "a", "question": "x", "options": ["1", "2"], "answer": "A"}\n{oops}\n')
    lu = tmp_path / "lineup.yaml"
    lu.write_text(
        "run: {suites: [mine]}\n"
        "datasets:\n"
        "  - {name: mine, path: d.jsonl, prompt: '{{ question }}', target: answer, choices: options, scorer: choice}\n"
        "endpoints:\n  - {name: fake, provider: fake}\n"
    )
    r = bakeoff("run", "-c", str(lu), "--db", str(tmp_path / "runs.db"))
    assert r.returncode != 0
    assert f"{p}:2: not valid JSON" in r.stderr
    shown = bakeoff("suites", "show", "mine", "-l", str(lu))
    assert shown.returncode != 0 and f"{p}:2" in shown.stderr
    p.write_text('{"id": "a", "question": "x?", "options": ["1", "2"], "answer": "A"}\n')
    shown = bakeoff("suites", "show", "mine", "-l", str(lu), "--n", "1")
    assert shown.returncode == 0 and "x?" in shown.stdout


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("PASS", True),
        ("FAIL", False),
        ("Verdict: pass.", True),
        ("It could PASS, but FAIL", False),
        ("fail", False),
        ("not sure", None),
    ],
)
def test_judge_verdicts(text: str, want: bool | None) -> None:
    from bakeoff.suites.datasets import parse_verdict

    assert parse_verdict(text) is want


@pytest.mark.parametrize(("verdict", "score"), [("PASS", 1.0), ("FAIL", 0.0)])
def test_llm_judge_from_the_lineup_grades_replies(
    tmp_path: Path, verdict: str, score: float
) -> None:
    p = tmp_path / "qa.jsonl"
    p.write_text(
        '{"q": "Name a primary colour.", "a": "red"}\n{"q": "Name a planet.", "a": "Mars"}\n'
    )
    lineup = parse_lineup(
        f"""
run: {{suites: [open-qa], probe: false}}
datasets:
  - {{name: open-qa, path: {p}, fields: {{question: q}}, target: a, scorer: judge, judge: grader}}
endpoints:
  - {{name: model, provider: fake, fake: {{mode: fixed, reply: "Blue is one."}}}}
  - {{name: grader, provider: fake, fake: {{mode: fixed, reply: "{verdict}"}}}}
""",
        "t.yaml",
    )
    store = Store(tmp_path / "runs.db")
    run_id = create_run(store, lineup)
    asyncio.run(execute(store, run_id, RunOptions()))
    s = summarize(store, run_id)
    model = next(e for e in s["endpoints"] if e["name"] == "model")
    assert model["suites"]["open-qa"]["score"] == score and model["suites"]["open-qa"]["n"] == 2
    detail = store.db.execute(
        "SELECT s.detail FROM scores s JOIN calls c ON c.id = s.call_id WHERE c.endpoint = 'model'"
    ).fetchone()[0]
    assert detail.startswith("judge grader: " + verdict)


def test_judge_must_be_an_endpoint() -> None:
    from bakeoff.lineups import LineupError

    with pytest.raises(LineupError, match="judge 'nobody' is not an endpoint"):
        parse_lineup(
            "datasets:\n  - {name: d, path: x.jsonl, scorer: judge, judge: nobody}\n"
            "endpoints:\n  - {name: a, provider: fake}\n",
            "t.yaml",
        )


def test_a_scorer_that_raises_loses_no_call(tmp_path: Path) -> None:
    """A record whose target the scorer cannot use (here: a "schema" that is not JSON) makes the
    scorer raise: the call is kept, successful, with a failed `scorer_error` score saying why."""
    p = tmp_path / "broken.jsonl"
    p.write_text(
        json.dumps({"question": "Give me JSON.", "schema": "{not json"})
        + "\n"
        + json.dumps({"question": "Give me more JSON.", "schema": '{"type": "object"}'})
        + "\n"
    )
    lineup = parse_lineup(
        f"""
run: {{suites: [mine]}}
datasets:
  - {{name: mine, path: {p}, target: schema, scorer: json_schema}}
endpoints:
  - {{name: fake, provider: fake, fake: {{mode: fixed, reply: '{{"a": 1}}'}}}}
""",
        "t.yaml",
    )
    store = Store(tmp_path / "runs.db")
    run_id = create_run(store, lineup)
    asyncio.run(execute(store, run_id, RunOptions()))
    rows = store.db.execute(
        "SELECT c.status, s.scorer, s.passed, s.detail FROM calls c JOIN scores s ON s.call_id = c.id"
        " ORDER BY s.scorer"
    ).fetchall()
    assert [(r["status"], r["scorer"], r["passed"]) for r in rows] == [
        ("ok", "json_schema", 1),
        ("ok", "scorer_error", 0),
    ]
    assert "JSONDecodeError" in rows[1]["detail"]
    s = summarize(store, run_id)["endpoints"][0]
    assert s["calls"] == 2 and s["successes"] == 2 and s["suites"]["mine"]["correct"] == 1


# --- datasets as people have them (issue #21) ----------------------------------------------


def test_a_json_array_loads_and_a_bad_record_names_its_line(tmp_path: Path) -> None:
    p = tmp_path / "d.json"
    p.write_text(json.dumps(RECORDS, indent=2))
    assert [it.id for it in DatasetSuite(_spec(p)).items(seed=0)] == [
        "mine-q1",
        "mine-q2",
        "mine-q3",
    ]
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"id": "a", "question": "x", "options": [1, 2], "answer": "A"},\n  7\n]\n')
    with pytest.raises(DatasetError, match=rf"{bad}:3: a record must be a JSON object"):
        DatasetSuite(_spec(bad)).items(seed=0)


def test_every_shard_of_a_folder_and_a_glob_are_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {**r, "id": f"{r['id']}-{k}", "answer": str(r["answer"])} for k in range(2) for r in RECORDS
    ]
    d = tmp_path / "shards"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:3]), d / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[3:]), d / "train-00001-of-00002.parquet")
    assert len(DatasetSuite(_spec(d)).items(seed=0)) == 6  # both shards, not the first alone
    assert len(DatasetSuite(_spec(d / "train-*.parquet")).items(seed=0)) == 6
    with pytest.raises(DatasetError, match="no file matches"):
        DatasetSuite(_spec(d / "test-*.parquet")).items(seed=0)


def test_chat_format_records_send_their_messages_and_answer_with_the_last_turn(
    tmp_path: Path,
) -> None:
    p = tmp_path / "chat.jsonl"
    recs = [
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": f"What is {i} + {i}?"},
                      {"role": "assistant", "content": str(2 * i)}]}
        for i in range(4)
    ]  # fmt: skip
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    spec = DatasetSpec.model_validate(
        {"name": "chat", "path": str(p), "messages": "messages", "scorer": "numeric"}
    )
    items = DatasetSuite(spec).items(seed=0)
    assert [it.target for it in items] == ["0", "2", "4", "6"]
    assert items[1].messages == recs[1]["messages"][:2]  # the answer is not sent
    # read as chat under the default prompt too, when records have messages and no question
    auto = DatasetSpec.model_validate(
        {"name": "chat", "path": str(p), "scorer": "numeric", "target": "messages"}
    )
    assert DatasetSuite(auto).items(seed=0)[2].messages == recs[2]["messages"][:2]
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"messages": [{"content": "no role"}]}) + "\n")
    with pytest.raises(DatasetError, match=rf"{broken}:1: each message needs a `role`"):
        DatasetSuite(spec.model_copy(update={"path": str(broken)})).items(seed=0)


def test_limit_draws_a_seeded_sample_in_file_order(tmp_path: Path) -> None:
    p = tmp_path / "many.jsonl"
    p.write_text("".join(json.dumps({**RECORDS[0], "id": f"r{i:02d}"}) + "\n" for i in range(30)))
    suite = DatasetSuite(_spec(p))
    a, b = suite.items(seed=0, n=5), suite.items(seed=1, n=5)
    assert a == suite.items(seed=0, n=5) and [x.id for x in a] != [x.id for x in b]
    assert [x.id for x in a] == sorted(x.id for x in a)  # file order kept
    assert [x.id for x in a] != [f"mine-r{i:02d}" for i in range(5)]  # not the first five


def test_a_dataset_without_max_tokens_sends_the_lineups_default(tmp_path: Path, fake_proc) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    log = tmp_path / "server.jsonl"
    srv = fake_proc(log=log)
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "defaults: {temperature: 0, max_tokens: 16}\n"
        "run: {suites: [mine], probe: false}\n"
        f"datasets:\n  - {{name: mine, path: {p}, target: answer, choices: options,"
        f" scorer: choice, prompt: '{{{{ question }}}}'}}\n"
        f"endpoints:\n  - {{name: e, base_url: '{srv.url}'}}\n"
    )
    r = bakeoff("run", "-c", str(lu), "--db", str(tmp_path / "b.db"), "--no-report")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    sent = [r["params"]["max_tokens"] for r in rows if r["prompt"] != PREFLIGHT_PROMPT]
    assert sent == [16, 16, 16]


def test_a_hub_dataset_on_an_offline_machine_is_one_clear_error(
    tmp_path: Path, monkeypatch
) -> None:
    """`hf://org/name` loads from the Hugging Face hub where the machine is online; offline (forced
    here with HF_HUB_OFFLINE, as our CI is) it is a DatasetError naming it, not a traceback, and
    the lineup keeps the id as it is (not resolved as a path)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [hub]}\n"
        "datasets:\n  - {name: hub, path: 'hf://openai/gsm8k', target: answer, scorer: numeric}\n"
        "endpoints:\n  - {name: f, provider: fake}\n"
    )
    from bakeoff.lineups import load_lineup

    spec = load_lineup(lu).datasets[0]
    assert spec.path == "hf://openai/gsm8k"
    with pytest.raises(
        DatasetError, match=r"hf://openai/gsm8k: cannot load it from the Hugging Face hub"
    ):
        DatasetSuite(spec).items(seed=0)
