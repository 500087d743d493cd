import textwrap

import pytest

from bakeoff.lineups import LineupError, load_lineup, missing_env, parse_lineup

# built at run time so that no committed line looks like a real key to secret scanners
FAKE_KEY = "sk-" + "abcdefghijklmnopqrstuvwxyz"

GOOD = """\
reference: a
defaults:
  temperature: 0
  max_tokens: 64
endpoints:
  - name: a
    base_url: https://openrouter.ai/api/v1
    model: meta-llama/llama-3.1-8b-instruct
    provider: openrouter
    api_key_env: OPENROUTER_API_KEY
    routing: {only: [together], quantizations: [bf16], allow_fallbacks: false}
    price: {input_per_m: 0.05, output_per_m: 0.08}
    max_concurrency: 8
    rate_limit: {rpm: 600, tpm: 200000}
    timeouts: {connect: 5, first_token: 30, stall: 10, total: 120}
    params: {temperature: 0.7, seed: 1}
  - name: b
    base_url: http://127.0.0.1:8000/v1
    headers: {X-Team: evals}
"""


def test_a_full_lineup_loads():
    lu = parse_lineup(GOOD, "l.yaml")
    a = lu.endpoint("a")
    assert a.routing is not None and a.routing.only == ["together"]
    assert a.rate_limit.rpm == 600 and a.timeouts.stall == 10
    assert lu.sampling_for(a) == {"temperature": 0.7, "max_tokens": 64, "seed": 1}
    assert lu.sampling_for(lu.endpoint("b")) == {"temperature": 0.0, "max_tokens": 64}


def _problems(text: str) -> list[str]:
    with pytest.raises(LineupError) as e:
        parse_lineup(textwrap.dedent(text), "lineup.yaml")
    return e.value.problems


def test_error_names_file_line_and_field():
    (p,) = _problems(
        """\
        endpoints:
          - name: a
            base_url: http://x/v1
            max_concurrency: lots
        """
    )
    assert p.startswith("lineup.yaml:4: endpoints[0].max_concurrency:"), p


def test_unknown_field_is_named():
    (p,) = _problems(
        """\
        endpoints:
          - name: a
            base_url: http://x/v1
            temprature: 0.5
        """
    )
    assert p.startswith("lineup.yaml:4: endpoints[0].temprature:") and "not permitted" in p


def test_literal_key_is_refused_without_echoing_it():
    (p,) = _problems(
        f"""\
        endpoints:
          - name: a
            base_url: http://x/v1
            api_key: {FAKE_KEY}
        """
    )
    assert "lineup.yaml:2" in p and "literal API keys are refused" in p
    assert "sk-abc" not in p


def test_key_in_api_key_env_is_refused():
    (p,) = _problems(
        f"""\
        endpoints:
          - name: a
            base_url: http://x/v1
            api_key_env: {FAKE_KEY}
        """
    )
    assert "lineup.yaml:4: endpoints[0].api_key_env" in p and "not a key" in p
    assert "sk-abc" not in p


def test_credential_header_is_refused():
    (p,) = _problems(
        """\
        endpoints:
          - name: a
            base_url: http://x/v1
            headers: {Authorization: Bearer abc}
        """
    )
    assert "lineup.yaml:4: endpoints[0].headers" in p


def test_missing_field_and_bad_reference():
    problems = _problems(
        """\
        reference: nope
        endpoints:
          - base_url: http://x/v1
        """
    )
    assert any("lineup.yaml:3: endpoints[0].name: Field required" in p for p in problems)


def test_reference_must_be_an_endpoint():
    (p,) = _problems(
        """\
        reference: nope
        endpoints:
          - {name: a, base_url: "http://x/v1"}
        """
    )
    assert p.startswith("lineup.yaml:1:") and "'nope' is not an endpoint" in p


def test_duplicate_names():
    (p,) = _problems(
        """\
        endpoints:
          - {name: a, base_url: "http://x/v1"}
          - {name: a, base_url: "http://y/v1"}
        """
    )
    assert "repeated: a" in p


def test_invalid_yaml_names_the_line():
    (p,) = _problems("endpoints:\n  - name: a\n    base_url: [unclosed\n")
    assert p.startswith("lineup.yaml:") and "invalid YAML" in p


def test_empty_and_missing_files(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("")
    with pytest.raises(LineupError, match="empty"):
        load_lineup(f)
    with pytest.raises(LineupError, match="no such lineup file"):
        load_lineup(tmp_path / "nope.yaml")


def test_missing_env_is_reported_per_endpoint():
    lu = parse_lineup(GOOD, "l.yaml")
    assert missing_env(lu, {}) == [
        "endpoint 'a': environment variable OPENROUTER_API_KEY is not set"
    ]
    assert missing_env(lu, {"OPENROUTER_API_KEY": "x"}) == []


def test_fake_endpoints_need_no_base_url():
    lu = parse_lineup("endpoints:\n  - {name: f, provider: fake}\n")
    assert lu.endpoints[0].fake is not None
    # an openai endpoint without a base_url is OpenAI's own (the preset, tests/test_presets.py)
    assert parse_lineup("endpoints:\n  - {name: f}\n").endpoints[0].base_url is None


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("!", 1, "invalid YAML value"),
        ("\x1f", 1, "special characters are not allowed"),
        ("endpoints:\n  - !!python/object:os.system x\n", 2, "could not determine a constructor"),
        ("a: 1\nb: !!binary x\n", 2, "base64"),
        ("? [a]\n: b\n", 1, "a mapping key must be a name or a number"),
    ],
)
def test_yaml_the_loader_cannot_build_is_a_clear_error(text: str, line: int, what: str) -> None:
    """Found by fuzzing (tests/test_fuzz.py): these raised raw YAML or Python errors."""
    with pytest.raises(LineupError) as e:
        parse_lineup(text, "bad.yaml")
    assert str(e.value).startswith(f"bad.yaml:{line}:") and what in str(e.value)
