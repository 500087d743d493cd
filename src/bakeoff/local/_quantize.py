"""`python -m bakeoff.local._quantize SRC DST FTYPE`: llama.cpp's quantizer, in its own process."""

from __future__ import annotations

import ctypes
import sys


def main(argv: list[str]) -> int:
    src, dst, ftype = argv
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype)
    params.allow_requantize = True
    params.nthread = 0  # all cores
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
