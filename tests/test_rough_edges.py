"""Rough edges a user meets (issue #32, items 6, 8 and 10): each is one clear line and a hint,
never a traceback nor a silent wrong answer."""

from __future__ import annotations

import json
import os
import re
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


def test_exact_states_what_it_ignores_and_strict_ignores_nothing(tmp_path):
    recs = [_turns(("user", "Capital of France?"), ("assistant", "Paris"))]
    lu = _chat_lineup(tmp_path, recs)
    listed = bakeoff("suites", "-l", str(lu))
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
    listed = bakeoff("suites", "-l", str(lu))
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
