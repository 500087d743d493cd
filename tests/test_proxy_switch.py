"""The distortion proxy's switch (`switch_to`, `switch_after_calls`): an endpoint that serves one
model, then silently another — what `bakeoff watch` must catch. Over real fake servers."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bakeoff.fake import FakeConfig, FakeServer
from bakeoff.lineups import LineupError, ProxySpec, parse_lineup
from bakeoff.proxy import DistortionProxy


async def _replies(after: int, calls: int) -> tuple[list[str], list[dict[str, object]]]:
    first, second = FakeServer(FakeConfig(mode="echo")), FakeServer(FakeConfig(mode="fixed"))
    a, b = await first.start(), await second.start()
    spec = ProxySpec(target="a", switch_to="b", switch_after_calls=after)
    proxy = DistortionProxy(spec, a, upstream_model="m", switch_url=b, switch_model="m")
    url = await proxy.start()
    texts = []
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/models") as r:  # a listing is not a call: not counted
                assert r.status == 200
            for i in range(calls):
                body = {"model": "m", "messages": [{"role": "user", "content": f"hello {i}"}]}
                async with s.post(url + "/chat/completions", json=body) as r:
                    texts.append((await r.json())["choices"][0]["message"]["content"])
        return texts, proxy.log
    finally:
        await proxy.stop()
        await first.stop()
        await second.stop()


def test_the_first_n_calls_go_to_the_target_every_later_one_to_the_other():
    texts, log = asyncio.run(_replies(after=3, calls=6))
    assert texts[:3] == ["hello 0", "hello 1", "hello 2"]  # echo: the target
    assert texts[3:] == ["I don't know."] * 3  # fixed: the endpoint switched to
    assert [e["switched"] for e in log] == [False] * 3 + [True] * 3


def test_switch_after_zero_calls_switches_from_the_first():
    texts, _ = asyncio.run(_replies(after=0, calls=2))
    assert texts == ["I don't know."] * 2


LINEUP = """
endpoints:
  - {name: a, provider: fake}
  - {name: b, provider: fake, fake: {mode: fixed}}
  - name: p
    provider: proxy
    proxy: {target: a, %s}
"""


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ("switch_to: b", "switch_to and switch_after_calls go together"),
        ("switch_after_calls: 2", "switch_to and switch_after_calls go together"),
        (
            "switch_to: nowhere, switch_after_calls: 2",
            "proxy switch_to 'nowhere' is not an endpoint",
        ),
        ("switch_to: b, switch_after_calls: -1", "greater than or equal to 0"),
    ],
)
def test_a_bad_switch_is_a_clear_lineup_error(fields, error):
    with pytest.raises(LineupError, match=error):
        parse_lineup(LINEUP % fields)


def test_a_lineup_proxy_switches_between_its_endpoints(tmp_path):
    """Through the lineup: the `proxy` provider starts the switch with the other endpoint's URL; one
    worker, so the calls are made in order — the first two answered by `a`, the rest by `b`."""
    import bakeoff
    from bakeoff.store import Store

    text = (LINEUP % "switch_to: b, switch_after_calls: 2") + "run: {suites: [arith], limit: 4}\n"
    text = text.replace("    proxy: {", "    max_concurrency: 1\n    proxy: {")
    path = tmp_path / "l.yaml"
    path.write_text(text)
    summary = bakeoff.run(path, db=tmp_path / "r.db", report=False, check=False)
    store = Store(tmp_path / "r.db")
    calls = sorted(
        (c for c in store.calls(summary.run_id) if c["endpoint"] == "p"),
        key=lambda c: c["started_at"],
    )
    answers = [c["output_text"] for c in calls]
    items = {
        c["item_id"]: c["output_text"] for c in store.calls(summary.run_id) if c["endpoint"] == "a"
    }
    assert len(answers) == 4 and answers[2:] == ["I don't know."] * 2
    assert answers[:2] == [items[c["item_id"]] for c in calls[:2]]
    store.close()
