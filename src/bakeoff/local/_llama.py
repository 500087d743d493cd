"""One workaround for llama.cpp, shared by the in-process reference scorer and the local servers.

On a Xeon with AMX (llama-cpp-python 0.3.36, built natively; both this machine and CI's) llama.cpp
repacks the weights of every quantized GGUF (Q8_0, Q4_K_M, Q2_K) into its "extra buffer types", and
the first batched decode then crashes the process with a segmentation fault: in-process it killed
the test run, behind `python -m llama_cpp.server` the server died mid-response. One token at a time
worked, and so did F16. With `use_extra_bufts` off the weights stay as stored and nothing crashes.
llama-cpp-python has no argument for it, so its default model parameters are wrapped while a model
loads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def no_repacked_weights() -> Iterator[None]:
    """Models loaded meanwhile keep their weights as stored (llama.cpp's `use_extra_bufts` off)."""
    import llama_cpp.llama as llama_module

    lib = llama_module.llama_cpp
    with _PARAMS_LOCK:
        default = lib.llama_model_default_params

        def params() -> Any:
            p = default()
            if hasattr(p, "use_extra_bufts"):
                p.use_extra_bufts = False
            return p

        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = default
