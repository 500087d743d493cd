"""The audit's analysis never blocks the event loop: a reference scorer that drips one byte a
second (a hostile or broken scorer server) cannot keep a SIGTERM from ending the run, with its
calls stored (issue #31, item 2: it was ignored for 45 s, the scorer's urllib on the loop)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time

from conftest import BAKEOFF

SCORING = threading.Event()


class Drip(http.server.BaseHTTPRequestHandler):
    """Chat answers at once; `/v1/completions` (the scorer's echo) drips a byte a second."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._json({"object": "list", "data": [{"id": "m", "object": "model"}]})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        if self.path.endswith("/chat/completions"):
            msg = {"role": "assistant", "content": "The reference answer."}
            choice = {"index": 0, "message": msg, "finish_reason": "stop"}
            usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
            return self._json(
                {"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        if not self.path.endswith("/v1/completions"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        SCORING.set()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            for _ in range(600):  # ten minutes of one byte a second
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass


def test_sigterm_ends_an_audit_whose_scorer_drips(tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}/v1"
    lineup = tmp_path / "l.yaml"
    lineup.write_text(
        "reference: ref\nrun: {suites: []}\n"
        "audit: {regimes: [greedy], budget: 10, batch: 10, scorer: endpoint,"
        " scorer_template: '{% for m in messages %}{{ m.content }}{% endfor %}'}\n"
        "endpoints:\n"
        f"  - {{name: ref, provider: openai, base_url: '{url}', model: m,"
        " api_key_env: BAKEOFF_DRIP_API_KEY}\n"
        "  - {name: other, provider: fake, fake: {mode: fixed, reply: 'Something else.'}}\n"
    )
    db = tmp_path / "a.db"
    env = {**os.environ, "BAKEOFF_DRIP_API_KEY": "k" * 24}
    proc = subprocess.Popen(
        [*BAKEOFF, "audit", "-c", str(lineup), "--db", str(db), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert SCORING.wait(120), "the audit never asked the scorer"
        time.sleep(1.0)  # well inside the drip
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        srv.shutdown()
        srv.server_close()
    print(f"SIGTERM to exit, scorer dripping: {took:.2f} s")
    assert proc.returncode == 130, err
    assert took < 30  # the scorer's own deadline is 120 s: it did not wait for the drip
    import sqlite3

    with sqlite3.connect(db) as con:
        n, status = con.execute(
            "SELECT (SELECT COUNT(*) FROM calls WHERE status = 'ok'), status FROM runs"
        ).fetchone()
    assert n >= 20 and status == "interrupted"  # the calls made are kept; --resume goes on
