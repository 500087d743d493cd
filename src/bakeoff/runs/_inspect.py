"""A run as inspect_ai eval logs (`bakeoff export RUN -f inspect -o DIR`): one log per endpoint ×
suite, written by inspect_ai's own models and writer, so `inspect view DIR` and
`inspect_ai.analysis.evals_df` / `samples_df` read them. Each stored call is a sample (its item as
`id`, its repeat + 1 as `epoch`), with the prompt, the target, the reply as the model's output, its
token usage, every score, and an `error` for a failed call. The model is the endpoint's identity —
`PROVIDER/UPSTREAM/MODEL` where its routing pins one upstream, else `PROVIDER/MODEL`, with the
endpoint's name after `@` where two endpoints would share it — so each upstream of one model is a
model of its own; the generate config is what the stored requests sent (every field they agree
on); the results hold every scorer's mean and the summary's interval, failures and paired
comparison with the reference. Needs `pip install inspect_ai`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bakeoff.lineups import Endpoint, Lineup
from bakeoff.runs._cost import pinned_slug
from bakeoff.runs._export import ExportError, _prompt
from bakeoff.runs._plan import lineup_of_run
from bakeoff.runs._results import SuiteStats
from bakeoff.runs._summary import summary_of
from bakeoff.store import Row, Store, loads

if TYPE_CHECKING:
    from inspect_ai.log import EvalMetric

_STOP = {"stop": "stop", "length": "max_tokens", "tool_calls": "tool_calls"}

_CONFIG_FIELDS = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "stop": "stop_seqs",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "logit_bias": "logit_bias",
    "n": "num_choices",
    "logprobs": "logprobs",
    "top_logprobs": "top_logprobs",
    "parallel_tool_calls": "parallel_tool_calls",
    "reasoning_effort": "reasoning_effort",
}
"""Request body field → inspect_ai `GenerateConfig` field; any other sampling field a request sent
(min_p, repetition_penalty, a provider's routing) goes in the config's `extra_body`."""
_NOT_CONFIG = {"model", "messages", "prompt", "stream", "stream_options", "tools", "tool_choice"}


def model_ids(lineup: Any) -> dict[str, str]:
    """Each endpoint's model name in the logs: `PROVIDER/UPSTREAM/MODEL` (the routing's pinned
    upstream), else `PROVIDER/MODEL`; `@ENDPOINT` added where two endpoints would share one."""
    ids = {}
    for ep in lineup.endpoints:
        slug = pinned_slug(ep)
        ids[ep.name] = "/".join(str(p) for p in (ep.provider, slug, ep.model) if p)
    seen = list(ids.values())
    return {n: m if seen.count(m) == 1 else f"{m}@{n}" for n, m in ids.items()}


def generate_config(calls: list[Any]) -> tuple[Any, list[str]]:
    """The `GenerateConfig` the stored requests of `calls` agree on, and the fields they sent with
    different values (per item: listed, not guessed)."""
    from inspect_ai.model import GenerateConfig

    bodies = []
    for c in calls:
        req = loads(c["request_json"]) if c["request_json"] else None
        if isinstance(req, dict) and isinstance(req.get("body"), dict):
            bodies.append(req["body"])
    keys = {k for b in bodies for k in b} - _NOT_CONFIG
    same = {k: bodies[0].get(k) for k in keys if all(b.get(k) == bodies[0].get(k) for b in bodies)}
    varies = sorted(keys - set(same))
    fields: dict[str, object] = {}
    extra: dict[str, object] = {}
    for k, v in same.items():
        if k in _CONFIG_FIELDS and v is not None:
            fields[_CONFIG_FIELDS[k]] = [v] if k == "stop" and isinstance(v, str) else v
        elif v is not None:
            extra[k] = v
    try:
        config = GenerateConfig.model_validate({**fields, "extra_body": extra or None})
    except ValueError:  # a value of a type inspect_ai does not take: kept, untyped
        config = GenerateConfig(extra_body={**fields, **extra} or None)
    return config, varies


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat()


def _sample(c: Any, item: Any, scores_of: list[Any], model: str) -> Any:
    from inspect_ai.log import EvalError, EvalSample
    from inspect_ai.model import (
        ChatCompletionChoice,
        ChatMessageAssistant,
        ChatMessageUser,
        ModelOutput,
        ModelUsage,
    )
    from inspect_ai.scorer import Score

    prompt = _prompt(item["input_json"]) if item is not None else ""
    target = loads(item["target_json"]) if item is not None and item["target_json"] else ""
    usage = ModelUsage(
        input_tokens=c["prompt_tokens"] or 0,
        output_tokens=c["completion_tokens"] or 0,
        total_tokens=(c["prompt_tokens"] or 0) + (c["completion_tokens"] or 0),
    )
    text = c["output_text"] or ""
    output = ModelOutput(
        model=model,
        choices=[
            ChatCompletionChoice(
                message=ChatMessageAssistant(content=text, model=model),
                stop_reason=_STOP.get(c["finish_reason"] or "", "unknown"),  # type: ignore[arg-type]
            )
        ]
        if c["status"] == "ok"
        else [],
        usage=usage,
    )
    messages: list[Any] = [ChatMessageUser(content=prompt or "")]
    if c["status"] == "ok":
        messages.append(ChatMessageAssistant(content=text, model=model))
    scores = {
        sc["scorer"]: Score(value=float(sc["value"]), answer=text[:200] or None) for sc in scores_of
    }
    return EvalSample(
        id=c["item_id"],
        epoch=int(c["repeat"]) + 1,
        input=prompt or "",
        target=target if isinstance(target, str) else str(target),
        messages=messages,
        output=output,
        scores=scores or None,
        model_usage={model: usage},
        error=None
        if c["status"] == "ok"
        else EvalError(
            message=f"{c['error_class']}: {c['error_detail'] or ''}"[:500],
            traceback="",
            traceback_ansi="",
        ),
        metadata={"bakeoff_call_id": c["id"], "ttft_ms": c["ttft_ms"], "cost_usd": c["cost_usd"]},
    )


def _metrics(st: SuiteStats) -> dict[str, EvalMetric]:
    """The summary's figures of one endpoint × suite as inspect_ai metrics (those it has)."""
    from inspect_ai.log import EvalMetric

    vs = st.vs_reference
    figures = {
        "mean": st.score,
        "ci95_low": st.ci95[0] if st.ci95 else None,
        "ci95_high": st.ci95[1] if st.ci95 else None,
        "n_items": st.n_items,
        "calls": st.n,
        "errors": st.errors,
        "error_rate": st.error_rate,
        "delta_vs_reference": vs.delta if vs else None,
        "p_value_vs_reference": vs.p_value if vs else None,
        "p_holm_vs_reference": vs.p_holm if vs else None,
    }
    return {k: EvalMetric(name=k, value=v) for k, v in figures.items() if v is not None}


def _scores(calls: list[Row], scores: dict[str, list[Row]], st: SuiteStats | None) -> list[Any]:
    """Every scorer's results: the primary one with the summary's metrics, the others' means."""
    from inspect_ai.log import EvalMetric, EvalScore

    by_scorer: dict[str, list[float]] = defaultdict(list)
    for c in calls:
        for sc in scores.get(c["id"], []):
            by_scorer[sc["scorer"]].append(float(sc["value"]))
    names = list(by_scorer) or ["score"]
    out = []
    for i, name in enumerate(names):
        vals = by_scorer.get(name, [])
        metrics = (
            _metrics(st)
            if i == 0 and st is not None
            else {"mean": EvalMetric(name="mean", value=sum(vals) / len(vals) if vals else 0.0)}
        )
        out.append(EvalScore(name=name, scorer=name, metrics=metrics))
    return out


@dataclass(frozen=True)
class _RunRows:
    """What the store holds of the run, read once for all its logs."""

    run: Row
    lineup: Lineup
    items: dict[tuple[str, str], Row]
    """(suite, item id) → its row."""
    scores: dict[str, list[Row]]
    """Call id → its score rows, the primary one first."""


def _log(
    rr: _RunRows, ep: Endpoint, suite: str, calls: list[Row], model: str, st: SuiteStats | None
) -> Any:
    """The eval log of one endpoint × suite (`st`: the summary's figures of it)."""
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalResults, EvalSpec, EvalStats
    from inspect_ai.model import ModelUsage

    run, lineup, items, scores = rr.run, rr.lineup, rr.items, rr.scores
    run_id = run["id"]
    samples = [
        _sample(c, items.get((suite, c["item_id"])), scores.get(c["id"], []), model) for c in calls
    ]
    usage = ModelUsage(
        input_tokens=sum(c["prompt_tokens"] or 0 for c in calls),
        output_tokens=sum(c["completion_tokens"] or 0 for c in calls),
    )
    usage.total_tokens = usage.input_tokens + usage.output_tokens
    config, varies = generate_config(calls)
    return EvalLog(
        status="success",
        eval=EvalSpec(
            created=run["created_at"],
            task=f"bakeoff/{suite}",
            task_id=f"{run_id}-{suite}",
            run_id=run_id,
            dataset=EvalDataset(name=suite, samples=len({c["item_id"] for c in calls})),
            model=model,
            model_generate_config=config,
            model_base_url=ep.base_url,
            config=EvalConfig(epochs=lineup.run.repeats),
            metadata={
                "bakeoff_endpoint": ep.name,
                "bakeoff_run": run_id,
                "bakeoff_provider": ep.provider,
                "bakeoff_upstream": pinned_slug(ep),
                "bakeoff_model": ep.model,
                "generate_config_varies": varies,
            },
        ),
        results=EvalResults(
            total_samples=len(samples),
            completed_samples=sum(1 for c in calls if c["status"] == "ok"),
            scores=_scores(calls, scores, st),
        ),
        stats=EvalStats(
            started_at=_iso(min((c["started_at"] for c in calls), default=None)) or "",
            completed_at=_iso(max((c["finished_at"] for c in calls), default=None)) or "",
            model_usage={model: usage},
        ),
        samples=samples,
    )


def write_inspect_logs(store: Store, run_id: str, out_dir: str | Path) -> list[Path]:
    """One `.eval` log per endpoint × suite of the run in `out_dir`; the paths written."""
    try:
        from inspect_ai.log import write_eval_log
    except ImportError:
        raise ExportError("Inspect logs need inspect_ai: pip install inspect_ai") from None
    run = store.run(run_id)
    if run is None:
        raise ExportError(f"no run {run_id}")
    lineup = lineup_of_run(store, run_id)
    out = Path(out_dir)
    if out.suffix:
        raise ExportError(f"-f inspect writes a directory of logs; {out} looks like a file")
    out.mkdir(parents=True, exist_ok=True)
    items = {(r["suite"], r["item_id"]): r for r in store.items(run_id)}
    scores: dict[str, list[Row]] = defaultdict(list)
    for sc in store.scores(run_id, light=True):
        scores[sc["call_id"]].append(sc)
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for c in store.calls(run_id):
        if c["suite"] in lineup.run.suites:
            groups[(c["endpoint"], c["suite"])].append(c)
    summary = {e.name: e for e in summary_of(store, run_id).endpoints}
    rows = _RunRows(run, lineup, items, scores)
    models = model_ids(lineup)
    written = []
    for ep in lineup.endpoints:
        for suite in lineup.run.suites:
            calls = groups.get((ep.name, suite), [])
            st = summary[ep.name].suites.get(suite) if ep.name in summary else None
            log = _log(rows, ep, suite, calls, models[ep.name], st)
            path = out / f"{run_id}_{ep.name}_{suite}.eval"
            write_eval_log(log, str(path))
            written.append(path)
    return written
