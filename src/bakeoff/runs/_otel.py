"""A run's calls as OpenTelemetry traces, following the GenAI semantic conventions, sent over
OTLP/HTTP to a collector the user names (`bakeoff run --otel-endpoint URL`, `bakeoff export RUN
--otel-endpoint URL`). Replayed from the store with each call's own start and end times, so a run
can be sent after the fact, or again, and the spans are the same.

One trace per run: a root span `bakeoff run RUN_ID`, and one child span per stored call named
`{operation} {model}` with `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.response.model`, `gen_ai.usage.input_tokens` / `output_tokens`,
`gen_ai.response.finish_reasons`, `server.address`, `error.type` on failed calls, and bakeoff's own
`bakeoff.*` attributes (endpoint, suite, item, repeat, TTFT, upstream, cost, score). No header, key
or request body goes into a span. Needs `pip install 'bakeoff[otel]'`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from bakeoff.lineups import Endpoint
from bakeoff.runs._plan import lineup_of_run
from bakeoff.store import Row, Store, loads


class OtelError(ValueError):
    """The traces cannot be sent; the message says why."""


def _ns(t: float | None) -> int | None:
    return None if t is None else int(t * 1e9)


SpanAttributes = dict[str, str | bool | int | float | list[str]]
"""A span's attributes, as OpenTelemetry takes them."""


def _attributes(c: Row, ep: Endpoint | None, score: Row | None) -> SpanAttributes:
    req = loads(c["request_json"]) or {}
    url = str(req.get("url") or "")
    body = req.get("body") or {}
    attrs: SpanAttributes = {
        "gen_ai.operation.name": "chat" if url.endswith("/chat/completions") else "text_completion",
        "gen_ai.provider.name": ep.provider if ep is not None else "unknown",
        "gen_ai.request.model": str(body.get("model") or (ep.model if ep else "")),
        "server.address": urlsplit(url).hostname or "",
        "bakeoff.endpoint": c["endpoint"],
        "bakeoff.suite": c["suite"],
        "bakeoff.item_id": c["item_id"],
        "bakeoff.repeat": int(c["repeat"]),
        "bakeoff.attempts": int(c["n_attempts"]),
        "bakeoff.cached": bool(c["cached"]),
    }
    for key, name in (("temperature", "temperature"), ("max_tokens", "max_tokens")):
        if isinstance(body.get(key), int | float) and not isinstance(body.get(key), bool):
            attrs[f"gen_ai.request.{name}"] = body[key]
    optional = {
        "gen_ai.response.model": c["response_model"],
        "gen_ai.usage.input_tokens": c["prompt_tokens"],
        "gen_ai.usage.output_tokens": c["completion_tokens"],
        "bakeoff.ttft_ms": c["ttft_ms"],
        "bakeoff.upstream": c["upstream"],
        "bakeoff.cost_usd": c["cost_usd"],
        "bakeoff.score": None if score is None else score["value"],
        "http.response.status_code": c["http_status"],
    }
    attrs.update({k: v for k, v in optional.items() if v is not None})
    if c["finish_reason"]:
        attrs["gen_ai.response.finish_reasons"] = [c["finish_reason"]]
    if c["status"] != "ok":
        attrs["error.type"] = c["error_class"] or "error"
    return attrs


def send_run(
    store: Store, run_id: str, endpoint: str, *, headers: dict[str, str] | None = None
) -> int:
    """Send the run's calls as spans to the OTLP/HTTP collector at `endpoint` (its base URL, or
    the full `/v1/traces` URL). Returns the number of call spans sent."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import Status, StatusCode, set_span_in_context
    except ImportError:
        raise OtelError("OpenTelemetry export needs: pip install 'bakeoff[otel]'") from None
    from bakeoff._version import __version__

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    run = store.run(run_id)
    if run is None:
        raise OtelError(f"no run {run_id}")
    lineup = lineup_of_run(store, run_id)
    eps = {e.name: e for e in lineup.endpoints}
    first: dict[str, Row] = {}
    for s in store.scores(run_id, light=True):
        first.setdefault(s["call_id"], s)
    calls = store.calls(run_id)
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bakeoff", "service.version": __version__})
    )
    exporter = _Checked(OTLPSpanExporter(endpoint=url, headers=headers, timeout=10))
    # _Checked is a duck-typed SpanExporter (the SDK is optional, so it cannot subclass it here)
    processor = BatchSpanProcessor(exporter, max_export_batch_size=256)  # type: ignore[arg-type]
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bakeoff", __version__)
    start = min((c["started_at"] for c in calls), default=None)
    end = max((c["finished_at"] for c in calls), default=None)
    root = tracer.start_span(
        f"bakeoff run {run_id}",
        start_time=_ns(start),
        attributes={"bakeoff.run_id": run_id, "bakeoff.calls": len(calls)},
    )
    ctx = set_span_in_context(root)
    for c in calls:
        ep = eps.get(c["endpoint"])
        attrs = _attributes(c, ep, first.get(c["id"]))
        span = tracer.start_span(
            f"{attrs['gen_ai.operation.name']} {attrs['gen_ai.request.model']}",
            context=ctx,
            start_time=_ns(c["started_at"]),
            attributes=attrs,
        )
        if c["status"] != "ok":
            span.set_status(Status(StatusCode.ERROR, str(c["error_class"] or "")))
        span.end(end_time=_ns(c["finished_at"]))
    root.end(end_time=_ns(end))
    flushed = processor.force_flush(30_000)
    provider.shutdown()
    if not flushed or exporter.failed:
        raise OtelError(
            f"the collector at {url} did not take the spans"
            + (f" ({exporter.failed} batches refused or unreachable)" if exporter.failed else "")
        )
    return len(calls)


class _Checked:
    """The OTLP exporter, counting the batches it could not deliver (the SDK only logs them)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            self.failed += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))
