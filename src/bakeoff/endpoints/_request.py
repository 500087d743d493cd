"""The request builder: the one place a call's wire body is assembled, its levels in one order."""

from __future__ import annotations

from collections.abc import Mapping

from bakeoff.endpoints._types import CallRequest, JsonObject


def request_body(
    model: str,
    req: CallRequest,
    *,
    provider: Mapping[str, object],
    drop: frozenset[str],
    stream_usage: bool,
) -> JsonObject:
    """The body sent (and stored) for `req`. Each level is laid over the ones before it, so a later
    level wins a field both set; a field keeps the place it first took:

    1. `model`, then `messages` (chat) or `prompt` (completions);
    2. the provider's fields (`provider`: a preset's routing, a lineup's `extra_body`);
    3. lineup defaults under the endpoint's own `params` (`req.defaults`, `Lineup.sampling_for`:
       a null in the endpoint's `params` removes the lineup's default);
    4. the item's fields (`req.params`: its max_tokens, tools, ...; a judge's or probe's request
       puts its fields here);
    5. the regime's extras (`req.regime`: the audit's neutral sampler fields, its seed);
    6. `stream` and, when streaming with `stream_usage`, `stream_options` (no level overrides them);
    7. the fields the endpoint refuses (`drop`, the provider's `drops`) are removed, whichever level
       set them.
    """
    body: JsonObject = {"model": model}
    if req.api == "chat":
        body["messages"] = req.messages or []
    else:
        body["prompt"] = req.prompt or ""
    body.update(provider)
    if req.defaults:
        body.update(req.defaults)
    body.update(req.params)
    if req.regime:
        body.update(req.regime)
    body["stream"] = req.stream
    if req.stream and stream_usage:
        body["stream_options"] = {"include_usage": True}
    for key in drop & body.keys():
        del body[key]
    return body
