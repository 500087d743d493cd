"""`structured`: JSON mode and `response_format` json_schema — parses, validates, right content.

Each item gives a short generated record in prose and asks for it as JSON. Tiers: `json_object`
(`response_format: {"type": "json_object"}`, keys named in the prompt), `json_schema` (a strict
schema sent as `response_format`), `nested` (a list of objects under a schema). Scores: `parses`,
`valid` (against the schema), and `content` (the values equal the record's, type-aware) — the primary
score is all three.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import jsonschema

from bakeoff.endpoints import CallResult
from bakeoff.suites._types import Item, Reply, Score, rng, unique_items

PEOPLE = ["Alma", "Bruno", "Cleo", "Dario", "Elif", "Femi", "Greta", "Hugo", "Iris", "Joao"]
CITIES = ["Lyon", "Kyoto", "Austin", "Bergen", "Accra", "Recife", "Gdansk", "Malmo"]
JOBS = ["nurse", "pilot", "baker", "teacher", "engineer", "gardener"]

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "job": {"type": "string"},
    },
    "required": ["name", "age", "city", "job"],
    "additionalProperties": False,
}


def _person(r: random.Random) -> dict[str, Any]:
    return {
        "name": r.choice(PEOPLE),
        "age": r.randint(19, 80),
        "city": r.choice(CITIES),
        "job": r.choice(JOBS),
    }


def _say(p: dict[str, Any]) -> str:
    return f"{p['name']} is a {p['age']}-year-old {p['job']} who lives in {p['city']}."


def parse_json(text: str) -> Any:
    t = text.strip()
    m = re.search(r"```(?:json)?\s*+(.*?)```", t, re.S)  # `\s*+`: one lazy scan per fence
    if m:
        t = m.group(1).strip()
    return json.loads(t)


def _norm(v: Any) -> Any:
    if isinstance(v, str):
        return " ".join(v.split()).casefold()
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


class StructuredSuite:
    name = "structured"
    linear_scoring = True  # scored on the event loop when short (runs._scoring)
    description = "JSON mode / response_format json_schema: parses, validates, matches the content."
    default_size = 30
    tiers = ("json_object", "json_schema", "nested")

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        n = self.default_size if n is None else n

        def make(i: int, attempt: int) -> Item:
            r = rng("structured", seed, i, attempt)
            tier = self.tiers[i % 3]
            if tier == "nested":
                people = [_person(r) for _ in range(r.randint(2, 3))]
                schema = {
                    "type": "object",
                    "properties": {"people": {"type": "array", "items": PERSON_SCHEMA}},
                    "required": ["people"],
                    "additionalProperties": False,
                }
                text = " ".join(_say(p) for p in people)
                target: Any = {"people": people}
                ask = 'Return a JSON object with a key "people": a list with one object per person (keys name, age, city, job), in the order given.'
            else:
                p = _person(r)
                if tier == "json_object":
                    # the easiest tier: two keys, no schema sent
                    target = {"name": p["name"], "city": p["city"]}
                    schema = {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
                        "required": ["name", "city"],
                    }
                    text = _say(p)
                    ask = "Return a JSON object with two keys: name and city."
                else:
                    schema, text, target = PERSON_SCHEMA, _say(p), p
                    ask = "Return a JSON object with the keys name, age (an integer), city and job."
            params: dict[str, Any] = {"max_tokens": 200}
            if tier == "json_object":
                params["response_format"] = {"type": "json_object"}
            else:
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "record", "strict": True, "schema": schema},
                }
            return Item(
                id=f"structured-{seed}-{i:04d}",
                tier=tier,
                messages=[{"role": "user", "content": f"{text}\n{ask} Reply with JSON only."}],
                params=params,
                target={"value": target, "schema": schema},
            )

        return unique_items(n, make)

    def score(self, item: Item, result: CallResult) -> list[Score]:
        try:
            data = parse_json(result.text)
            parses = True
        except ValueError:
            data, parses = None, False
        valid = parses and jsonschema.Draft202012Validator(item.target["schema"]).is_valid(data)
        want = item.target["value"]
        if item.tier == "json_object" and isinstance(data, dict):
            # JSON mode sends no schema: the asked keys must be right; extra keys are allowed
            data = {k: data.get(k) for k in want}
        content = parses and _norm(data) == _norm(want)
        ok = parses and valid and content
        detail = (
            "ok"
            if ok
            else (
                "does not parse"
                if not parses
                else ("schema violation" if not valid else "wrong values")
            )
        )
        return [
            Score(scorer="correct", value=float(ok), passed=ok, detail=detail),
            Score(scorer="parses", value=float(parses), passed=parses),
            Score(scorer="valid", value=float(valid), passed=valid),
        ]

    def reference_reply(self, item: Item) -> Reply:
        return Reply(content=json.dumps(item.target["value"]))
