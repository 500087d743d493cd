"""The audit's token scorers, from the lineup: the reference's (a GGUF in-process, or a server's
echo log-probabilities), the suspected substitutes' (`audit.alternatives`), and what each one is
(`scorer_identities`, stored with the analysis)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

from bakeoff.audit._errors import AuditError
from bakeoff.lineups import AuditSettings, Lineup
from bakeoff.runs import EndpointSession

if TYPE_CHECKING:
    from bakeoff.audit._types import ReferenceScorer, ScorerLoad


class ScorerIdentity(TypedDict, total=False):
    """What a scorer is, stored with the analysis: a GGUF (`name`, `file`, `sha256`) or a server
    (`endpoint`, `base_url`, `model`, `engine`)."""

    kind: Literal["gguf", "server"]
    name: str
    file: str
    sha256: str
    endpoint: str
    base_url: str | None
    model: str
    engine: str | None


def scorer_factory_for(
    lineup: Lineup, settings: AuditSettings, session: EndpointSession | None = None
) -> ScorerLoad | None:
    """A loader of the reference token scorer, or None when there is none (`audit.scorer`;
    `top_logprobs`: the margins come from the reference's own calls, `_topk`)."""
    if settings.scorer in ("none", "top_logprobs"):
        return None
    if settings.scorer == "endpoint":
        return _endpoint_scorer(lineup, settings, session)
    spec = _reference_gguf(lineup, settings)
    if spec is None:
        if settings.scorer == "local":
            raise AuditError(
                "audit.scorer is local but no reference GGUF is known: set reference_gguf"
            )
        return None
    return _gguf_scorer(spec, what="audit.reference_gguf")


def _reference_gguf(lineup: Lineup, settings: AuditSettings) -> str | None:
    """The reference's GGUF as given (`reference_gguf`) or its local variant's name."""
    if settings.scorer in ("endpoint", "none", "top_logprobs"):
        return None
    ref = lineup.endpoint(lineup.reference) if lineup.reference else None
    if settings.reference_gguf is not None:
        return settings.reference_gguf
    if ref is not None and ref.provider == "local" and ref.local is not None:
        return str(ref.local.variant)
    return None


def _gguf_path(spec: str) -> Path:
    from bakeoff.local import VARIANTS, variant_path

    return variant_path(spec) if spec.upper() in {*VARIANTS, "Q4_1"} else Path(spec).expanduser()


def scorer_identities(
    lineup: Lineup, settings: AuditSettings, reference: bool
) -> dict[str, ScorerIdentity]:
    """What each scorer of the analysis is: a GGUF by its name and file hash, or a server by its
    URL, model and engine — stored with the analysis, named by the verdicts and the bundle."""
    out: dict[str, ScorerIdentity] = {}
    if reference:
        spec = _reference_gguf(lineup, settings)
        out["reference"] = (
            _gguf_identity(spec)
            if spec
            else _server_identity(lineup, settings.scorer_endpoint or lineup.reference)
        )
    for name in settings.alternatives or []:
        is_ep = any(e.name == name for e in lineup.endpoints)
        out[f"alt:{name}"] = _server_identity(lineup, name) if is_ep else _gguf_identity(name)
    return out


def _gguf_identity(spec: str) -> ScorerIdentity:
    path = _gguf_path(spec)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return {"kind": "gguf", "name": spec, "file": path.name, "sha256": h.hexdigest()}


def _server_identity(lineup: Lineup, name: str | None) -> ScorerIdentity:
    if name is None:
        return {"kind": "server"}
    ep = lineup.endpoint(name)
    return {
        "kind": "server",
        "endpoint": name,
        "base_url": ep.base_url,
        "model": ep.model,
        "engine": ep.engine,
    }


DEFAULT_ALTERNATIVES = ["Q8_0", "Q4_K_M"]


def alternative_scorers_for(
    lineup: Lineup, settings: AuditSettings, session: EndpointSession | None = None
) -> dict[str, ScorerLoad]:
    """Loaders of the scorers of `audit.alternatives` (the suspected substitutes), by name."""
    names = settings.alternatives
    ref = lineup.endpoint(lineup.reference) if lineup.reference else None
    if names is None:
        local_ref = ref is not None and ref.provider == "local"
        scored = settings.scorer not in ("none", "top_logprobs")
        names = DEFAULT_ALTERNATIVES if local_ref and scored else []
    out: dict[str, ScorerLoad] = {}
    for name in names:
        if any(e.name == name for e in lineup.endpoints):
            out[name] = _endpoint_scorer(lineup, settings, session, name=name)
        else:
            out[name] = _gguf_scorer(name)
    return out


def _gguf_scorer(spec: str, what: str = "audit.alternatives") -> ScorerLoad:
    """A local variant name of the packaged model, or a GGUF path (checked now; the file found,
    a variant made, and the model loaded only when first needed)."""
    from bakeoff.local import VARIANTS

    if spec.upper() not in {*VARIANTS, "Q4_1"} and not Path(spec).expanduser().is_file():
        raise AuditError(
            f"{what}: {spec!r} is neither a lineup endpoint, a local variant "
            f"({', '.join(VARIANTS)}) nor a GGUF file"
        )
    cache: dict[str, ReferenceScorer] = {}

    def load() -> ReferenceScorer:
        if "s" not in cache:
            from bakeoff.audit._scorer import LocalReferenceScorer

            cache["s"] = LocalReferenceScorer(_gguf_path(spec))
        return cache["s"]

    return load


def _endpoint_scorer(
    lineup: Lineup,
    settings: AuditSettings,
    session: EndpointSession | None,
    *,
    name: str | None = None,
) -> ScorerLoad:
    """The HTTP reference scorer on a lineup endpoint: its live URL and key when the endpoints are
    running (a run: its scoring calls then go through the endpoint's call policy, billed —
    `_scorer_policy`), else its configured base_url (a rerun) with the key from the environment.
    The chat template of `scorer_template` is read now (a file that cannot be is an error before
    any call)."""
    import asyncio
    import os

    from bakeoff.audit._scorer_policy import PolicyCompletions
    from bakeoff.audit._scorer_template import ChatTemplate, chat_template_of
    from bakeoff.audit._vllm_scorer import VllmReferenceScorer, http_reference_scorer

    name = name or settings.scorer_endpoint or lineup.reference
    if name is None:
        raise AuditError("audit.scorer endpoint needs scorer_endpoint or a reference")
    ep = lineup.endpoint(name)
    handle = session.handles.get(name) if session is not None else None
    policy = None
    if handle is not None and handle.started:
        base_url, key, policy = handle.client.base_url, handle.api_key, handle.policy
    elif ep.base_url:
        base_url = ep.base_url
        key = os.environ.get(ep.api_key_env) if ep.api_key_env else None
    else:
        raise AuditError(
            f"the scorer endpoint {name} has no fixed base_url: it can only score while running "
            "(use audit.scorer local for a rerun)"
        )
    spec = settings.scorer_template
    tpl = chat_template_of(spec) if spec is not None else ChatTemplate("")
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    cache: dict[str, ReferenceScorer] = {}

    def load() -> ReferenceScorer:
        if "s" not in cache:
            s = http_reference_scorer(
                base_url,
                ep.model,
                engine=ep.engine,
                batch=settings.scorer_batch,
                api_key=key,
                chat_template=tpl.template or None,
                bos_token=tpl.bos_token,
                eos_token=tpl.eos_token,
                shift=settings.scorer_shift,
            )
            if policy is not None and loop is not None and not isinstance(s, VllmReferenceScorer):
                s.completions = PolicyCompletions(policy, loop, name, key)
            cache["s"] = s
        return cache["s"]

    return load
