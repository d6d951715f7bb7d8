"""The cached chat: each turn over the previous turn's KV cache gives what recomputing from scratch gives."""

import warnings

import pytest
import torch

from llm_tutorial.conversation import CachedChat, CacheMismatchWarning, common_prefix_length

# a short template for the tiny model (a context of 32 positions); assistant answers rendered as is
SHORT = ("{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}{% if m['role'] == 'assistant' %}"
         "{{ eos_token }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}a:{% endif %}")
# the same, except that earlier answers come back in capitals: the cache no longer matches
UPPER = SHORT.replace("{{ m['content'] }}", "{{ m['content'] | upper }}")


def _from_scratch(model, turn):
    """The greedy answer and its logits with no cache: one forward pass over the whole rendered
    conversation and the answer (teacher forcing gives every position's logits at once)."""
    ids = torch.tensor([turn.prompt_ids + turn.reply_ids[:-1]], device=model.device)
    with torch.inference_mode():
        logits = model(ids).logits[0, len(turn.prompt_ids) - 1:].float().cpu()
    return logits.argmax(-1).tolist(), logits


def _check_against_scratch(model, chat, atol):
    for turn in chat.turns:
        ids, logits = _from_scratch(model, turn)
        assert ids == turn.reply_ids
        torch.testing.assert_close(turn.logits, logits, atol=atol, rtol=0)


def test_three_turns_on_the_embedded_model(model, tokenizer):
    chat = CachedChat(model, tokenizer)
    for question in ("What is the capital of France?", "And of Italy?", "Which one is older?"):
        assert chat.say(question, max_new_tokens=6)
    first, second, third = chat.turns
    assert (first.reused, first.fed) == (0, len(first.prompt_ids))
    # everything the model saw in the turn before, except its last token (never fed back)
    assert second.reused == len(first.prompt_ids) + len(first.reply_ids) - 1
    assert third.reused == len(second.prompt_ids) + len(second.reply_ids) - 1
    assert second.fed == len(second.prompt_ids) - second.reused and second.mismatch is None
    assert chat.positions_saved == second.reused + third.reused
    assert chat.positions_fed + chat.positions_saved == sum(len(t.prompt_ids) for t in chat.turns)
    _check_against_scratch(model, chat, atol=1e-3)


def test_another_architecture(tiny_gpt2, tokenizer):
    """GPT-2 (learned positions) through a short template; a random model's answer may tokenize
    differently once rendered as text: then the positions after the difference are recomputed."""
    chat = CachedChat(tiny_gpt2, tokenizer, chat_template=SHORT)
    with warnings.catch_warnings(record=True) as caught:  # possibly none, possibly a CacheMismatchWarning
        warnings.simplefilter("always")
        for question in ("Hi", "Why", "Go"):
            chat.say(question, max_new_tokens=3)
    assert all(w.category is CacheMismatchWarning for w in caught)
    for before, turn in zip(chat.turns, chat.turns[1:]):
        cached = before.prompt_ids + before.reply_ids[:-1]
        assert turn.reused == min(common_prefix_length(cached, turn.prompt_ids), len(turn.prompt_ids) - 1)
        assert turn.reused > 0
    _check_against_scratch(tiny_gpt2, chat, atol=1e-4)


def test_a_template_that_re_renders_earlier_turns(tiny_gpt2, tokenizer):
    chat = CachedChat(tiny_gpt2, tokenizer, chat_template=UPPER)
    chat.say("hello", max_new_tokens=3)
    first = chat.turns[0]
    if chat.messages[-1]["content"] == chat.messages[-1]["content"].upper():
        pytest.skip("the random answer has no lower-case letter")
    with pytest.warns(CacheMismatchWarning, match="differs from the cached tokens"):
        chat.say("again", max_new_tokens=3)
    second = chat.turns[1]
    assert second.mismatch and 0 < second.reused < len(first.prompt_ids) + len(first.reply_ids) - 1
    _check_against_scratch(tiny_gpt2, chat, atol=1e-4)

    strict = CachedChat(tiny_gpt2, tokenizer, chat_template=UPPER, on_mismatch="raise")
    strict.say("hello", max_new_tokens=3)
    with pytest.raises(ValueError, match="differs from the cached tokens at position"):
        strict.say("again", max_new_tokens=3)
    assert [m["role"] for m in strict.messages] == ["user", "assistant"]  # the refused turn is not kept


def test_arguments(tiny_gpt2, tokenizer):
    with pytest.raises(ValueError, match="on_mismatch"):
        CachedChat(tiny_gpt2, tokenizer, on_mismatch="ignore")
    chat = CachedChat(tiny_gpt2, tokenizer, chat_template=SHORT, system="Be brief")
    with pytest.raises(ValueError, match="non-empty"):
        chat.say("  ")
    with pytest.raises(ValueError, match="past_key_values is managed"):
        chat.say("Hi", past_key_values=None)
    with pytest.raises(ValueError, match="does not fit the model's context of 32"):
        chat.say("Hi", max_new_tokens=40)
    assert len(chat.messages) == 1  # the refused message is not kept
    for key in ("num_return_sequences", "num_beams"):
        with pytest.raises(ValueError, match=f"{key} must be 1"):
            chat.say("Hi", max_new_tokens=2, **{key: 2})
    with pytest.raises(ValueError):  # generate's own refusal: the turn is not kept either
        chat.say("Hi", max_new_tokens=2, temperature=-1.0, do_sample=True)
    assert len(chat.messages) == 1
    chat.say("Hi", max_new_tokens=2)
    chat.reset()
    assert chat.messages == [{"role": "system", "content": "Be brief"}] and chat.cache is None
