"""OpenTelemetry: a run's calls reach a real OTLP/HTTP receiver on loopback (which decodes the
protobuf with `opentelemetry-proto`) as GenAI spans, one per stored call, with no key in them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from conftest import bakeoff

KEY = "sk-otel-test-1234567890abcdef"


class Receiver:
    """An OTLP/HTTP trace receiver in a thread: every request's raw bytes and decoded spans."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.raw: list[bytes] = []
        self.spans: list[dict] = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _serve(self) -> None:
        from aiohttp import web

        async def traces(request):
            from google.protobuf.json_format import MessageToDict
            from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

            body = await request.read()
            self.raw.append(body)
            msg = trace_service_pb2.ExportTraceServiceRequest()
            msg.ParseFromString(body)
            for rs in msg.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        d = MessageToDict(span)
                        d["attrs"] = {
                            a["key"]: next(iter(a["value"].values()), None)
                            for a in d.get("attributes", [])
                        }
                        self.spans.append(d)
            return web.Response(
                body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
                status=self.status,
                content_type="application/x-protobuf",
            )

        async def main():
            app = web.Application()
            app.router.add_post("/v1/traces", traces)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            self.ready.set()
            await asyncio.Event().wait()

        self.loop.run_until_complete(main())


def _lineup(tmp_path, fake_url: str):
    lu = tmp_path / "l.yaml"
    lu.write_text(
        "reference: ref\n"
        "run: {suites: [arith], limit: 4, probe: false}\n"
        "audit: {budget: 10, batch: 10}\n"
        "endpoints:\n"
        f"  - {{name: ref, base_url: '{fake_url}', model: fake-model, api_key_env: OTEL_TEST_KEY}}\n"
        "  - {name: other, provider: fake, fake: {mode: fixed, reply: '7', faults: {auth: 0.5}},"
        " retry: {max_retries: 0}}\n"
    )
    return lu


def test_a_run_sends_one_genai_span_per_call_and_no_key(tmp_path, fake_proc):
    rx = Receiver()
    srv = fake_proc()
    lu = _lineup(tmp_path, srv.url)
    db = tmp_path / "o.db"
    r = bakeoff(
        "run", "-c", str(lu), "--db", str(db), "--no-report", "--otel-endpoint", rx.url,
        "--allow-errors", env={"OTEL_TEST_KEY": KEY},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    con = sqlite3.connect(db)
    calls = {row[0]: row for row in con.execute("SELECT id, endpoint, status FROM calls")}
    roots = [s for s in rx.spans if s["name"].startswith("bakeoff run")]
    children = [s for s in rx.spans if not s["name"].startswith("bakeoff run")]
    assert len(roots) == 1 and len(children) == len(calls) > 8
    assert {s.get("parentSpanId") for s in children} == {roots[0]["spanId"]}
    for s in children:
        a = s["attrs"]
        assert a["gen_ai.operation.name"] == "chat" and s["name"].startswith("chat ")
        assert a["gen_ai.request.model"] in ("fake-model", "default")
        assert a["gen_ai.provider.name"] in ("openai", "fake")
        assert a["bakeoff.endpoint"] in ("ref", "other")
        if "error.type" in a:
            assert a["error.type"] == "auth" and s["status"]["code"] == "STATUS_CODE_ERROR"
        else:
            assert int(a["gen_ai.usage.input_tokens"]) > 0
    assert sum("error.type" in s["attrs"] for s in children) == sum(
        1 for _, _, st in calls.values() if st != "ok"
    )
    assert all(KEY.encode() not in raw for raw in rx.raw)
    # sent again from the store after the fact: the same spans
    before = len(rx.spans)
    again = bakeoff("export", "last", "--db", str(db), "--otel-endpoint", rx.url)
    assert again.returncode == 0 and f"sent {len(calls)} call spans" in again.stderr
    assert len(rx.spans) - before == len(calls) + 1


def test_a_collector_that_refuses_is_a_clear_error(tmp_path, fake_proc):
    rx = Receiver(status=503)
    srv = fake_proc()
    lu = _lineup(tmp_path, srv.url)
    db = tmp_path / "o.db"
    r = bakeoff(
        "run", "-c", str(lu), "--db", str(db), "--no-report", "--allow-errors",
        env={"OTEL_TEST_KEY": KEY},
    )  # fmt: skip
    assert r.returncode == 0
    bad = bakeoff("export", "last", "--db", str(db), "--otel-endpoint", rx.url)
    assert bad.returncode == 2 and "did not take the spans" in bad.stderr
    assert "Traceback" not in bad.stderr
