"""Counted bytes and FLOPs of a forward pass against hand computation and torch's FLOP counter;
the measuring helpers; argument errors. Tiny random models only (fast)."""

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from llm_tutorial.roofline import (
    attention_shape,
    forward_bytes,
    forward_flops,
    kv_cache_bytes_per_token,
    matmul_flops,
    memory_bandwidth,
    roofline_seconds,
    weight_bytes_read,
)


@pytest.fixture
def eager_gpt2(tiny_gpt2):
    model = copy.deepcopy(tiny_gpt2)  # the session's model stays as it is
    model.set_attn_implementation("eager")
    return model


def test_attention_shape_from_llama_and_gpt2_configs(tiny_llama, tiny_gpt2):
    assert attention_shape(tiny_llama.config) == {"layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 8}
    assert attention_shape(tiny_gpt2.config) == {"layers": 2, "heads": 2, "kv_heads": 2, "head_dim": 32}


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_kv_cache_bytes_per_token_is_what_the_cache_holds(name, request):
    model = request.getfixturevalue(name)
    ids = torch.arange(3, 10)[None]
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert kv_cache_bytes_per_token(model) == held / ids.shape[1]


def test_kv_cache_bytes_per_token_from_a_config_on_paper():
    from transformers import LlamaConfig

    # Llama-3.1-8B's values (its config.json): 32 layers, 8 key/value heads of 128
    config = LlamaConfig(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128)
    assert kv_cache_bytes_per_token(config, torch.bfloat16) == 2 * 32 * 8 * 128 * 2
    assert kv_cache_bytes_per_token(config, "float32") == 2 * 32 * 8 * 128 * 4
    assert kv_cache_bytes_per_token(config) == 2 * 32 * 8 * 128 * 4  # no dtype in the config: float32


def test_kv_cache_bytes_follow_the_model_dtype(tiny_llama):
    assert kv_cache_bytes_per_token(tiny_llama.to(torch.bfloat16)) == 2 * 2 * 2 * 8 * 2


def test_weight_bytes_read_leaves_out_lookup_tables(tiny_llama, tiny_gpt2):
    # Llama here: untied embeddings, a lookup table apart from lm_head
    everything = sum(p.nbytes for p in tiny_llama.parameters())
    assert weight_bytes_read(tiny_llama) == everything - tiny_llama.model.embed_tokens.weight.nbytes
    # GPT-2: the token embeddings are lm_head's weight (read whole); the position table is a lookup
    distinct = sum(p.nbytes for p in tiny_gpt2.parameters())  # parameters() yields a tied weight once
    assert weight_bytes_read(tiny_gpt2) == distinct - tiny_gpt2.transformer.wpe.weight.nbytes


def test_forward_bytes_by_hand(tiny_llama, tiny_gpt2):
    kv = kv_cache_bytes_per_token(tiny_llama)
    row = 32 * 4  # one float32 embedding row
    assert forward_bytes(tiny_llama, 1, past_tokens=9, batch_size=3) == weight_bytes_read(tiny_llama) + 3 * (row + 10 * kv)
    kv = kv_cache_bytes_per_token(tiny_gpt2)
    assert forward_bytes(tiny_gpt2, 5) == weight_bytes_read(tiny_gpt2) + 5 * 64 * 4 + 5 * kv  # wpe rows


@pytest.mark.parametrize("name", ["tiny_llama", "eager_gpt2"])
def test_forward_flops_match_torch_flop_counter(name, request):
    model = request.getfixturevalue(name)
    model.set_attn_implementation("eager")  # the sdpa kernel is not counted by FlopCounterMode
    ids = torch.arange(3, 10).repeat(2, 1)  # batch 2, 7 tokens
    with torch.no_grad(), FlopCounterMode(display=False) as prefill:
        out = model(ids, use_cache=True)
    with torch.no_grad(), FlopCounterMode(display=False) as step:
        model(ids[:, -1:], past_key_values=out.past_key_values, use_cache=True)
    with torch.no_grad(), FlopCounterMode(display=False) as last_logits:
        model(ids, logits_to_keep=1)
    assert forward_flops(model, 7, batch_size=2) == prefill.get_total_flops()
    assert forward_flops(model, 1, past_tokens=7, batch_size=2) == step.get_total_flops()
    assert forward_flops(model, 7, batch_size=2, logits_to_keep=1) == last_logits.get_total_flops()


def test_forward_flops_by_hand(tiny_llama):
    matrices = 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64  # per layer: q, o; k, v (GQA); gate, up, down
    head = tiny_llama.config.vocab_size * 32
    attention = 4 * 2 * 4 * 8  # 2 layers, 4 heads of 8, per (query, key) pair
    assert forward_flops(tiny_llama, 1, past_tokens=4) == 2 * (2 * matrices + head) + attention * 5


def test_roofline_seconds_picks_the_slower_limit():
    assert roofline_seconds(1e9, 1e9, bandwidth=1e10, flop_rate=1e11) == pytest.approx(0.1)  # memory
    assert roofline_seconds(1e6, 1e12, bandwidth=1e10, flop_rate=1e11) == pytest.approx(10.0)  # compute


def test_measurements_are_positive_rates():
    assert memory_bandwidth(2**16, repeats=1) > 0
    assert matmul_flops(16, repeats=1, dtype=torch.bfloat16) > 0


def test_argument_errors(tiny_llama):
    with pytest.raises(ValueError, match="new_tokens"):
        forward_flops(tiny_llama, 0)
    with pytest.raises(TypeError, match="batch_size"):
        forward_bytes(tiny_llama, batch_size=True)
    with pytest.raises(ValueError, match="past_tokens"):
        forward_bytes(tiny_llama, past_tokens=-1)
    with pytest.raises(ValueError, match="logits_to_keep"):
        forward_flops(tiny_llama, logits_to_keep=-1)
    with pytest.raises(TypeError, match="model must be"):
        weight_bytes_read(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="config must be"):
        attention_shape({"num_hidden_layers": 2})
    with pytest.raises(ValueError, match="dtype"):
        kv_cache_bytes_per_token(tiny_llama, "int8")
    with pytest.raises(ValueError, match="repeats"):
        memory_bandwidth(repeats=0)
    with pytest.raises(ValueError, match="size"):
        matmul_flops(0)
    with pytest.raises(ValueError, match="bandwidth"):
        roofline_seconds(1, 1, bandwidth=0, flop_rate=1)
