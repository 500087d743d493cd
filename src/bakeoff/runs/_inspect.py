"""A run as inspect_ai eval logs (`bakeoff export RUN -f inspect -o DIR`): one log per endpoint ×
suite, written by inspect_ai's own models and writer, so `inspect view DIR` and
`inspect_ai.analysis.evals_df` / `samples_df` read them. Each stored call is a sample (its item as
`id`, its repeat + 1 as `epoch`), with the prompt, the target, the reply as the model's output, its
token usage, its primary score, and an `error` for a failed call. Needs `pip install inspect_ai`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Any

from bakeoff.runs._export import ExportError, _prompt
from bakeoff.runs._plan import lineup_of_run
from bakeoff.store import Store, loads

_STOP = {"stop": "stop", "length": "max_tokens", "tool_calls": "tool_calls"}


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat()


def _sample(c: Any, item: Any, score: Any, model: str) -> Any:
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
    scores = {}
    if score is not None:
        scores[score["scorer"]] = Score(value=float(score["value"]), answer=text[:200] or None)
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


def _log(
    run: Any, lineup: Any, ep: Any, suite: str, calls: list[Any], items: Any, first: Any
) -> Any:
    """The eval log of one endpoint × suite."""
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalMetric,
        EvalResults,
        EvalScore,
        EvalSpec,
        EvalStats,
    )
    from inspect_ai.model import ModelUsage

    run_id = run["id"]
    model = f"{ep.provider}/{ep.model}"
    samples = [
        _sample(c, items.get((suite, c["item_id"])), first.get(c["id"]), model) for c in calls
    ]
    values = [float(first[c["id"]]["value"]) if c["id"] in first else 0.0 for c in calls]
    scorer = next((first[c["id"]]["scorer"] for c in calls if c["id"] in first), suite)
    usage = ModelUsage(
        input_tokens=sum(c["prompt_tokens"] or 0 for c in calls),
        output_tokens=sum(c["completion_tokens"] or 0 for c in calls),
    )
    usage.total_tokens = usage.input_tokens + usage.output_tokens
    mean = sum(values) / len(values) if values else 0.0
    return EvalLog(
        status="success",
        eval=EvalSpec(
            created=run["created_at"],
            task=f"bakeoff/{suite}",
            task_id=f"{run_id}-{suite}",
            run_id=run_id,
            dataset=EvalDataset(name=suite, samples=len({c["item_id"] for c in calls})),
            model=model,
            model_base_url=ep.base_url,
            config=EvalConfig(epochs=lineup.run.repeats),
            metadata={"bakeoff_endpoint": ep.name, "bakeoff_run": run_id},
        ),
        results=EvalResults(
            total_samples=len(samples),
            completed_samples=sum(1 for c in calls if c["status"] == "ok"),
            scores=[
                EvalScore(
                    name=scorer,
                    scorer=scorer,
                    metrics={"mean": EvalMetric(name="mean", value=mean)},
                )
            ],
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
    first: dict[str, Any] = {}
    for s in store.scores(run_id, light=True):
        first.setdefault(s["call_id"], s)
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for c in store.calls(run_id):
        if c["suite"] in lineup.run.suites:
            groups[(c["endpoint"], c["suite"])].append(c)
    written = []
    for ep in lineup.endpoints:
        for suite in lineup.run.suites:
            calls = groups.get((ep.name, suite), [])
            path = out / f"{run_id}_{ep.name}_{suite}.eval"
            write_eval_log(_log(run, lineup, ep, suite, calls, items, first), str(path))
            written.append(path)
    return written
