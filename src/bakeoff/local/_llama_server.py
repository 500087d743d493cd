"""`python -m bakeoff.local._llama_server ARGS`: llama-cpp-python's own server
(`python -m llama_cpp.server ARGS`, the same arguments), with the model loaded without repacked
weights (`_llama.no_repacked_weights`: quantized GGUFs crashed the server on CPUs with AMX)."""

from __future__ import annotations

from bakeoff.local._llama import no_repacked_weights


def main() -> None:
    from llama_cpp.server.__main__ import main as serve

    # the server loads its model at start-up, before it serves: the wrapper stays on for its life
    with no_repacked_weights():
        serve()


if __name__ == "__main__":
    main()
