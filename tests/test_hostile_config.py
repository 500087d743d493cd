"""Configuration is data, never code: a template that reaches for Python, a YAML alias bomb and
absurd numbers are each a clear error naming the file and line, refused before the work they ask
for is done (measured in memory, which a loaded machine does not change, not in seconds); a key
rendered into a prompt is never stored; SIGTERM ends a run like Ctrl-C, at any phase."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import tracemalloc
from collections.abc import Callable

import pytest

from bakeoff.lineups import LineupError, parse_lineup
from bakeoff.lineups._loader import MAX_VALUES
from bakeoff.suites.datasets import DatasetError, DatasetSuite
from conftest import BAKEOFF, bakeoff, wait_for

KEY = "sk-hostile-config-" + "5e4d3c2b1a"


def _refused_within(mb: float, fn: Callable[[], object], error: type[Exception]) -> Exception:
    """`fn()` raises `error` having allocated at most `mb` MB at its peak (tracemalloc): the
    input was refused before the expansion it asks for was built. Memory, unlike seconds, does
    not depend on what else the machine runs."""
    tracemalloc.start()
    try:
        with pytest.raises(error) as e:
            fn()
        peak = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    assert peak < mb, f"peak {peak:.1f} MB: the input was expanded before it was refused"
    return e.value


def _dataset_suite(tmp_path, prompt: str) -> DatasetSuite:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "2+2?", "answer": "4"}\n')
    lineup = parse_lineup(
        "run: {suites: [mine]}\n"
        "datasets:\n"
        f"  - name: mine\n    path: {data}\n    prompt: {json.dumps(prompt)}\n"
        "    target: answer\n    scorer: exact\n"
        "endpoints:\n  - {name: fake, provider: fake}\n",
        "t.yaml",
    )
    return DatasetSuite(lineup.datasets[0])


SSTI = {
    "os.popen through lipsum's globals": "{{ lipsum.__globals__.os.popen('touch {marker}').read() }}",
    "os.environ through cycler": "{{ cycler.__init__.__globals__.os.environ }}",
    "the class hierarchy": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "a method that mutates": "{% set x = [] %}{{ x.append(1) }}",
    "a billion characters": "{{ 'a' * 1000000000 }}",
    "a huge power": "{{ 10 ** 100000000 }}",
}


@pytest.mark.parametrize("name", list(SSTI))
def test_a_template_never_runs_code(tmp_path, name):
    marker = tmp_path / "pwned"
    suite = _dataset_suite(tmp_path, SSTI[name].replace("{marker}", str(marker)))
    # refused, not rendered: 'a' * 10^9 is 1 GB, 10 ** 10^8 a 41 MB integer; the refusal
    # takes 0.02 MB
    e = _refused_within(8, lambda: suite.items(seed=0, n=1), DatasetError)
    assert f"{tmp_path / 'd.jsonl'}:1: dataset 'mine' prompt" in str(e)
    assert not marker.exists()


def test_an_ordinary_template_still_renders(tmp_path):
    suite = _dataset_suite(tmp_path, "Q: {{ question | upper }} {{ 'ab' * 3 }} {{ 2 ** 10 }}")
    assert suite.items(seed=0, n=1)[0].messages[-1]["content"] == "Q: 2+2? ababab 1024"


def test_yaml_alias_bomb_is_refused_fast(tmp_path):
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(rows) + "\nendpoints: []\n")
    assert len(f.read_bytes()) < 400  # 9^9 = 387 million values when expanded
    # refused at the budget's 100,000 values (17 MB at its peak, 0.4 s on a quiet 2-core
    # machine), not expanded to 387 million values (tens of GB, minutes)
    text = f.read_text()
    e = _refused_within(64, lambda: parse_lineup(text, str(f)), LineupError)
    assert f"{f}:1: the lineup expands to more than {MAX_VALUES} values" in str(e)
    r = bakeoff("run", "-c", str(f), "--db", str(tmp_path / "b.db"))
    assert r.returncode == 2 and f"{f}:1:" in r.stderr and "Traceback" not in r.stderr


def test_an_alias_used_sensibly_still_loads():
    lineup = parse_lineup(
        "defaults: &d {temperature: 0, max_tokens: 8}\n"
        "endpoints:\n"
        "  - {name: a, provider: fake, params: *d}\n"
        "  - {name: b, provider: fake, params: *d}\n"
    )
    assert [ep.params.max_tokens for ep in lineup.endpoints] == [8, 8]


ABSURD = {
    "retry: {backoff_max_s: 1e308}": "retry.backoff_max_s",
    "retry: {backoff_base_s: .inf}": "retry.backoff_base_s",
    "timeouts: {total: 1e308}": "timeouts.total",
    "timeouts: {stall: .nan}": "timeouts.stall",
    "params: {max_tokens: 100000000000}": "params.max_tokens",
    "rate_limit: {rpm: 1e300}": "rate_limit.rpm",
    "context: 1000000000000": "context",
    "fake: {ttft_ms: 1e308}": "fake.ttft_ms",
    "limits: {max_response_bytes: 1e300}": "limits.max_response_bytes",
    "limits: {max_event_bytes: 10}": "limits.max_event_bytes",
    # a misspelt field is an error, not a silent default (retry: {max_attempts: 1} ran 5 attempts)
    "retry: {max_attempts: 1}": "retry.max_attempts",
    "timeouts: {firsttoken: 5}": "timeouts.firsttoken",
    "limits: {max_bytes: 5}": "limits.max_bytes",
}


@pytest.mark.parametrize("field", list(ABSURD))
def test_absurd_numbers_are_refused_with_file_and_line(field):
    text = f"endpoints:\n  - name: a\n    provider: fake\n    {field}\n"
    with pytest.raises(LineupError) as e:
        parse_lineup(text, "l.yaml")
    assert f"l.yaml:4: endpoints[0].{ABSURD[field]}:" in str(e.value)


def test_a_huge_item_limit_is_refused_before_anything_is_built():
    text = "run: {limit: 5000000}\nendpoints:\n  - {name: a, provider: fake}\n"
    # refused by the field's bound (0.01 MB), before 5 million items could be planned
    e = _refused_within(8, lambda: parse_lineup(text, "l.yaml"), LineupError)
    assert "l.yaml:1: run.limit: Input should be less than or equal to 100000" in str(e)


def test_a_key_rendered_into_a_prompt_is_not_stored(tmp_path, fake_proc):
    """The template can only see the record's fields; a record that holds the key itself (pasted
    into the data) is scrubbed from the items table like from the calls."""
    srv = fake_proc()
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"question": f"what is {KEY}?", "answer": "x"}) + "\n")
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [mine], probe: false}\n"
        f"datasets:\n  - {{name: mine, path: {data}, prompt: '{{{{ question }}}}', "
        "target: answer, scorer: exact}\n"
        f"endpoints:\n  - {{name: ep, base_url: '{srv.url}', api_key_env: BAKEOFF_TEST_KEY}}\n"
    )
    db = tmp_path / "b.db"
    r = bakeoff("run", "-c", str(lu), "--db", str(db), "--no-report", env={"BAKEOFF_TEST_KEY": KEY})
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM items").fetchone()[0] == 1
    con.close()
    for path in tmp_path.iterdir():
        if path.name.startswith("b.db"):
            assert KEY.encode() not in path.read_bytes(), path


def _lineup(tmp_path, url: str, n: int = 30) -> str:
    f = tmp_path / "l.yaml"
    f.write_text(
        f"reference: ep\nrun: {{suites: [arith], limit: {n}, probe: false}}\n"
        f"endpoints:\n  - {{name: ep, base_url: '{url}', max_concurrency: 2}}\n"
    )
    return str(f)


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BAKEOFF, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )


def test_sigterm_mid_run_is_like_ctrl_c(tmp_path, fake_proc):
    srv = fake_proc("--ttft-ms", "400")
    lu, db = _lineup(tmp_path, srv.url), str(tmp_path / "b.db")
    p = _start(["run", "-c", lu, "--db", db, "-q", "--no-report"])

    def ok_calls() -> int:
        try:
            con = sqlite3.connect(db)
            return con.execute("SELECT count(*) FROM calls WHERE status='ok'").fetchone()[0]
        except sqlite3.Error:
            return 0

    wait_for(lambda: ok_calls() >= 3, timeout=60, interval=0.01)
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=30)
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr and "bakeoff run --resume" in stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    con.close()
    r = bakeoff("run", "-c", lu, "--db", db, "--json", "--no-report")
    assert r.returncode == 0 and "resuming unfinished run" in r.stderr
    assert json.loads(r.stdout)["endpoints"][0]["successes"] == 30


@pytest.mark.parametrize("after_s", [0.15, 0.3, 0.8, 1.5])
def test_sigterm_at_any_phase_exits_cleanly(tmp_path, fake_proc, after_s):
    """Import, lineup loading, run creation, the first calls: wherever it lands, exit 130 (or 0 if
    the work was already done) and no traceback. (Not before ~0.05 s: until the interpreter runs
    bakeoff's first line, SIGTERM's default action ends the process, before anything started.)"""
    srv = fake_proc("--ttft-ms", "50")
    p = _start(["run", "-c", _lineup(tmp_path, srv.url, 10), "--db", str(tmp_path / "b.db"), "-q"])
    time.sleep(after_s)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode in (130, 0), stderr
    assert "Traceback" not in stderr, stderr
    if p.returncode == 130:
        assert "interrupted" in stderr, (stdout, stderr)


def test_an_ignored_sigterm_stays_ignored(tmp_path, fake_proc):
    """A parent that ignores SIGTERM for its children (nohup-like) is obeyed."""
    srv = fake_proc("--ttft-ms", "20")
    p = subprocess.Popen(
        [*BAKEOFF, "run", "-c", _lineup(tmp_path, srv.url, 6), "--db", str(tmp_path / "b.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
        env={**os.environ, "COLUMNS": "200"},
    )
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--repeats", "0"], "--repeats 0: Input should be greater than or equal to 1"),
        (["run", "--limit", "0"], "--limit 0: Input should be greater than 0"),
        (["run", "--limit", "5000000"], "--limit 5000000: Input should be less than or equal to"),
        (["audit", "--budget", "1"], "--budget 1: Input should be greater than or equal to 2"),
    ],
)
def test_command_line_overrides_are_checked_like_the_file(tmp_path, fake_proc, args, message):
    """`--repeats 0` and `--budget 1` used to get through onto the validated lineup."""
    srv = fake_proc()
    r = bakeoff(*args, "-c", _lineup(tmp_path, srv.url, 3), "--db", str(tmp_path / "b.db"))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
