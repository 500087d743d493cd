"""Rough edges a user meets (issue #32, items 6, 8 and 10): each is one clear line and a hint,
never a traceback nor a silent wrong answer."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import ROOT, bakeoff
from uirun import report_pages


def _chat_lineup(tmp_path: Path, recs: list[dict], extra: str = "") -> Path:
    p = tmp_path / "chat.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [mine]}\n"
        f"datasets:\n  - {{name: mine, path: chat.jsonl, messages: messages{extra}}}\n"
        "endpoints:\n  - {name: f, provider: fake, fake: {mode: fixed, reply: 'paris.'}}\n"
    )
    return lu


def _turns(*roles_contents: tuple[str, str]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in roles_contents]}


def test_a_chat_record_without_a_final_assistant_turn_is_refused_with_its_line(tmp_path):
    recs = [
        _turns(("user", "Capital of France?"), ("assistant", "Paris")),
        _turns(("user", "Capital of Spain?")),  # no answer: was scored 0 with `expected: null`
    ]
    lu = _chat_lineup(tmp_path, recs)
    r = bakeoff("run", "-c", str(lu), "--db", str(tmp_path / "b.db"), "--no-report")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"{tmp_path / 'chat.jsonl'}:2: the conversation does not end with an assistant turn" in (
        r.stderr
    )
    assert "`target:`" in r.stderr  # the hint: where else the answer can come from
    assert not (tmp_path / "b.db").exists()
    # a named field gives the answer instead
    recs[1]["answer"] = "Madrid"
    recs[0]["answer"] = "Paris"
    lu = _chat_lineup(tmp_path, recs, ", target: answer")
    r = bakeoff("run", "-c", str(lu), "--db", str(tmp_path / "b.db"), "--no-report", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)["endpoints"][0]["suites"]["mine"]
    assert (s["correct"], s["n"]) == (1, 2)  # 'paris.' matches 'Paris'; not 'Madrid'
    # a null answer field is no answer either (it was scored against the text "None")
    recs[1]["answer"] = None
    lu = _chat_lineup(tmp_path, recs, ", target: answer")
    r = bakeoff("suites", "show", "mine", "-l", str(lu))
    assert r.returncode != 0 and "chat.jsonl:2: field 'answer' is null" in r.stderr


def test_exact_states_what_it_ignores_and_strict_ignores_nothing(tmp_path):
    recs = [_turns(("user", "Capital of France?"), ("assistant", "Paris"))]
    lu = _chat_lineup(tmp_path, recs)
    listed = bakeoff("suites", "-l", str(lu), env={"COLUMNS": "300"})
    assert listed.returncode == 0, listed.stderr
    assert "ignoring case" in " ".join(listed.stdout.split())  # the table wraps the description
    report = tmp_path / "r.html"
    r = bakeoff("run", "-c", str(lu), "--db", str(tmp_path / "a.db"), "--report", str(report))
    assert r.returncode == 0, r.stderr[-2000:]
    # the item page's score detail says how it compared
    pages = report_pages(report)
    item = next(v["html"] for k, v in pages.items() if "/item?" in k and "suite=mine" in k)
    assert "exact: got &#39;paris&#39;; compared ignoring case" in item

    lu = _chat_lineup(tmp_path, recs, ", strict: true")
    listed = bakeoff("suites", "-l", str(lu), env={"COLUMNS": "300"})
    assert "byte for byte" in " ".join(listed.stdout.split())
    r = bakeoff("run", "-c", str(lu), "--db", str(tmp_path / "s.db"), "--no-report", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["endpoints"][0]["suites"]["mine"]["score"] == 0.0

    lu.write_text(
        lu.read_text().replace("messages: messages", "messages: messages, scorer: numeric")
    )
    r = bakeoff("run", "-c", str(lu), "--db", str(tmp_path / "n.db"), "--no-report")
    assert r.returncode != 0 and "`strict` is for scorer: exact" in r.stderr


def _without(module: str, code: str) -> subprocess.CompletedProcess:
    """Python as a user without `module` installed runs it: the import fails as it would."""
    guard = f"import sys; sys.modules[{module!r}] = None\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", guard + code], capture_output=True, text=True, env=env, timeout=120
    )


def _extra_named(message: str) -> list[str]:
    """The packages of the extra `pip install 'bakeoff[X]'` in `message` names."""
    m = re.search(r"pip install 'bakeoff\[(\w+)\]'", message)
    assert m, message
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=\[ ]", d)[0] for d in extras["optional-dependencies"][m.group(1)]]


def test_a_missing_optional_package_names_the_extra_that_installs_it(tmp_path):
    lu = tmp_path / "l.yaml"
    lu.write_text("run: {suites: [arith], limit: 2}\nendpoints:\n  - {name: f, provider: fake}\n")
    db = tmp_path / "b.db"
    r = bakeoff("run", "-c", str(lu), "--db", str(db), "--no-report")
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "calls.parquet"
    cli = "from bakeoff.cli import main; sys.argv = ['bakeoff', *sys.argv[1:]]; main()\n"
    r = _without("pyarrow", f"import sys; sys.argv[1:] = ['export', 'last', '--db', {str(db)!r},"
                 f" '-o', {str(out)!r}]\n" + cli)  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "pyarrow" in _extra_named(r.stderr)
    r = _without("pandas", f"import bakeoff; bakeoff.load('last', db={str(db)!r})")
    assert "bakeoff.load needs pandas" in r.stderr
    assert "pandas" in _extra_named(r.stderr.strip().splitlines()[-1])


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    """The error a command ended with: exit 2, one line, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_fake_server_on_a_busy_port_says_so_in_one_line(fake_proc):
    first = fake_proc()
    port = first.url.split(":")[2].split("/")[0]
    line = _one_line_error(bakeoff("fake-server", "--port", port, timeout=60))
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line


def test_a_fault_without_its_probability_is_refused():
    line = _one_line_error(
        bakeoff("fake-server", "--port", "0", "--fault", "rate_limit", timeout=60)
    )
    assert "NAME=PROBABILITY" in line and "rate_limit=0.1" in line
    line = _one_line_error(bakeoff("fake-server", "--port", "0", "--fault", "rate_limit=2"))
    assert "from 0 to 1" in line


def test_run_inside_a_running_event_loop_points_to_arun(tmp_path):
    """As in Jupyter: `bakeoff.run()` under a running loop is one RunError naming `arun`, before
    any coroutine is made (no "never awaited" warning) and before any database is."""
    import asyncio
    import gc
    import warnings

    import pytest

    import bakeoff as lib

    lu = tmp_path / "l.yaml"
    lu.write_text("run: {suites: [arith], limit: 2}\nendpoints:\n  - {name: f, provider: fake}\n")

    async def notebook_cell() -> None:
        lib.run(lu, db=tmp_path / "b.db", report=False)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(lib.RunError, match=r"await bakeoff\.arun\(\.\.\.\)"):
            asyncio.run(notebook_cell())
        gc.collect()
    assert not [w for w in seen if "never awaited" in str(w.message)]
    assert not (tmp_path / "b.db").exists()
    # arun is the way there, and works
    summary = asyncio.run(lib.arun(lu, db=tmp_path / "b.db", report=False))
    assert summary.status == "complete"


def test_parse_lineup_takes_a_dict_and_refuses_other_types_clearly():
    import pytest

    from bakeoff.lineups import LineupError, parse_lineup

    lu = parse_lineup({"endpoints": [{"name": "a", "provider": "fake"}], "run": {"limit": 2}})
    assert lu.endpoints[0].name == "a" and lu.run.limit == 2
    with pytest.raises(LineupError, match="endpoints"):
        parse_lineup({"endpoints": []})
    with pytest.raises(TypeError, match=r"YAML text or a dict.*load_lineup"):
        parse_lineup(Path("l.yaml"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="YAML cannot hold"):
        parse_lineup({"endpoints": [{"name": object()}]})


def test_a_database_in_a_missing_directory_is_refused_not_made(tmp_path):
    lu = tmp_path / "l.yaml"
    lu.write_text("run: {suites: [arith], limit: 2}\nendpoints:\n  - {name: f, provider: fake}\n")
    typo = tmp_path / "nonexistent[old]" / "dir" / "x.db"  # brackets shown as they are
    line = _one_line_error(bakeoff("run", "-c", str(lu), "--db", str(typo), "--no-report"))
    assert f"no directory {typo.parent}" in line and "--db" in line
    line = _one_line_error(
        bakeoff("run", "-c", str(lu), "--no-report", env={"BAKEOFF_DB": str(typo)})
    )
    assert f"no directory {typo.parent}" in line
    assert not (tmp_path / "nonexistent[old]").exists()


UPSTREAMS = [
    {"name": "Alpha", "tag": "alpha/bf16", "quantization": "bf16", "context_length": 4096,
     "prompt_per_m": 0.1, "completion_per_m": 0.2},
    {"name": "Beta", "tag": "beta/fp8", "quantization": "fp8", "context_length": 4096,
     "prompt_per_m": 0.05, "completion_per_m": 0.1},
]  # fmt: skip


def test_openrouter_discovery_says_what_a_404_lacks(tmp_path, fake_proc):
    env = {"OPENROUTER_API_KEY": "sk-or-test-0123456789"}
    bare = fake_proc("--persona", "openrouter", "--model", "acme/smol")
    root = bare.url.removesuffix("/v1")
    line = _one_line_error(
        bakeoff("lineup", "openrouter", "acme/smol", "--base-url", root, env=env)
    )
    assert "HTTP 404" in line and "serve under /v1" in line
    line = _one_line_error(
        bakeoff("lineup", "openrouter", "acme/smol", "--base-url", bare.url, env=env)
    )
    assert "--upstreams FILE" in line  # the fake lists upstreams only when given them
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "fake-server --persona openrouter --model acme/smol --upstreams" in readme


def test_the_wrong_upstream_count_says_what_it_counts(tmp_path, fake_proc):
    (tmp_path / "ups.json").write_text(json.dumps(UPSTREAMS))
    srv = fake_proc("--persona", "openrouter", "--model", "acme/smol", "--upstreams",
                    str(tmp_path / "ups.json"), "--fault", "wrong_upstream=0.3", "--seed", "1")  # fmt: skip
    env = {"OPENROUTER_API_KEY": "sk-or-test-0123456789", "COLUMNS": "400"}
    lu = tmp_path / "l.yaml"
    r = bakeoff("lineup", "openrouter", "acme/smol", "--base-url", srv.url, "--suites", "arith",
                "-o", str(lu), env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lu.write_text(lu.read_text() + "audit: {budget: 10, batch: 10}\n")
    db = tmp_path / "b.db"
    r = bakeoff("run", "-c", str(lu), "--db", str(db), "--limit", "6", "--no-report", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    found = re.findall(r"(\d+) of (\d+) billed calls on a wrong upstream", r.stdout)
    shown = sorted((int(n), int(m)) for n, m in found)
    con = sqlite3.connect(db)
    rows = [*con.execute("SELECT endpoint, upstream FROM calls"),
            *con.execute("SELECT endpoint, upstream FROM side_calls")]  # fmt: skip
    stored = []
    for ep, name in {"alpha-bf16": "Alpha", "beta-fp8": "Beta"}.items():
        mine = [up for e, up in rows if e == ep]
        stored.append((sum(1 for up in mine if up and up != name), len(mine)))
    assert shown and shown == sorted(x for x in stored if x[0]), (shown, stored, r.stdout)
    assert all(m > 6 for _, m in shown)  # beside 6 suite calls: audit calls counted, and said
