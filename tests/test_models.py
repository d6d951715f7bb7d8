"""The loader: default model, env override, local folders, errors, dtypes and quantization."""

from pathlib import Path

import pytest
import torch
from transformers import BitsAndBytesConfig, GPT2Config, GPT2LMHeadModel

import llm_tutorial as lt


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory, tokenizer):
    """A randomly initialised GPT-2 (learned absolute positions) saved with the embedded tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_default_is_the_embedded_model(model, monkeypatch):
    monkeypatch.delenv("LLM_TUTORIAL_MODEL", raising=False)
    assert lt.model_name() == "embedded"
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.device.type == "cpu"
    assert model.dtype == torch.float32
    assert not model.training


def test_default_model_answers_the_capital_of_france(model, tokenizer):
    answer = lt.ask(model, tokenizer, "What is the capital of France?")
    assert "Paris" in answer


def test_warm_load_reuses_the_converted_folder(monkeypatch):
    from llm_tutorial import embedded

    lt.load_model()  # converted once (or earlier)

    def no_conversion(*args, **kwargs):
        raise AssertionError("a warm load must not convert the GGUF again")

    monkeypatch.setattr(embedded, "_convert", no_conversion)
    assert lt.load_model() is not None and lt.load_tokenizer() is not None


def test_environment_variable_chooses_another_model(tiny_gpt2, monkeypatch, tokenizer):
    monkeypatch.setenv("LLM_TUTORIAL_MODEL", str(tiny_gpt2))
    model = lt.load_model()
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert lt.load_tokenizer().vocab_size == tokenizer.vocab_size
    assert lt.describe_model() == str(tiny_gpt2)
    ids = tokenizer("Hello", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert out.shape == (1, ids["input_ids"].shape[1] + 3)


def test_explicit_name_beats_the_environment(tiny_gpt2, monkeypatch):
    monkeypatch.setenv("LLM_TUTORIAL_MODEL", "no-such-org/no-such-model")
    assert type(lt.load_model(tiny_gpt2)).__name__ == "GPT2LMHeadModel"  # a Path works too
    assert type(lt.load_model(str(tiny_gpt2))).__name__ == "GPT2LMHeadModel"


def test_missing_hub_model_gives_one_clear_error(monkeypatch):
    monkeypatch.delenv("LLM_TUTORIAL_MODEL", raising=False)
    with pytest.raises(lt.ModelNotFoundError) as info:
        lt.load_model("no-such-org/no-such-model")
    message = str(info.value)
    assert "no-such-org/no-such-model" in message
    assert "Tried:" in message and "HF_HUB_OFFLINE=1" in message
    assert "LLM_TUTORIAL_MODEL" in message and "hf download" in message
    assert len(message.splitlines()) <= 10
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(lt.ModelNotFoundError):
        lt.load_tokenizer("no-such-org/no-such-model")


def test_missing_folder_and_folder_without_config(tmp_path):
    with pytest.raises(lt.ModelNotFoundError, match="does not exist"):
        lt.load_model(tmp_path / "nope" / "model")
    with pytest.raises(lt.ModelNotFoundError, match="does not exist"):
        lt.load_model("./nope")
    with pytest.raises(lt.ModelNotFoundError, match="no config.json"):
        lt.load_model(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error", "phrase"),
    [
        ({"dtype": "float8"}, ValueError, "dtype must be one of"),
        ({"dtype": torch.int8}, ValueError, "floating-point"),
        ({"dtype": 16}, TypeError, "dtype must be"),
        ({"quantization": "int3"}, ValueError, "quantization must be one of"),
        ({"quantization": 8}, TypeError, "quantization must be"),
        ({"torch_dtype": torch.float16}, TypeError, "dtype="),
        ({"load_in_8bit": True}, TypeError, "quantization="),
    ],
)
def test_bad_arguments_are_named(kwargs, error, phrase):
    with pytest.raises(error, match=phrase):
        lt.load_model(**kwargs)


def test_bad_names():
    with pytest.raises(TypeError, match="name must be"):
        lt.load_model(42)
    with pytest.raises(ValueError, match="name must not be empty"):
        lt.load_model("  ")


def test_bfloat16_halves_the_weights(model):
    half = lt.load_model(dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    def weight_bytes(m):
        return sum(p.numel() * p.element_size() for p in m.parameters())

    # exactly half for the weights; get_memory_footprint() also counts buffers (RoPE's inv_freq),
    # which stay float32, so it is 256 bytes more than half here
    assert weight_bytes(half) * 2 == weight_bytes(model)


def test_device_map_auto_on_one_device():
    model = lt.load_model(device_map="auto")
    # with a single device everything lands there (transformers records no split then)
    assert {p.device.type for p in model.parameters()} == {lt.default_device()}
    assert set(getattr(model, "hf_device_map", {"": "cpu"}).values()) <= {"cpu", 0, "cuda:0"}


def test_quantization_configs():
    assert lt.quantization_config("8bit").load_in_8bit
    nf4 = lt.quantization_config("nf4", dtype="bfloat16")
    assert nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4"
    assert nf4.bnb_4bit_compute_dtype == torch.bfloat16
    assert lt.quantization_config("fp4").bnb_4bit_compute_dtype == torch.float32
    custom = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True)
    assert lt.quantization_config(custom) is custom


def test_nf4_model_loads_and_answers(model, tokenizer):
    with lt.capture():  # bitsandbytes prints a CPU-kernel note; not what is tested here
        quantized = lt.load_model(quantization="nf4", dtype="bfloat16")
    kinds = {type(m).__name__ for m in quantized.modules()}
    assert "Linear4bit" in kinds
    assert quantized.model.layers[0].mlp.up_proj.compute_dtype == torch.bfloat16
    # the embeddings (tied with the head) are not quantized: in bfloat16 the whole model is
    # under a quarter of float32; with float32 embeddings it would be about 0.31
    assert quantized.get_memory_footprint() < 0.25 * model.get_memory_footprint()
    # 8 tokens say it ("The capital of France is Paris, ..."); each 4-bit step is slow on a CPU
    assert "Paris" in lt.ask(quantized, tokenizer, "What is the capital of France?", max_new_tokens=8)


def test_resolve_model_returns_the_converted_folder():
    folder = Path(lt.resolve_model())
    assert (folder / "config.json").is_file()
    assert lt.resolve_model("gpt2") == "gpt2"
