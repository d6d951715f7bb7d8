"""Token log-probabilities and perplexity (llm_tutorial.logprobs) against the model's own loss."""

import copy
import math

import pytest
import torch

import llm_tutorial as lt

SENTENCE = "The cat sat on the mat because it was tired."


def model_loss(model, tok, text):
    enc = tok(text, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc, labels=enc["input_ids"]).loss.item()



def test_token_logprobs_match_a_hand_computation(model, tok):
    ids = tok(SENTENCE, return_tensors="pt")["input_ids"]
    lp = lt.token_logprobs(model, ids)
    assert lp.shape == (1, ids.shape[1] - 1)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0].float()
    expected = torch.log_softmax(logits[:-1], -1)[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
    assert torch.allclose(lp[0], expected, atol=1e-5)
    assert bool((lp <= 0).all())


@pytest.mark.parametrize("text", [SENTENCE, "Colorless green ideas sleep furiously.", "こんにちは、世界"])
def test_perplexity_equals_exp_of_the_model_loss(model, tok, text):
    loss = model_loss(model, tok, text)
    assert math.isclose(lt.perplexity(model, tok, text), math.exp(loss), rel_tol=1e-5)
    n = len(tok(text)["input_ids"]) - 1
    assert math.isclose(lt.text_logprob(model, tok, text), -loss * n, rel_tol=1e-5)


def test_perplexity_equals_exp_loss_on_another_architecture(tiny_gpt2, tok):
    assert math.isclose(lt.perplexity(tiny_gpt2, tok, SENTENCE), math.exp(model_loss(tiny_gpt2, tok, SENTENCE)),
                        rel_tol=1e-5)


def test_shuffled_text_is_less_likely(model, tok):
    shuffled = "mat it the tired. sat because on The was cat"
    sensible, scrambled = lt.perplexity(model, tok, [SENTENCE, shuffled])
    assert scrambled > 5 * sensible


def test_batch_equals_one_at_a_time(model, tok):
    texts = [SENTENCE, "Hello there", "A much longer sentence, with commas, that needs no padding at all."]
    batch_lp = lt.text_logprob(model, tok, texts)
    batch_ppl = lt.perplexity(model, tok, texts)
    assert isinstance(batch_lp, list) and len(batch_lp) == 3
    for text, lp, ppl in zip(texts, batch_lp, batch_ppl):
        assert math.isclose(lp, lt.text_logprob(model, tok, text), rel_tol=1e-4)
        assert math.isclose(ppl, lt.perplexity(model, tok, text), rel_tol=1e-4)


def test_a_tokenizer_without_pad_token_still_batches(model, tok):
    no_pad = copy.deepcopy(tok)
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None
    got = lt.text_logprob(model, no_pad, [SENTENCE, "Hello there"])
    assert math.isclose(got[1], lt.text_logprob(model, tok, "Hello there"), rel_tol=1e-4)


def test_one_token_text_cannot_be_scored(model, tok):
    assert len(tok("Hello")["input_ids"]) == 1
    with pytest.raises(ValueError, match="at least 2"):
        lt.perplexity(model, tok, "Hello")
    # ... but it can be continued: one token is enough for a next-token distribution
    assert len(lt.next_token_distribution(model, tok, "Hello", k=3)) == 3


def test_token_logprobs_checks_its_arguments(model, tok):
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        lt.token_logprobs(model, [[1, 2, 3]])
    with pytest.raises(ValueError, match="2-D"):
        lt.token_logprobs(model, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="at least 2"):
        lt.token_logprobs(model, torch.tensor([[1]]))
    with pytest.raises(ValueError, match="shape of input_ids"):
        lt.token_logprobs(model, torch.tensor([[1, 2, 3]]), torch.tensor([[1, 1]]))
    with pytest.raises(TypeError, match="attention_mask must be a torch.Tensor"):
        lt.token_logprobs(model, torch.tensor([[1, 2, 3]]), [[1, 1, 1]])
    with pytest.raises(ValueError, match="no real token"):
        lt.token_logprobs(model, torch.tensor([[1, 2, 3]]), torch.tensor([[0, 0, 0]]))
