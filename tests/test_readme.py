"""The README says what bakeoff does (issue #32): its example lineup runs as written against the
fake providers answering as those providers do, and every command of "Using it" that can run
offline runs, exits 0 and prints no traceback. Left out, named: the long-lived servers (`ui`,
`fake-server`, `local up/status/down`), the hours-long calibration, `perf --ray` (a cluster:
tests/test_perf_ray.py) and `local variants | clean` (the model cache: tests/test_local.py)."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import ROOT, FakeProc, bakeoff

README = (ROOT / "README.md").read_text()


def _block(after: str, lang: str) -> str:
    start = README.index(f"```{lang}\n", README.index(after)) + len(lang) + 4
    return README[start : README.index("```", start)]


def test_the_readme_lineup_runs_against_fakes_that_answer_as_its_providers(tmp_path):
    """The lineup of "A lineup" — OpenRouter pinned to an upstream, Groq, a vLLM server — with
    each base URL pointed at a fake answering as that provider does; nothing else changed."""
    doc = yaml.safe_load(_block("### A lineup", "yaml"))
    upstreams = tmp_path / "upstreams.json"
    upstreams.write_text(
        '[{"name": "Together", "tag": "together", "quantization": "bf16",'
        ' "context_length": 131072, "prompt_per_m": 0.18, "completion_per_m": 0.18}]'
    )
    fakes = {
        "openrouter": FakeProc("--persona", "openrouter", "--upstreams", str(upstreams)),
        "groq": FakeProc("--persona", "groq"),
        "vllm": FakeProc("--persona", "vllm", "--model", "meta-llama/Llama-3.1-8B-Instruct"),
    }
    try:
        for ep in doc["endpoints"]:
            ep["base_url"] = fakes[ep["provider"]].url
        doc["run"]["limit"] = 3
        lineup = tmp_path / "lineup.yaml"
        lineup.write_text(yaml.safe_dump(doc))
        keys = {"OPENROUTER_API_KEY": "o" * 24, "GROQ_API_KEY": "g" * 24, "MY_VLLM_KEY": "v" * 24}
        r = bakeoff(
            "run", "-c", str(lineup), "--db", str(tmp_path / "r.db"), "--no-report", "-q",
            "--no-audit", env=keys,
        )  # fmt: skip
    finally:
        for f in fakes.values():
            f.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    for name in ("together", "groq", "my-vllm"):
        assert re.search(rf"\b{name}\b", r.stderr), name


FAKE_LINEUP = """
reference: ref
run: {suites: [arith], limit: 3}
audit: {budget: 10, batch: 10}
endpoints:
  - {name: ref, provider: fake, fake: {mode: echo}}
  - {name: twin, provider: fake, fake: {mode: echo}}
  - {name: other, provider: fake, fake: {mode: fixed, reply: "Something else entirely."}}
"""

LEFT_OUT = ("bakeoff ui", "bakeoff fake-server", "bakeoff local", "bakeoff calibrate", "--ray")


def _commands() -> list[str]:
    lines = _block("## Using it", "sh").splitlines()
    return [line.split("  #")[0].strip() for line in lines if line.startswith("bakeoff ")]


def test_every_offline_command_of_using_it_runs(tmp_path):
    cmds = [c for c in _commands() if not any(c.startswith(x) or x in c for x in LEFT_OUT)]
    assert len(cmds) >= 15  # the section was read
    lineup = tmp_path / "lineup.yaml"
    lineup.write_text(FAKE_LINEUP)
    db = str(tmp_path / "b.db")
    runs: list[str] = []
    done = []
    for cmd in cmds:
        args = cmd.split()[1:]
        if args[:1] == ["perf"]:
            args += ["--levels", "1", "--duration", "2", "--warmup", "0", "--cooldown", "0"]
        if args[:1] == ["audit"] and "-c" in cmd:
            args = ["audit", "-c", "lineup.yaml", "--budget", "10"]
        args = _alternatives([_fill(a, runs) for a in args])
        r = (
            bakeoff(*args, "--db", db, cwd=tmp_path, timeout=600)
            if _takes_db(args)
            else bakeoff(*args, cwd=tmp_path, timeout=600)
        )
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-2000:]}"
        assert "Traceback" not in r.stderr, cmd
        if args[:1] == ["run"]:
            found = re.search(r"run (\d{8}-\d{6}-[0-9a-f]{6})", r.stderr)
            assert found, cmd
            runs.append(found.group(1))
        done.append(cmd)
    assert any(c.startswith("bakeoff compare") for c in done)
    assert any(c.startswith("bakeoff audit bundle") for c in done)


def _alternatives(args: list[str]) -> list[str]:
    """The README's notation: `[optional]` parts left out, `a|b` the first choice taken."""
    return [a.split("|")[0] for a in args if not (a.startswith("[") or a.endswith("]"))]


def _fill(arg: str, runs: list[str]) -> str:
    """The README's placeholders: its lineup, the runs made so far, a judge of the lineup."""
    if arg in ("RUN_ID", "RUN_A"):
        return runs[0] if runs else arg
    if arg == "RUN_B":
        return runs[-1]
    if arg == "NAME":
        return "twin"
    if arg == "N":
        return "10"
    return arg


def _takes_db(args: list[str]) -> bool:
    return args[:1] != ["suites"] and args[:2] not in (["audit", "verify"], ["audit", "seed"])


@pytest.mark.parametrize("needle", ["--cache", "--allow-errors", "exit 3"])
def test_the_readme_documents_what_changed(needle):
    assert needle in README
