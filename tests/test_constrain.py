"""Structured output: the hand-written regex processor, the llguidance wrapper, and the two compared."""

import json

import pytest
import regex
import torch

import llm_tutorial as lt
from llm_tutorial.constrain import allowed_tokens, grammar_processor, regex_processor, token_texts

PATTERNS = {
    "digits": r"[0-9]{1,4}",
    "date": r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    "e-mail": r"[a-z]{1,5}@[a-z]{1,5}\.(com|org)",
    # no stretch of two or more forced characters (see test_documented_differences)
    "e-mail, open": r"[a-z]{1,5}@[a-z]{1,5}\.[a-z]{2,3}",
    "choice": r"(red|green|blue)",
    "nested": r"((ab|c)[0-9]){1,3}",
}


def _texts(tokenizer, out, n_prompt):
    """(text before EOS, whether EOS came) for each row."""
    rows = []
    for row in out[:, n_prompt:].tolist():
        ended = tokenizer.eos_token_id in row
        ids = row[: row.index(tokenizer.eos_token_id)] if ended else row
        rows.append((tokenizer.decode(ids), ended))
    return rows


def _check(pattern, rows):
    for text, ended in rows:
        if ended:
            assert regex.fullmatch(pattern, text), (pattern, text)
        else:  # max_new_tokens ran out first: still a prefix of a match
            assert regex.fullmatch(pattern, text, partial=True), (pattern, text)


@pytest.mark.parametrize("name", [name for name in PATTERNS if name != "e-mail, open"])
def test_every_text_matches(name, tiny_gpt2, tokenizer):
    """A random model picks almost anything: only the processor keeps the text on the pattern.
    Greedy, then two seeds of three samples each."""
    pattern = PATTERNS[name]
    proc = regex_processor(tokenizer, pattern)
    prompt = tokenizer("Answer:", return_tensors="pt")
    for seed in (None, 0, 1):
        sampling = {"do_sample": False} if seed is None else {"do_sample": True, "num_return_sequences": 3}
        if seed is not None:
            torch.manual_seed(seed)
        out = tiny_gpt2.generate(**prompt, max_new_tokens=16, logits_processor=[proc],
                                 pad_token_id=tokenizer.eos_token_id, **sampling)
        rows = _texts(tokenizer, out, prompt.input_ids.shape[1])
        _check(pattern, rows)
        if name in ("date", "choice"):  # short enough to finish within 16 tokens
            assert all(ended for _, ended in rows), rows


def test_greedy_on_the_real_model(model, tokenizer):
    pattern = PATTERNS["date"]
    inputs = lt.chat_inputs(tokenizer, "When did the Apollo 11 mission land on the Moon?")
    out = model.generate(**inputs, do_sample=False, max_new_tokens=12, pad_token_id=tokenizer.eos_token_id,
                         logits_processor=[regex_processor(tokenizer, pattern)])
    [(text, ended)] = _texts(tokenizer, out, inputs["input_ids"].shape[1])
    assert ended and regex.fullmatch(pattern, text), text


@pytest.mark.parametrize("library", [False, True], ids=["hand", "llguidance"])
def test_padded_batch_and_reuse(library, tiny_gpt2, tokenizer):
    """Each row has its own state; the same processor serves a second generate call."""
    pattern = PATTERNS["choice"]
    proc = grammar_processor(tokenizer, regex=pattern) if library else regex_processor(tokenizer, pattern)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        prompt = tokenizer(["Pick a colour:", "Your favourite colour of all, please:"], return_tensors="pt",
                           padding=True)
    finally:
        tokenizer.padding_side = side
    for seed in (0, 1):
        torch.manual_seed(seed)
        out = tiny_gpt2.generate(**prompt, do_sample=True, max_new_tokens=6, logits_processor=[proc],
                                 pad_token_id=tokenizer.eos_token_id)
        rows = _texts(tokenizer, out, prompt.input_ids.shape[1])
        assert all(ended for _, ended in rows), rows
        _check(pattern, rows)


@pytest.mark.parametrize("library", [False, True], ids=["hand", "llguidance"])
def test_a_new_generation_is_recognised(library, tokenizer):
    """The prompt length is recorded at a generation's first call; a call that does not continue the
    previous one (other prompt, even one token longer) starts a new generation."""
    pattern = PATTERNS["choice"]
    proc = grammar_processor(tokenizer, regex=pattern) if library else regex_processor(tokenizer, pattern)
    first = tokenizer("Pick a colour:", return_tensors="pt").input_ids
    start = allowed_tokens(proc, first)
    after_r = allowed_tokens(proc, torch.cat([first, torch.tensor([[tokenizer.convert_tokens_to_ids("r")]])], 1))
    assert proc.prompt_length == first.shape[1]
    # "ed" is forced: llguidance allows its usual token only (see test_documented_differences)
    assert [tokenizer.decode(i) for i in after_r[0].nonzero()[:, 0]] == (["ed"] if library else ["e", "ed"])
    other = tokenizer("Pick a colour, any:", return_tensors="pt").input_ids
    assert other.shape[1] == first.shape[1] + 2
    assert torch.equal(allowed_tokens(proc, other), start) and proc.prompt_length == other.shape[1]


def test_eos_only_after_a_full_match(tokenizer):
    proc = regex_processor(tokenizer, PATTERNS["date"])
    eos = tokenizer.eos_token_id
    assert not proc.allowed_after("2024-07")[eos]
    done = proc.allowed_after("2024-07-20")
    assert done[eos] and done.sum() == 1  # nothing can extend it: EOS is forced
    digits = regex_processor(tokenizer, r"[0-9]+").allowed_after("12")
    assert digits[eos] and digits.sum() > 1  # a full match that can go on: EOS or more digits
    texts = token_texts(tokenizer)
    assert all(texts[i].isdigit() for i in digits.nonzero()[0] if i != eos)
    with pytest.raises(ValueError, match="cannot become a match"):
        proc.allowed_after("2024-7-")


def test_bad_patterns(tokenizer):
    with pytest.raises(ValueError, match="not a valid regular expression"):
        regex_processor(tokenizer, r"([0-9]")
    with pytest.raises(ValueError, match="can match nothing"):
        regex_processor(tokenizer, r"(?!)")
    with pytest.raises(ValueError, match="no token of the vocabulary can start"):
        regex_processor(tokenizer, "\U0001d538")  # a character with no token of its own
    with pytest.raises(TypeError, match="pattern must be a str"):
        regex_processor(tokenizer, 42)
    with pytest.raises(ValueError, match="eos_token_id"):
        regex_processor(tokenizer, "a", eos_token_id=-1)
    with pytest.raises(ValueError, match="not valid for llguidance"):
        grammar_processor(tokenizer, regex=r"([0-9]")
    with pytest.raises(ValueError, match="exactly one"):
        grammar_processor(tokenizer, regex="a", json_schema={"type": "string"})


def test_token_texts(tokenizer):
    texts = token_texts(tokenizer)
    assert len(texts) == len(tokenizer)
    assert texts[tokenizer.eos_token_id] is None
    ids = tokenizer("Hello, world! Ça va? 日本", add_special_tokens=False).input_ids
    whole = [i for i in ids if texts[i] is not None]
    assert "".join(texts[i] for i in whole) == tokenizer.decode(whole, clean_up_tokenization_spaces=False)


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "colours": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 3,
                    "maxItems": 3},
    },
    "required": ["name", "age", "colours"],
    "additionalProperties": False,
}


def test_json_schema(model, tokenizer):
    inputs = lt.chat_inputs(tokenizer, "Describe a person as JSON: name, age and three favourite colours.")
    out = model.generate(**inputs, do_sample=False, max_new_tokens=40, pad_token_id=tokenizer.eos_token_id,
                         logits_processor=[grammar_processor(tokenizer, json_schema=SCHEMA)])
    [(text, ended)] = _texts(tokenizer, out, inputs["input_ids"].shape[1])
    assert ended, text
    value = json.loads(text)
    assert set(value) == {"name", "age", "colours"}
    assert isinstance(value["name"], str) and type(value["age"]) is int and 0 <= value["age"] <= 120
    assert len(value["colours"]) == 3 and all(isinstance(c, str) for c in value["colours"])


@pytest.mark.parametrize("name", ["date", "e-mail, open", "nested"])
def test_hand_and_library_allow_the_same_tokens(name, tiny_gpt2, tokenizer):
    """Step by step along one sampled generation, EOS included."""
    pattern = PATTERNS[name]
    hand, library = regex_processor(tokenizer, pattern), grammar_processor(tokenizer, regex=pattern)
    prompt = tokenizer("Answer:", return_tensors="pt").input_ids
    torch.manual_seed(0)
    out = tiny_gpt2.generate(prompt, do_sample=True, max_new_tokens=12, logits_processor=[library],
                             pad_token_id=tokenizer.eos_token_id)
    n = prompt.shape[1]
    _check(pattern, _texts(tokenizer, out, n))
    for step in range(out.shape[1] - n + 1):
        ids = out[:, : n + step]
        if tokenizer.eos_token_id in ids[0, n:].tolist():
            break
        mask = allowed_tokens(hand, ids, prompt_length=n)
        assert torch.equal(mask, allowed_tokens(library, ids, prompt_length=n)), (step, tokenizer.decode(ids[0, n:]))


def test_documented_differences(tokenizer):
    """Forced text: llguidance allows only the first token of its usual tokenization; fragments of a
    character: llguidance works on bytes."""
    prompt = tokenizer("Q", return_tensors="pt").input_ids
    hand = allowed_tokens(regex_processor(tokenizer, "maybe"), prompt)[0]
    library = allowed_tokens(grammar_processor(tokenizer, regex="maybe"), prompt)[0]
    assert tokenizer.convert_ids_to_tokens(hand.nonzero()[:, 0].tolist()) == ["m", "ma", "may", "maybe"]
    assert tokenizer.convert_ids_to_tokens(library.nonzero()[:, 0].tolist()) == ["maybe"]
    grammar_processor(tokenizer, regex="\U0001d538")  # spelled from byte fragments: no error
