"""Tests for llm_tutorial.measure: bytes, quantization constants, parameter counts, decoder and
linear layers."""

import pytest
import torch

import llm_tutorial as lt


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    """A tiny random Llama (untied head) saved to a folder, to quantize with bitsandbytes."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def quantized(folder, **options):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    with lt.capture():  # bitsandbytes logs machine-dependent messages on import
        return AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=BitsAndBytesConfig(**options), dtype=torch.bfloat16,
            device_map={"": "cpu"}).eval()


# --- bytes -------------------------------------------------------------------------------------

def test_weight_bytes_equals_get_memory_footprint(model):
    assert lt.weight_bytes(model) == model.get_memory_footprint()
    assert lt.bytes_by_device(model) == {"cpu": model.get_memory_footprint()}


def test_tied_weights_count_once(model):
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    params = lt.weight_bytes(model, include_buffers=False)
    assert params == 4 * model.num_parameters()


def test_sixteen_bit_parameters_take_exactly_half():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 3))
    full = lt.weight_bytes(net)
    assert lt.weight_bytes(net.to(torch.bfloat16)) * 2 == full == 4 * (50 * 8 + 8 * 3 + 3)


def test_meta_tensors_are_not_in_memory():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4, device="meta"))
    assert lt.bytes_by_device(net) == {"cpu": 80, "meta": 80}
    assert lt.weight_bytes(net) == 80


def test_buffers_are_optional():
    net = torch.nn.BatchNorm1d(4)  # 8 parameters, 9 buffers (mean, var, count)
    assert lt.weight_bytes(net, include_buffers=False) == 8 * 4
    assert lt.weight_bytes(net) == 8 * 4 + 8 * 4 + 8


@pytest.mark.parametrize("fn", [lt.weight_bytes, lt.bytes_by_device, lt.quantization_constant_bytes,
                                lt.parameter_counts])
def test_not_a_module_is_a_type_error(fn):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        fn("gpt2")


# --- quantization constants --------------------------------------------------------------------

def test_plain_model_has_no_quantization_constants(model):
    assert lt.quantization_constant_bytes(model) == 0


def linear_sizes(net, class_name):
    return [m for m in net.modules() if type(m).__name__ == class_name]


def blocks(layer, size):
    return -(-layer.weight.quant_state.shape.numel() // size)


def test_4bit_constants_by_hand(tiny_llama_dir):
    net = quantized(tiny_llama_dir, load_in_4bit=True, bnb_4bit_quant_type="nf4")
    layers = linear_sizes(net, "Linear4bit")
    assert len(layers) == 14  # 7 per decoder layer; lm_head is skipped
    expected = sum(4 * blocks(m, 64) + 16 * 4 for m in layers)
    assert lt.quantization_constant_bytes(net) == expected
    # and get_memory_footprint ignores them: it equals the bytes of parameters + buffers
    assert net.get_memory_footprint() == lt.weight_bytes(net)


def test_double_quantization_constants_by_hand(tiny_llama_dir):
    net = quantized(tiny_llama_dir, load_in_4bit=True, bnb_4bit_quant_type="nf4",
                    bnb_4bit_use_double_quant=True)
    layers = linear_sizes(net, "Linear4bit")
    expected = sum(blocks(m, 64) + 4 * -(-blocks(m, 64) // 256) + 16 * 4 + 4 + 256 * 4 for m in layers)
    assert lt.quantization_constant_bytes(net) == expected


def test_8bit_scales_are_counted_before_and_after_a_forward_pass(tiny_llama_dir):
    net = quantized(tiny_llama_dir, load_in_8bit=True)
    expected = 4 * sum(m.weight.shape[0] for m in linear_sizes(net, "Linear8bitLt"))
    assert lt.quantization_constant_bytes(net) == expected
    with lt.capture(), torch.inference_mode():
        net(torch.tensor([[1, 2, 3]]))
    assert net.model.layers[0].self_attn.q_proj.weight.SCB is None  # moved to the layer's state
    assert lt.quantization_constant_bytes(net) == expected


# --- parameter counts --------------------------------------------------------------------------

def test_parameter_counts_of_the_embedded_model(model):
    counts = lt.parameter_counts(model)
    c = model.config
    assert counts["total"] == model.num_parameters()
    assert counts["embeddings"] == c.vocab_size * c.hidden_size
    assert counts["head"] == 0  # tied to the embeddings, counted there
    assert counts["norms"] == (2 * c.num_hidden_layers + 1) * c.hidden_size
    assert counts["mlp"] == 3 * c.hidden_size * c.intermediate_size * c.num_hidden_layers
    assert counts["cross_attention"] == counts["other"] == 0
    assert list(counts) == ["embeddings", "attention", "cross_attention", "mlp", "norms", "head",
                            "other", "total"]


def test_untied_head_is_counted_as_head(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    net = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    counts = lt.parameter_counts(net)
    assert counts["head"] == counts["embeddings"] == 512 * 128
    assert counts["total"] == net.num_parameters()


def test_4bit_weights_count_as_the_weights_they_stand_for(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    full = lt.parameter_counts(AutoModelForCausalLM.from_pretrained(tiny_llama_dir))
    assert lt.parameter_counts(quantized(tiny_llama_dir, load_in_4bit=True)) == full


def test_other_architectures_are_split(tok):
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        GPT2Config,
        GPT2LMHeadModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    torch.manual_seed(0)
    vocab = len(tok)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_layer=2, n_embd=32, n_head=2, n_positions=16,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                             num_heads=4))
    bart = BartForConditionalGeneration(BartConfig(vocab_size=vocab, d_model=32, encoder_layers=1,
                                                   decoder_layers=1, encoder_attention_heads=2,
                                                   decoder_attention_heads=2, encoder_ffn_dim=64,
                                                   decoder_ffn_dim=64, max_position_embeddings=16))
    for net in (gpt2, t5, bart):
        counts = lt.parameter_counts(net)
        assert counts["total"] == net.num_parameters(), type(net).__name__
        assert counts["attention"] > 0 and counts["mlp"] > 0 and counts["norms"] > 0
        assert counts["other"] == 0, (type(net).__name__, counts)
    assert lt.parameter_counts(gpt2)["cross_attention"] == 0
    # T5 decoder cross-attention: q, k, v, o of d_model x (heads * d_kv), no relative bias
    assert lt.parameter_counts(t5)["cross_attention"] == 4 * 32 * 32
    assert lt.parameter_counts(bart)["cross_attention"] == 4 * (32 * 32 + 32)  # with biases
    assert lt.parameter_counts(gpt2)["embeddings"] == vocab * 32 + 16 * 32  # tokens + positions


# --- decoder_layers and linear_layers ----------------------------------------------------------

def _tiny(kind):
    """A tiny random causal LM of one architecture, and where its stack of layers lives."""
    import transformers as tf

    torch.manual_seed(0)
    small = dict(vocab_size=64, hidden_size=32, num_attention_heads=4, num_hidden_layers=3)
    builders = {
        "llama": (lambda: tf.LlamaForCausalLM(tf.LlamaConfig(intermediate_size=64, **small)), "model.layers"),
        "gpt2": (lambda: tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=64, n_embd=32, n_head=4, n_layer=3)),
                 "transformer.h"),
        "opt": (lambda: tf.OPTForCausalLM(tf.OPTConfig(ffn_dim=64, word_embed_proj_dim=32, **small)),
                "model.decoder.layers"),
        "gpt_neox": (lambda: tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(intermediate_size=64, **small)),
                     "gpt_neox.layers"),
        "qwen2_moe": (lambda: tf.Qwen2MoeForCausalLM(tf.Qwen2MoeConfig(
            intermediate_size=64, moe_intermediate_size=16, shared_expert_intermediate_size=16,
            num_experts=8, num_experts_per_tok=2, **small)), "model.layers"),
    }
    build, path = builders[kind]
    return build().eval(), path


@pytest.mark.parametrize("kind", ["llama", "gpt2", "opt", "gpt_neox", "qwen2_moe"])
def test_decoder_layers_finds_the_stack(kind):
    model, path = _tiny(kind)
    layers = lt.decoder_layers(model)
    assert layers is model.get_submodule(path)
    assert len(layers) == model.config.num_hidden_layers == 3


def test_decoder_layers_rejects_what_has_no_layers():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        lt.decoder_layers("gpt2")
    with pytest.raises(ValueError, match="no nn.ModuleList"):
        lt.decoder_layers(torch.nn.Linear(2, 2))


def test_linear_layers_in_order_with_conv1d():
    llama, _ = _tiny("llama")
    names = list(lt.linear_layers(lt.decoder_layers(llama)[0]))
    assert names == ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    gpt2, _ = _tiny("gpt2")
    found = lt.linear_layers(lt.decoder_layers(gpt2)[0])
    assert list(found) == ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    assert {type(m).__name__ for m in found.values()} == {"Conv1D"}
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        lt.linear_layers(None)


def test_linear_layers_keep_their_names_after_quantization(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    int8 = quantized(tiny_llama_dir, load_in_8bit=True)
    before = lt.linear_layers(lt.decoder_layers(plain)[0])
    after = lt.linear_layers(lt.decoder_layers(int8)[0])
    assert list(before) == list(after)
    assert {type(m).__name__ for m in after.values()} == {"Linear8bitLt"}
