"""`tools`: function calling (BFCL-style) with generated tool schemas and requests.

Categories (the tiers): `simple` (one tool offered, one call expected), `multiple` (several tools
offered; pick the right one), `parallel` (several calls in one turn), `sequential` (a conversation
where an earlier call's result must be used in the next call), `relevance` (no offered tool fits: the
right answer is no call). Scored by function name and argument match — type-aware (3 == 3.0 ==
"3"; strings compared case- and space-insensitively), order-free for parallel calls — and by the
arguments' validity against the tool's JSON schema. Agreement with the reference endpoint on whether
to call a tool at all (tool-call F1 of `finish_reason`) is computed per endpoint in the run summary.
"""

from __future__ import annotations

import json
import random
from typing import Any, TypedDict

import jsonschema

from bakeoff.endpoints import CallResult
from bakeoff.suites._types import Item, Reply, Score, rng, unique_items

CITIES = [
    "Lisbon",
    "Nairobi",
    "Osaka",
    "Quito",
    "Tallinn",
    "Perth",
    "Dakar",
    "Bergen",
    "Cusco",
    "Hanoi",
    "Porto",
    "Accra",
]
CURRENCIES = ["EUR", "USD", "JPY", "GBP", "CHF", "BRL"]
LANGS = ["French", "German", "Japanese", "Swahili", "Spanish", "Polish"]


class ExpectedCall(TypedDict):
    """A tool call by name and arguments: one an item expects (its target), or one a reply made
    (arguments None when they were not JSON)."""

    name: str | None
    arguments: object


Scenario = tuple[dict[str, object], str, dict[str, object]]
"""A request that needs one tool: the tool's schema (as sent), the prompt, the arguments it takes."""


def _tool(name: str, desc: str, props: dict[str, object], required: list[str]) -> dict[str, object]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": desc,
            "parameters": {
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


def _tool_name(tool: dict[str, object]) -> str:
    fn = tool["function"]
    return str(fn["name"]) if isinstance(fn, dict) else ""


def _weather(r: random.Random) -> Scenario:
    city, unit = r.choice(CITIES), r.choice(["celsius", "fahrenheit"])
    t = _tool(
        "get_weather",
        "Current weather for a city.",
        {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        ["city", "unit"],
    )
    return t, f"What is the weather in {city} right now, in {unit}?", {"city": city, "unit": unit}


def _currency(r: random.Random) -> Scenario:
    a, b = r.sample(CURRENCIES, 2)
    amount = r.choice([15, 40, 120, 250, 999, 1500])
    t = _tool(
        "convert_currency",
        "Convert an amount of money between currencies.",
        {
            "amount": {"type": "number"},
            "from_currency": {"type": "string"},
            "to_currency": {"type": "string"},
        },
        ["amount", "from_currency", "to_currency"],
    )
    return (
        t,
        f"Convert {amount} {a} to {b}.",
        {"amount": amount, "from_currency": a, "to_currency": b},
    )


def _timer(r: random.Random) -> Scenario:
    minutes, label = r.randint(2, 90), r.choice(["pasta", "laundry", "tea", "meeting", "bread"])
    t = _tool(
        "set_timer",
        "Start a countdown timer.",
        {"minutes": {"type": "integer", "minimum": 1}, "label": {"type": "string"}},
        ["minutes", "label"],
    )
    return (
        t,
        f"Set a timer for {minutes} minutes called {label}.",
        {"minutes": minutes, "label": label},
    )


def _translate(r: random.Random) -> Scenario:
    text, lang = (
        r.choice(["good morning", "where is the station", "thank you very much"]),
        r.choice(LANGS),
    )
    t = _tool(
        "translate",
        "Translate text into a language.",
        {"text": {"type": "string"}, "target_language": {"type": "string"}},
        ["text", "target_language"],
    )
    return t, f"Translate '{text}' into {lang}.", {"text": text, "target_language": lang}


def _table(r: random.Random) -> Scenario:
    place, people, time = (
        r.choice(["Blue Fig", "Casa Rio", "The Anchor"]),
        r.randint(2, 8),
        r.choice(["19:00", "20:30", "12:15"]),
    )
    t = _tool(
        "book_table",
        "Reserve a table at a restaurant.",
        {
            "restaurant": {"type": "string"},
            "people": {"type": "integer", "minimum": 1},
            "time": {"type": "string", "description": "HH:MM, 24-hour"},
        },
        ["restaurant", "people", "time"],
    )
    return (
        t,
        f"Book a table at {place} for {people} people at {time}.",
        {"restaurant": place, "people": people, "time": time},
    )


MAKERS = [_weather, _currency, _timer, _translate, _table]
OFF_TOPIC = [
    "Write a two-line poem about {t}.",
    "Tell me a fun fact about {t}.",
    "Explain in one sentence why people like {t}.",
    "Give me three words that describe {t}.",
    "What colour do you associate with {t}, and why?",
]
TOPICS = [
    "the sea",
    "octopuses",
    "prime numbers",
    "autumn",
    "libraries",
    "volcanoes",
    "jazz",
    "bicycles",
    "owls",
    "bread",
    "chess",
    "the moon",
]


def _norm(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        s = " ".join(v.split()).casefold()
        try:
            return float(s)
        except ValueError:
            return s
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def call_matches(got: ExpectedCall, want: ExpectedCall) -> bool:
    """Same function name and the same arguments, compared type-aware."""
    return got.get("name") == want["name"] and _norm(got.get("arguments")) == _norm(
        want["arguments"]
    )


def parse_calls(result: CallResult) -> list[ExpectedCall]:
    out: list[ExpectedCall] = []
    for tc in result.tool_calls:
        try:
            args = json.loads(tc.arguments) if tc.arguments else {}
        except ValueError:
            args = None
        out.append({"name": tc.name, "arguments": args})
    return out


class ToolsSuite:
    name = "tools"
    linear_scoring = True  # scored on the event loop when short (runs._scoring)
    description = (
        "Function calling: simple, multiple, parallel, sequential, relevance (name + args)."
    )
    default_size = 30
    tiers = ("simple", "multiple", "parallel", "sequential", "relevance")

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        n = self.default_size if n is None else n
        return unique_items(n, lambda i, attempt: self._item(seed, i, attempt))

    def _item(self, seed: int, i: int, attempt: int = 0) -> Item:
        r = rng("tools", seed, i, attempt)
        tier = self.tiers[i % len(self.tiers)]
        messages: list[dict[str, Any]]
        if tier == "simple":
            tool, ask, args = r.choice(MAKERS)(r)
            tools, expected = [tool], [{"name": _tool_name(tool), "arguments": args}]
            messages = [{"role": "user", "content": ask}]
        elif tier == "multiple":
            makers = r.sample(MAKERS, 3)
            made = [m(r) for m in makers]
            tools = [t for t, _, _ in made]
            tool, ask, args = made[r.randrange(3)]
            expected = [{"name": _tool_name(tool), "arguments": args}]
            messages = [{"role": "user", "content": ask}]
        elif tier == "parallel":
            maker = r.choice(MAKERS)
            made = [maker(r) for _ in range(r.randint(2, 3))]
            tools = [made[0][0]]
            asks = [a.rstrip(".?") for _, a, _ in made]
            ask = "Do all of these at once: " + "; ".join(asks) + "."
            expected = [{"name": _tool_name(t), "arguments": a} for t, _, a in made]
            messages = [{"role": "user", "content": ask}]
        elif tier == "sequential":
            person = r.choice(["Maria", "Kenji", "Ayo", "Lars", "Mina"])
            city, unit = r.choice(CITIES), r.choice(["celsius", "fahrenheit"])
            lookup = _tool(
                "get_home_city",
                "The home city of a contact.",
                {"contact": {"type": "string"}},
                ["contact"],
            )
            weather, _, _ = _weather(r)
            tools = [lookup, weather]
            messages = [
                {
                    "role": "user",
                    "content": f"What is the weather in {person}'s home city, in {unit}?",
                },
                {
                    "role": "assistant",
                    "content": "",  # null is valid OpenAI, but some servers (llama-cpp-python) refuse it
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "get_home_city",
                                "arguments": json.dumps({"contact": person}),
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"city": city})},
            ]
            expected = [{"name": "get_weather", "arguments": {"city": city, "unit": unit}}]
        else:
            tools = [m(r)[0] for m in r.sample(MAKERS, 2)]
            messages = [{"role": "user", "content": r.choice(OFF_TOPIC).format(t=r.choice(TOPICS))}]
            expected = []
        return Item(
            id=f"tools-{seed}-{i:04d}",
            tier=tier,
            messages=messages,
            params={"tools": tools, "max_tokens": 200},
            target=expected,
        )

    def score(self, item: Item, result: CallResult) -> list[Score]:
        expected: list[ExpectedCall] = item.target
        got = parse_calls(result)
        schemas = {_tool_name(t): t["function"]["parameters"] for t in item.params["tools"]}
        valid = all(
            c["arguments"] is not None
            and c["name"] in schemas
            and jsonschema.Draft202012Validator(schemas[c["name"]]).is_valid(c["arguments"])
            for c in got
        )
        if not expected:
            ok = not got
            detail = (
                "no call, as expected"
                if ok
                else f"called {[c['name'] for c in got]} for an off-topic request"
            )
        else:
            remaining = list(expected)
            for c in got:
                hit = next((w for w in remaining if call_matches(c, w)), None)
                if hit is None:
                    break
                remaining.remove(hit)
            ok = not remaining and len(got) == len(expected)
            detail = "all calls match" if ok else f"got {json.dumps(got)[:300]}"
        return [
            Score(scorer="calls", value=float(ok), passed=ok, detail=detail),
            Score(scorer="schema_valid", value=float(valid), passed=valid),
        ]

    def reference_reply(self, item: Item) -> Reply:
        if not item.target:
            return Reply(
                content="None of the available tools can help with that; here is my answer."
            )
        return Reply(tool_calls=list(item.target))

    def wrong_reply(self, item: Item) -> Reply:
        if not item.target:
            name = item.params["tools"][0]["function"]["name"]
            return Reply(tool_calls=[{"name": name, "arguments": {}}])
        return Reply(content="I don't know.")
