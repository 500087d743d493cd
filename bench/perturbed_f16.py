"""How far the perturbed F16 (`local/_perturb.py`, variant `F16_PERTURBED`) is from F16: the share of
20 chat prompts whose 48-token greedy answer differs from F16's, per noise scale, with the first
answers side by side to see that it still speaks.

Each scale is written to a temporary file (the cached variant is not touched) and run in-process by
llama.cpp with a neutral sampler (no repeat penalty, no top-k, no min-p).

Usage: python bench/perturbed_f16.py [SCALE ...]   (default 0.02 0.05 0.1; ~4 min per scale on
2 busy cores). Measured here: 0.02 → 17/20 differ, fluent; 0.05 → 20/20; 0.1 → 20/20 with loops.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three colours.",
    "What is 7 times 8?",
    "Give me a tip for sleeping well.",
    "Who wrote Hamlet?",
    "Describe a cat.",
    "What is a prime number?",
    "Translate 'hello' into Spanish.",
    "Why is the sky blue?",
    "Name a famous scientist.",
    "How do I boil an egg?",
    "What is the largest planet?",
    "Tell me a joke.",
    "What does a computer do?",
    "Summarise the plot of Cinderella.",
    "What is gravity?",
    "Suggest a name for a dog.",
    "How many days are in a week?",
]


def answers(path: Path) -> list[str]:
    import llama_cpp

    m = llama_cpp.Llama(str(path), n_ctx=512, n_threads=2, verbose=False, seed=0)
    out = []
    for p in PROMPTS:
        r = m.create_chat_completion(
            [{"role": "user", "content": p}],
            temperature=0,
            max_tokens=48,
            repeat_penalty=1.0,
            top_k=0,
            min_p=0.0,
        )
        out.append(str(r["choices"][0]["message"]["content"]))  # type: ignore[index]
    return out


def main(scales: list[float]) -> None:
    from bakeoff.local import variant_path
    from bakeoff.local._perturb import perturb

    f16 = variant_path("F16")
    base = answers(f16)
    with tempfile.TemporaryDirectory() as d:
        for s in scales:
            dst = Path(d) / f"p{s}.gguf"
            perturb(f16, dst, scale=s)
            got = answers(dst)
            dst.unlink()
            differ = sum(x != y for x, y in zip(base, got, strict=True))
            print(f"scale {s}: {differ}/{len(PROMPTS)} greedy answers differ from F16's")
            for x, y in list(zip(base, got, strict=True))[:3]:
                print(f"  F16      : {x[:90]!r}\n  perturbed: {y[:90]!r}")


if __name__ == "__main__":
    main([float(a) for a in sys.argv[1:]] or [0.02, 0.05, 0.1])
