"""Time per code item through the code suite's real scoring path (`CodeSuite.score`: the bubblewrap
sandbox, the function called on the eight hidden tests' arguments, answers compared here), one
item at a time, for the reference replies (all pass) and deliberately wrong ones (all fail).

    .venv/bin/python bench/code_sandbox.py [N_ITEMS]
"""

from __future__ import annotations

import statistics
import sys
import time

from bakeoff.endpoints import CallResult
from bakeoff.sandbox import isolation_layers
from bakeoff.suites.code import CodeSuite


def main(n: int = 30) -> None:
    suite = CodeSuite()
    items = suite.items(seed=0, n=n)
    print("sandbox:", ", ".join(isolation_layers()))
    for kind in ("reference", "wrong"):
        times, passed = [], 0
        for it in items:
            reply = suite.reference_reply(it) if kind == "reference" else suite.wrong_reply(it)
            t0 = time.perf_counter()
            scores = suite.score(it, CallResult(text=reply.content))
            times.append(time.perf_counter() - t0)
            passed += bool(scores[0].passed)
        print(
            f"{kind}: {passed}/{len(items)} pass; per item median "
            f"{statistics.median(times) * 1000:.0f} ms, mean {statistics.mean(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
