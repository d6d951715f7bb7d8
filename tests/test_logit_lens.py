"""The logit lens (llm_tutorial.logit_lens): every layer's top next token."""

import pytest
import torch

import llm_tutorial as lt

PROMPT = "The capital of France is"


def test_logit_lens_rows(model, tok):
    lens = lt.logit_lens(model, tok, PROMPT)
    n_layers = model.config.num_hidden_layers
    n_tokens = len(tok(PROMPT)["input_ids"])
    assert len(lens.ids) == len(lens.layers) == n_layers + 1
    assert all(len(row) == n_tokens for row in lens.ids)
    assert lens.layers[0] == "emb" and lens.layers[-1] == str(n_layers)
    enc = tok(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc, output_hidden_states=True)
        middle = model.get_output_embeddings()(model.get_decoder().norm(out.hidden_states[10]))
    assert lens.ids[-1] == out.logits[0].argmax(-1).tolist()
    assert lens.ids[10] == middle[0].argmax(-1).tolist()
    assert all(0 < p <= 1 for row in lens.probs for p in row)
    assert len(str(lens).splitlines()) == n_layers + 2
    with pytest.raises(TypeError, match="one prompt"):
        lt.logit_lens(model, tok, [PROMPT, PROMPT])


def test_logit_lens_on_gpt2_and_an_unknown_layout(tiny_gpt2, tiny_llama, tok):
    lens = lt.logit_lens(tiny_gpt2, tok, PROMPT)
    assert len(lens.ids) == tiny_gpt2.config.n_layer + 1
    enc = tok(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        assert lens.ids[-1] == tiny_gpt2(**enc).logits[0].argmax(-1).tolist()
    odd = tiny_llama
    assert len(lt.logit_lens(odd, tok, PROMPT).ids) == 3
    del odd.model.norm
    with pytest.raises(NotImplementedError, match="final norm"):
        lt.logit_lens(odd, tok, PROMPT)

