"""The embedded default: the packaged SmolLM2-135M-Instruct at several precisions, served by real
llama.cpp servers on loopback (or, with engine `transformers`, by bakeoff's own server over
PyTorch: `_torch_server.py`)."""

from bakeoff.local._assets import (
    MODEL_NAME,
    VARIANTS,
    AssetError,
    cache_dir,
    clean,
    default_lineup_path,
    source_model,
    variant_path,
)
from bakeoff.local._servers import (
    LocalServer,
    ServerError,
    ServerSettings,
    answers,
    free_port,
    launch,
    port_in_use,
    stop,
    threads_per_server,
    wait_ready,
)

__all__ = [
    "MODEL_NAME",
    "VARIANTS",
    "AssetError",
    "LocalServer",
    "ServerError",
    "ServerSettings",
    "answers",
    "cache_dir",
    "clean",
    "default_lineup_path",
    "free_port",
    "launch",
    "port_in_use",
    "source_model",
    "stop",
    "threads_per_server",
    "variant_path",
    "wait_ready",
]
