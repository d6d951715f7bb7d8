"""Texts into one padded batch and one forward pass (llm_tutorial.forward), and the input checks
every scoring function shares: empty texts, non-texts, texts longer than the context."""

import pytest
import torch

import llm_tutorial as lt
from llm_tutorial.forward import encode_batch, forward

SENTENCE = "The cat sat on the mat because it was tired."

SCORERS = [lt.text_logprob, lt.perplexity, lt.surprise, lt.next_token_distribution, lt.logit_lens]


def test_encode_batch_pads_on_the_right_and_keeps_padding_side(model, tok):
    side = tok.padding_side
    ids, mask, lengths = encode_batch(tok, [SENTENCE, "Hi"], model, min_tokens=1, name="text")
    assert tok.padding_side == side
    assert lengths == [len(tok(SENTENCE)["input_ids"]), len(tok("Hi")["input_ids"])]
    assert mask.sum(-1).tolist() == lengths
    assert ids[0, : lengths[0]].tolist() == tok(SENTENCE)["input_ids"]
    assert bool((mask[1, lengths[1]:] == 0).all())


def test_forward_matches_the_model_and_keeps_no_gradients(model, tok):
    ids = tok(SENTENCE, return_tensors="pt")["input_ids"]
    out = forward(model, ids)
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    assert not out.logits.requires_grad
    assert torch.allclose(out.logits, expected, atol=1e-5)


def test_left_padding_with_mask_matches_unpadded_even_with_absolute_positions(tiny_gpt2, tok):
    ids = tok(SENTENCE, return_tensors="pt")["input_ids"]
    pad = torch.full((1, 3), tok.pad_token_id)
    padded = torch.cat([pad, ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(ids)], dim=1)
    alone = lt.token_logprobs(tiny_gpt2, ids)
    left = lt.token_logprobs(tiny_gpt2, padded, mask)
    assert torch.allclose(left[0, 3:], alone[0], atol=1e-4)
    assert bool((left[0, :2] == 0).all())  # targets that are padding score 0
    # the position ids matter for GPT-2: without them the same batch gives other numbers
    with torch.inference_mode():
        wrong = tiny_gpt2(input_ids=padded, attention_mask=mask).logits[0, 3:]
        right = tiny_gpt2(input_ids=ids).logits[0]
    assert not torch.allclose(wrong, right, atol=1e-3)



@pytest.mark.parametrize("function", SCORERS)
def test_empty_text_is_a_clear_error(model, tok, function):
    with pytest.raises(ValueError, match="must not be an empty string"):
        function(model, tok, "")
    if function is not lt.logit_lens:
        with pytest.raises(ValueError, match="must not be an empty string"):
            function(model, tok, [SENTENCE, ""])
        with pytest.raises(ValueError, match="empty list"):
            function(model, tok, [])


@pytest.mark.parametrize("function", SCORERS)
def test_non_text_is_a_type_error(model, tok, function):
    with pytest.raises(TypeError, match="must be a str"):
        function(model, tok, 42)
    with pytest.raises(TypeError, match="must be a str"):
        function(model, tok, b"bytes")


def test_text_longer_than_the_context_is_a_clear_error(tiny_gpt2, tok):
    long_text = " ".join(["word"] * 40)
    assert len(tok(long_text)["input_ids"]) > 32
    for function in (lt.text_logprob, lt.perplexity, lt.surprise, lt.next_token_distribution):
        with pytest.raises(ValueError, match="more than the model's context of 32"):
            function(tiny_gpt2, tok, long_text)
    ids = tok(long_text, return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match="context of 32"):
        lt.token_logprobs(tiny_gpt2, ids)
    with pytest.raises(ValueError, match="context of 32"):
        lt.next_token_distribution(tiny_gpt2, tok, {"input_ids": ids})
    # exactly the context length is fine
    assert lt.token_logprobs(tiny_gpt2, ids[:, :32]).shape == (1, 31)


def test_the_embedded_model_refuses_a_text_longer_than_its_context(model, tok):
    context = lt.context_length(model)
    assert context == model.config.max_position_embeddings
    long_text = "word " * (context + 10)
    with pytest.raises(ValueError, match=f"context of {context}"):
        lt.perplexity(model, tok, long_text)


def test_context_length_of_several_configs(tiny_gpt2, tiny_llama):
    assert lt.context_length(tiny_gpt2) == 32
    assert lt.context_length(tiny_llama) == 64
