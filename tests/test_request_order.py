"""The order of a call's body levels, as the fake server receives it: provider fields, then the
lineup's defaults, the endpoint's `params`, the item's fields, the regime's extras — each over the
one before — then `stream`, which no level overrides, and the dropped fields, gone whoever set them
(`endpoints.request_body`)."""

from __future__ import annotations

import asyncio

import aiohttp

from bakeoff.endpoints import ClientOptions, EndpointClient
from bakeoff.fake import FakeConfig, FakeServer
from bakeoff.lineups import parse_lineup
from bakeoff.suites import Item

LINEUP = """
defaults: {temperature: 0.1, top_p: 0.2, max_tokens: 30, seed: 3}
endpoints:
  - name: e
    provider: fake
    params: {top_p: 0.25, max_tokens: 31, seed: 4}
"""
PROVIDER = {"temperature": 9, "top_p": 0.9, "max_tokens": 9, "seed": 9, "x_route": "r"}
ITEM = Item(
    id="i", messages=[{"role": "user", "content": "q"}], params={"max_tokens": 40, "seed": 5}
)
REGIME = {"seed": 6, "stream": False}


async def _received(drop: frozenset[str]) -> dict:
    lineup = parse_lineup(LINEUP)
    server = FakeServer(FakeConfig(mode="echo"))
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as s:
            opts = ClientOptions(extra_body=PROVIDER, drop_fields=drop)
            client = EndpointClient(s, base_url=url, model="m", options=opts)
            req = ITEM.request("chat", True, lineup.sampling_for(lineup.endpoints[0]), REGIME)
            await client.call(req)
        return server.log[0]
    finally:
        await server.stop()


def test_each_level_overrides_the_one_before():
    got = asyncio.run(_received(frozenset()))
    # temperature: lineup over provider; top_p: endpoint over lineup; max_tokens: item over
    # endpoint; seed: regime over item
    assert got["params"] == {"temperature": 0.1, "top_p": 0.25, "max_tokens": 40, "seed": 6}
    assert got["stream"] is True  # the regime's `stream: false` does not reach the wire
    assert "x_route" in got["body_keys"]  # a provider field no level sets stays


def test_dropped_fields_are_dropped_whichever_level_set_them():
    got = asyncio.run(_received(frozenset({"top_p", "seed", "x_route"})))
    assert got["params"] == {"temperature": 0.1, "max_tokens": 40}
    assert not {"top_p", "seed", "x_route"} & set(got["body_keys"])
