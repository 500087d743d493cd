"""A weight-perturbed F16: "another model" for the fidelity audit's tests — the same tokenizer, chat
template and architecture, weights the reference's plus seeded noise, so a server of it speaks
fluently and answers otherwise.

Derived like the quantization ladder (`_assets.variant_path`): from the F16 in the same cache folder
(keyed by the source's hash), written under a temporary name and renamed into place under the
folder's file lock, never committed. Every F16 matrix (the 2-D weights; the F32 norms are left
alone) gets independent Gaussian noise of `SCALE` times the matrix's own standard deviation, drawn
from one generator seeded by `SEED` in the file's tensor order, so the file is the same on every
machine with the same source.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PERTURBED = "F16_PERTURBED"
"""The variant's name (`local: {variant: F16_PERTURBED}`)."""
SCALE = 0.02
"""Noise per weight, in standard deviations of its matrix. Measured (bench/perturbed_f16.py: 20
chat prompts, 48 greedy tokens, llama.cpp, no repetition penalty): at 0.02, 17 of 20 answers
differ from F16's and read fluently ("The capital of France is Paris, France."); at 0.05 20/20;
at 0.1 20/20 with loops ("the mortal is the mortal is ...")."""
SEED = 20251208


def perturb(src: Path, dst: Path, *, scale: float = SCALE, seed: int = SEED) -> None:
    """Copy the GGUF `src` to `dst` and add the noise to its F16 matrices, in place in the copy."""
    import gguf
    import numpy as np

    shutil.copyfile(src, dst)
    reader = gguf.GGUFReader(dst, "r+")
    rng = np.random.default_rng(seed)
    for t in reader.tensors:
        if t.tensor_type != gguf.GGMLQuantizationType.F16 or len(t.shape) < 2:
            continue
        w = t.data  # a writable view of the copy's bytes
        std = float(np.std(w, dtype=np.float64))
        noise = rng.standard_normal(w.shape, dtype=np.float32) * (scale * std)
        w[...] = (w.astype(np.float32) + noise).astype(np.float16)
    reader.data.flush()
    del reader
    with open(dst, "rb+") as fh:
        os.fsync(fh.fileno())
