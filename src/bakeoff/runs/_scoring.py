"""Scoring that always ends, and never holds the event loop past a short, linear step.

A reply is scored on the event loop only when its suite's scorers are linear in the reply
(`linear_scoring`: the built-in suites, whose regexes take each run of characters whole) and it is
short (`INLINE_CHARS`): milliseconds. Every other reply — a long one, a lineup's `json_schema` (whose
`pattern` keywords Python's backtracking `re` runs), a plugin's suite — is scored in a separate
process under a deadline (`BAKEOFF_SCORE_TIMEOUT_S`, default 60 s). A process, not a thread: a
thread in a regex cannot be stopped, and `asyncio.run` waits for it, so SIGTERM was ignored for
good; a process is killed. A reply past the deadline keeps its call, with one failed score
`score_timeout`; the process is killed and waited for (nothing left burning CPU), and the next reply
gets a fresh one. A cancelled run (Ctrl-C, SIGTERM) kills it the same way at once.

The worker's side is `main(PARENT_PID)`: length-prefixed pickles on stdin and a private copy of
stdout; it dies with its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import sys
from collections.abc import Callable, Mapping

from bakeoff.endpoints import CallResult
from bakeoff.suites import Item, Score, Suite, as_suite

INLINE_CHARS = 20_000
"""Replies up to this long (text, reasoning and tool-call arguments) are scored on the event loop
when their suite's scorers are linear; longer ones, and every reply of other suites, in the worker
process."""
SCORE_TIMEOUT_S = 60.0
"""How long the worker may take over one reply (`BAKEOFF_SCORE_TIMEOUT_S` overrides)."""
_HEAD = 8
_START_S = 120.0
"""How long the worker may take to start (Python and bakeoff's imports, on a loaded machine)."""


def score_timeout_s(environ: Mapping[str, str] | None = None) -> float:
    env = os.environ if environ is None else environ
    raw = env.get("BAKEOFF_SCORE_TIMEOUT_S", "")
    try:
        value = float(raw) if raw else SCORE_TIMEOUT_S
    except ValueError:
        return SCORE_TIMEOUT_S
    return value if 0 < value < 86_400 else SCORE_TIMEOUT_S


def failed_score(detail: str) -> Score:
    """A scorer that could not score: one failed `scorer_error` score (never a lost call)."""
    return Score(scorer="scorer_error", value=0.0, passed=False, detail=detail[:500])


def scores_of(
    score: Callable[[Item, CallResult], list[Score]], item: Item, result: CallResult
) -> list[Score]:
    """A suite's scores of a result (`score`: its method); a scorer that raises is one failed
    `scorer_error` score."""
    try:
        return list(score(item, result))
    except Exception as e:
        return [failed_score(f"{type(e).__name__}: {e}")]


def scores_inline(suite: Suite, result: CallResult) -> bool:
    """Whether this reply is scored on the event loop: linear scorers, a short reply."""
    size = len(result.text) + len(result.reasoning or "")
    size += sum(len(tc.arguments or "") for tc in result.tool_calls)
    return suite.linear_scoring and size <= INLINE_CHARS


def timeout_score(timeout: float) -> Score:
    return Score(
        scorer="score_timeout",
        value=0.0,
        passed=False,
        detail=f"scoring took over {timeout:g} s (BAKEOFF_SCORE_TIMEOUT_S); its process was killed",
    )


class ScoringWorker:
    """One scoring process, started when first needed, one reply at a time."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            code = f"from bakeoff.runs._scoring import main; main({os.getpid()})"
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                code,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
            assert self._proc.stdout is not None
            try:  # its imports are not the reply's time: the deadline starts once it is ready
                async with asyncio.timeout(_START_S):
                    await self._proc.stdout.readexactly(1)
            except BaseException:
                self._kill()
                raise
        return self._proc

    async def score(
        self, suite: str, dataset: str | None, item: Item, result: CallResult, timeout: float
    ) -> list[Score]:
        """The scores of `result` by suite `suite` (`dataset`: the lineup's dataset spec as JSON,
        for a dataset suite), or one `score_timeout` score when they take over `timeout` s."""
        async with self._lock:
            try:
                proc = await self._started()
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
                await self.close()
                return [failed_score(f"the scoring process did not start ({type(e).__name__})")]
            assert proc.stdin is not None and proc.stdout is not None
            try:
                async with asyncio.timeout(timeout):
                    body = pickle.dumps((suite, dataset, item, result), pickle.HIGHEST_PROTOCOL)
                    proc.stdin.write(len(body).to_bytes(_HEAD, "big") + body)
                    await proc.stdin.drain()
                    n = int.from_bytes(await proc.stdout.readexactly(_HEAD), "big")
                    scores: list[Score] = pickle.loads(await proc.stdout.readexactly(n))
                    return scores
            except TimeoutError:
                await self.close()
                return [timeout_score(timeout)]
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                await self.close()
                return [failed_score(f"the scoring process ended ({type(e).__name__})")]
            except BaseException:  # cancelled: killed at once, reaped by close()
                self._kill()
                raise

    def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def close(self) -> None:
        """Kill the process (whatever it is doing) and wait for it to be gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


def _die_with(parent: int) -> None:
    """Be killed when the parent dies (Linux: PR_SET_PDEATHSIG), even mid-regex."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


def _suite(name: str, dataset: str | None) -> Suite:
    if dataset is not None:
        from bakeoff.lineups import DatasetSpec
        from bakeoff.suites.datasets import DatasetSuite

        return as_suite(DatasetSuite(DatasetSpec.model_validate_json(dataset)))
    from bakeoff.plugins import get_suite

    return as_suite(get_suite(name))


def main(parent: int) -> None:
    """The worker: read a job, write its scores, until stdin closes."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent kills us
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a scorer's print goes to stderr, not into the replies
    inp = sys.stdin.buffer
    out.write(b"R")  # ready: imports done
    out.flush()
    scorers: dict[tuple[str, str | None], Callable[[Item, CallResult], list[Score]]] = {}
    while True:
        head = inp.read(_HEAD)
        if len(head) < _HEAD:
            return
        name, dataset, item, result = pickle.loads(inp.read(int.from_bytes(head, "big")))
        key = (name, dataset)
        if key not in scorers:
            try:
                scorers[key] = _suite(name, dataset).score
            except Exception as e:
                where = "in the scoring process, which finds suites through the entry points"
                scorers[key] = _Broken(f"{type(e).__name__}: {e} ({where})").score
        body = pickle.dumps(scores_of(scorers[key], item, result), pickle.HIGHEST_PROTOCOL)
        out.write(len(body).to_bytes(_HEAD, "big") + body)
        out.flush()


class _Broken:
    def __init__(self, why: str) -> None:
        self.why = why

    def score(self, item: Item, result: CallResult) -> list[Score]:
        raise RuntimeError(self.why)
