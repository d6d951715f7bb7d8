"""Faster greedy generation with the same tokens: guess several tokens, check them in one pass.

One forward pass over 1 new token and one over 5 new tokens cost about the same on a laptop:
both read every weight of the model once, and reading the weights is what takes the time. So
guess (**draft**) a few tokens cheaply, run the model once over all of them (**verify**), and
keep the guesses up to the first one the model would not have chosen itself, plus the model's
own token at that point. Every kept token is one greedy decoding would have produced, so the
text is the same; only the number of forward passes of the big model goes down.

Where the guesses come from:

- ``prompt_lookup_generate``: copy them from earlier in the text (the last few tokens occurred
  before: guess that what followed then follows again). Free, and good when the answer repeats
  the prompt (summaries, code edits, quoting).
- ``speculative_generate``: a small, fast **draft model** proposes them greedily. Any draft
  works, a bad one only makes it slower: ``early_exit_draft`` (the first layers of the same
  model plus its head, sharing its weights) or ``copy.deepcopy(model).to(torch.bfloat16)``.

The bookkeeping: the key/value cache of the big model gets the keys and values of every guessed
token during the verifying pass; those of rejected guesses are removed again (``cache.crop``).

Equal tokens, up to near-ties: verifying k tokens in one pass multiplies matrices of another
shape than k one-token steps do, so the logits differ in the last bits (~1e-6). Where the two
best tokens are closer than that, the argmax may flip, and the texts part there. Greedy
``model.generate(prompt_lookup_num_tokens=...)`` and ``model.generate(assistant_model=...)``
have the same property. Batch size 1 only, as in transformers.

>>> ids = tok("1, 2, 3, 1, 2, 3, 1, 2, 3,", return_tensors="pt").input_ids
>>> out, stats = prompt_lookup_generate(model, ids, max_new_tokens=12, return_stats=True)
>>> tok.decode(out[0, ids.shape[1]:])
' 1, 2, 3, 1,'
>>> stats.new_tokens, stats.forward_calls  # 12 tokens in 2 passes: 10 copied guesses, all kept
(12, 2)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from .arguments import check_bool, check_int
from .conversation import common_prefix_length  # the same question as a cached chat asks
from .forward import context_length
from .generation import _check_inputs, _default_mask, _token_ids
from .steps import _accepts, position_ids_from_mask

__all__ = ["SpeculationStats", "early_exit_draft", "prompt_lookup_draft", "prompt_lookup_generate",
           "speculative_generate", "speculative_sample"]


@dataclass
class SpeculationStats:
    """Counted work of one speculative generation.

    ``forward_calls``: forward passes of the (big) model; ``draft_forward_calls``: of the draft
    model (0 for prompt lookup); ``drafted``: guessed tokens sent to the model for checking;
    ``accepted``: guesses the model agreed with; ``new_tokens``: tokens generated; ``rounds``:
    ``(drafted, accepted)`` of each forward pass of the model, in order. Plain greedy decoding
    needs one forward pass per new token, so ``new_tokens / forward_calls`` is the saving in
    passes of the big model.
    """

    forward_calls: int = 0
    draft_forward_calls: int = 0
    drafted: int = 0
    accepted: int = 0
    new_tokens: int = 0
    rounds: list[tuple[int, int]] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """``accepted / drafted``, the share of guesses kept (0.0 when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_forward(self) -> float:
        """``new_tokens / forward_calls`` (plain greedy decoding: 1.0)."""
        return self.new_tokens / self.forward_calls if self.forward_calls else 0.0


# ---------------------------------------------------------------------------------------------
# guesses
# ---------------------------------------------------------------------------------------------
def prompt_lookup_draft(tokens, num_draft_tokens: int = 10, max_ngram: int = 3) -> list[int]:
    """Guess the tokens after ``tokens`` (a list of ids or a 1-D tensor) by looking them up in
    ``tokens`` itself: take the last n tokens (n = ``max_ngram``, then smaller down to 1), find
    their first earlier occurrence, and copy up to ``num_draft_tokens`` tokens that followed it.
    ``[]`` when even the last token never occurred before.

    The same search as transformers' ``PromptLookupCandidateGenerator`` (leftmost occurrence
    first; the copied tokens may run into the n-gram itself), without its logits-processor
    filter, and keeping any end-of-sequence token (the caller stops after it).

    >>> prompt_lookup_draft([5, 6, 7, 8, 9, 6, 7], num_draft_tokens=3)
    [8, 9, 6]
    >>> prompt_lookup_draft([1, 2, 3], num_draft_tokens=3)
    []
    """
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.tolist()
    num_draft_tokens = check_int(num_draft_tokens, "num_draft_tokens", low=1)
    max_ngram = check_int(max_ngram, "max_ngram", low=1)
    for n in range(min(max_ngram, len(tokens) - 1), 0, -1):  # the longest n-gram first
        ngram = tokens[-n:]
        for start in range(len(tokens) - n):  # leftmost first; the last n-gram itself is not a match
            if tokens[start:start + n] == ngram:
                return tokens[start + n:start + n + num_draft_tokens]
    return []


class _ModelDrafter:
    """Greedy guesses from a draft model with its own key/value cache. Before guessing, its cache
    is cut back to the part that still agrees with the text (rejected guesses go)."""

    def __init__(self, draft_model, num_draft_tokens: int, eos_ids: list[int], stats: SpeculationStats):
        self.model, self.k, self.eos, self.stats = draft_model, num_draft_tokens, set(eos_ids), stats
        self.cache = _new_cache(draft_model)
        self.cached: list[int] = []  # the tokens whose keys/values are in self.cache

    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor, room: int) -> list[int]:
        text = tokens[0].tolist()
        keep = common_prefix_length(self.cached, text)
        _crop(self.cache, keep)
        self.cached = text[:keep]
        device = self.model.device
        ids, mask = tokens.to(device), mask.to(device)
        guesses: list[int] = []
        while len(guesses) < min(self.k, room):
            logits = _run(self.model, ids, mask, self.cache, keep=1)
            self.stats.draft_forward_calls += 1
            self.cached = ids[0].tolist()
            guess = int(logits[-1].argmax())
            guesses.append(guess)
            if guess in self.eos:
                break
            ids = torch.cat([ids, ids.new_tensor([[guess]])], dim=1)
            mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
        return guesses


# ---------------------------------------------------------------------------------------------
# the loop: guess, verify in one pass, keep the agreeing prefix + the model's own token, crop
# ---------------------------------------------------------------------------------------------
def _new_cache(model):
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    if hasattr(cache, "activate_past_recording"):  # sliding-window layers keep what crop needs
        cache.activate_past_recording()
    return cache


def _crop(cache, length: int) -> None:
    """Drop the keys and values of every position from ``length`` on."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)  # a negative count removes that many positions from the end


@torch.no_grad()
def _run(model, ids, mask, cache, keep: int):
    """Feed the tokens of ``ids`` ``[1, len]`` that the cache does not hold yet; return the float32
    logits ``[keep, vocab]`` of the last ``keep`` positions."""
    cached = cache.get_seq_length()
    kwargs = {"input_ids": ids[:, cached:], "position_ids": position_ids_from_mask(mask)[:, cached:],
              "attention_mask": None if bool(mask.all()) else mask,  # no padding: no mask, as generate
              "past_key_values": cache, "use_cache": True}
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = keep
    return model(**kwargs).logits[0, -keep:].float()


def _through_eos(tokens: list[int], eos: set[int]) -> list[int]:
    """``tokens`` up to and including the first end-of-sequence token."""
    for i, token in enumerate(tokens):
        if token in eos:
            return tokens[:i + 1]
    return tokens


def _speculate(model, input_ids, mask, max_new_tokens, eos_ids, propose, stats):
    tokens, eos = input_ids, set(eos_ids)
    cache = _new_cache(model)
    while stats.new_tokens < max_new_tokens:
        room = max_new_tokens - stats.new_tokens - 1  # the model adds one token of its own
        draft = _through_eos(propose(tokens, mask, room)[:room], eos) if room else []
        # verify: one pass over the guesses gives the model's choice after each prefix of them
        guessed = torch.cat([tokens, tokens.new_tensor([draft]).view(1, -1)], dim=1)
        guessed_mask = torch.cat([mask, mask.new_ones(1, len(draft))], dim=1)
        logits = _run(model, guessed, guessed_mask, cache, keep=len(draft) + 1)
        choices = logits.argmax(dim=-1).tolist()
        agreed = common_prefix_length(draft, choices)
        kept = _through_eos(draft[:agreed] + [choices[agreed]], eos)
        stats.forward_calls += 1
        stats.drafted += len(draft)
        stats.accepted += agreed
        stats.rounds.append((len(draft), agreed))
        stats.new_tokens += len(kept)
        tokens = torch.cat([tokens, tokens.new_tensor([kept])], dim=1)
        mask = torch.cat([mask, mask.new_ones(1, len(kept))], dim=1)
        _crop(cache, tokens.shape[1] - 1)  # rejected guesses out; the model's own token is not fed yet
        if kept[-1] in eos:
            break
    return tokens


def _prepare(model, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, return_stats):
    """Checked arguments: ``(input_ids, mask, max_new_tokens, eos_ids)`` on the model's device."""
    _check_inputs(model, input_ids, attention_mask)
    if input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must hold one sequence (batch size 1) for speculative decoding, got "
                         f"{input_ids.shape[0]}: the rows would accept different numbers of guesses; "
                         "call once per prompt (transformers has the same limit)")
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", low=0)
    check_bool(return_stats, "return_stats")
    eos_ids = _token_ids(eos_token_id, "eos_token_id")
    pad_id = _token_ids(pad_token_id, "pad_token_id")
    if len(pad_id) > 1:
        raise ValueError(f"pad_token_id must be a single int, got {pad_token_id!r}")
    pad_id = pad_id[0] if pad_id else (eos_ids[0] if eos_ids else None)
    limit = context_length(model)
    if limit is not None and input_ids.shape[1] + max_new_tokens > limit:
        raise ValueError(f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds "
                         f"the model's {limit} positions; shorten one of them")
    input_ids = input_ids.to(model.device)
    mask = (attention_mask.to(model.device).long() if attention_mask is not None
            else _default_mask(input_ids, pad_id, eos_ids))
    return input_ids, mask, max_new_tokens, eos_ids


def prompt_lookup_generate(model, input_ids, attention_mask=None, *, max_new_tokens, num_draft_tokens=10,
                           max_ngram=3, eos_token_id=None, pad_token_id=None, return_stats=False):
    """Greedy generation with guesses copied from the text itself (prompt-lookup decoding).

    Each round: guess up to ``num_draft_tokens`` tokens with ``prompt_lookup_draft`` (n-grams of
    ``max_ngram`` tokens down to 1, searched in the prompt and in what was generated so far), run
    the model once over them, keep the agreeing guesses and the model's own next token. With no
    guess, a round is a plain greedy step.

    Returns the sequences ``[1, prompt + new]`` like ``model.generate``; with
    ``return_stats=True``, ``(sequences, SpeculationStats)``. Arguments and result as greedy
    ``model.generate(input_ids, attention_mask=..., max_new_tokens=..., do_sample=False,
    eos_token_id=..., pad_token_id=...)``, whose tokens these equal up to near-ties (see the
    module docstring); ``eos_token_id=None`` never stops early, ``max_new_tokens=0`` returns the
    prompt. Batch size 1 only.

    Compared with ``model.generate(prompt_lookup_num_tokens=num_draft_tokens,
    max_matching_ngram_size=max_ngram)`` (whose default n-gram size is 2, ours 3): the same
    guesses and the same number of forward passes, except that (1) we guess no more tokens than
    can still be kept (transformers guesses ``num_draft_tokens`` and drops the surplus after
    checking), (2) a guess keeps an end-of-sequence token (transformers drops it and everything
    after it; the model's own next token is then that EOS, so both stop after the same pass),
    (3) only the real tokens are searched, not the left padding.

    >>> from llm_tutorial import generate
    >>> ids = tok("one two three one two three one", return_tensors="pt").input_ids
    >>> out = prompt_lookup_generate(model, ids, max_new_tokens=4)
    >>> torch.equal(out, generate(model, ids, max_new_tokens=4))  # greedy's own tokens
    True
    """
    input_ids, mask, max_new_tokens, eos_ids = _prepare(model, input_ids, attention_mask, max_new_tokens,
                                                        eos_token_id, pad_token_id, return_stats)
    num_draft_tokens = check_int(num_draft_tokens, "num_draft_tokens", low=1)
    max_ngram = check_int(max_ngram, "max_ngram", low=1)

    def propose(tokens, mask, room):
        real = tokens[0][mask[0].bool()]  # the left padding is no text to copy from
        return prompt_lookup_draft(real, min(num_draft_tokens, room), max_ngram)

    stats = SpeculationStats()
    out = _speculate(model, input_ids, mask, max_new_tokens, eos_ids, propose, stats)
    return (out, stats) if return_stats else out


def speculative_generate(model, draft_model, input_ids, attention_mask=None, *, max_new_tokens,
                         num_draft_tokens=4, eos_token_id=None, pad_token_id=None, return_stats=False):
    """Greedy generation of ``model`` with guesses from a smaller ``draft_model`` (speculative
    decoding). The draft must use the same tokenizer (the same vocabulary size).

    Each round: the draft model proposes up to ``num_draft_tokens`` tokens greedily, one cheap
    forward pass each, with its own key/value cache; ``model`` checks them all in one pass and
    keeps the agreeing ones plus its own next token; both caches drop the rejected guesses. The
    tokens are ``model``'s greedy tokens whatever the draft (up to near-ties, see the module
    docstring); a good draft only makes fewer passes of ``model``. Returns and arguments as
    ``prompt_lookup_generate``; greedy ``model.generate(input_ids, assistant_model=draft_model)``
    does the same (it also adapts the number of guesses from round to round).

    >>> ids = tok("The capital of France is", return_tensors="pt").input_ids
    >>> out, stats = speculative_generate(model, model, ids, max_new_tokens=5, return_stats=True)
    >>> stats.acceptance_rate, stats.forward_calls  # the model as its own draft: every guess kept
    (1.0, 1)
    """
    input_ids, mask, max_new_tokens, eos_ids = _prepare(model, input_ids, attention_mask, max_new_tokens,
                                                        eos_token_id, pad_token_id, return_stats)
    num_draft_tokens = check_int(num_draft_tokens, "num_draft_tokens", low=1)
    if not callable(draft_model) or not hasattr(draft_model, "get_output_embeddings"):
        raise TypeError(f"draft_model must be a Hugging Face causal LM, not {type(draft_model).__name__}")
    if _vocab_size(draft_model) != _vocab_size(model):
        raise ValueError(f"draft_model must have the vocabulary of model ({_vocab_size(model)} tokens), got "
                         f"{_vocab_size(draft_model)}: use a draft made with the same tokenizer")
    limit = context_length(draft_model)
    if limit is not None and input_ids.shape[1] + max_new_tokens > limit:
        raise ValueError(f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds "
                         f"draft_model's {limit} positions; shorten one of them")
    stats = SpeculationStats()
    drafter = _ModelDrafter(draft_model, num_draft_tokens, eos_ids, stats)
    out = _speculate(model, input_ids, mask, max_new_tokens, eos_ids, drafter, stats)
    return (out, stats) if return_stats else out


def _vocab_size(model) -> int:
    """Rows of the output layer (the logits' width); also for a head without a plain weight tensor,
    such as a dynamically quantized int8 copy."""
    head = model.get_output_embeddings()
    if isinstance(getattr(head, "weight", None), torch.Tensor):
        return head.weight.shape[0]
    if isinstance(getattr(head, "out_features", None), int):
        return head.out_features
    return model.config.get_text_config().vocab_size


# ---------------------------------------------------------------------------------------------
# sampling: the accept/reject rule that keeps the target's distribution
# ---------------------------------------------------------------------------------------------
def speculative_sample(target_probs, draft_probs, draft_tokens, *, generator=None) -> list[int]:
    """The tokens to keep after one verifying pass when *sampling* (Leviathan et al. 2023, Chen et
    al. 2023): they are distributed exactly as tokens drawn one by one from the target model.

    ``draft_tokens`` ``[k]`` were drawn by the draft model from ``draft_probs`` ``[k, vocab]``;
    ``target_probs`` ``[k + 1, vocab]`` are the target's next-token probabilities after each
    prefix of them (one verifying pass). Guess ``x`` at step ``i`` is kept with probability
    ``min(1, p_i(x) / q_i(x))``; at the first rejection a token is drawn from ``max(0, p_i - q_i)``
    (normalised) in its place and the later guesses are dropped; when every guess is kept, one
    more token is drawn from ``p_k``. Returns 1 to k + 1 token ids. (With one-hot ``p``, i.e.
    greedy, this keeps a guess exactly when it is the argmax: the greedy rule above.)

    >>> import torch
    >>> p = torch.tensor([[0.0, 1.0], [0.5, 0.5]])  # the target is sure of token 1 first
    >>> speculative_sample(p, torch.tensor([[0.0, 1.0]]), torch.tensor([1]))[0]  # a guess of 1 is kept
    1
    >>> speculative_sample(p, torch.tensor([[1.0, 0.0]]), torch.tensor([0]))  # a guess of 0 never
    [1]
    """
    for name, value in (("target_probs", target_probs), ("draft_probs", draft_probs), ("draft_tokens", draft_tokens)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, not {type(value).__name__}")
    if draft_tokens.dim() != 1 or draft_tokens.is_floating_point():
        raise ValueError(f"draft_tokens must be a 1-D tensor of token ids, got shape {tuple(draft_tokens.shape)}")
    k = len(draft_tokens)
    if (target_probs.dim() != 2 or draft_probs.dim() != 2 or target_probs.shape[0] != k + 1
            or draft_probs.shape[0] != k or target_probs.shape[1] != draft_probs.shape[1]):
        raise ValueError(f"target_probs must be [k + 1, vocab] and draft_probs [k, vocab] (the same vocab) for "
                         f"k = {k} draft_tokens, got {tuple(target_probs.shape)} and {tuple(draft_probs.shape)}")
    kept = []
    for i, token in enumerate(draft_tokens.tolist()):
        p, q = target_probs[i], draft_probs[i]
        u = torch.rand((), generator=generator, device=p.device)
        if u * q[token] <= p[token]:  # kept with probability min(1, p/q)
            kept.append(token)
            continue
        residual = (p - q).clamp(min=0)  # where the target wants more than the draft gave
        residual = residual if float(residual.sum()) > 0 else p
        return kept + [int(torch.multinomial(residual, 1, generator=generator))]
    return kept + [int(torch.multinomial(target_probs[k], 1, generator=generator))]


# ---------------------------------------------------------------------------------------------
# a draft from the model itself
# ---------------------------------------------------------------------------------------------
def _own_copy(module):
    """A new module object that shares every parameter, buffer and submodule of ``module`` but has
    its own tables of them (and of hooks), so replacing one does not touch ``module``."""
    twin = copy.copy(module)
    twin.__dict__.update({name: value.copy() for name, value in vars(module).items() if isinstance(value, dict)})
    return twin


def early_exit_draft(model, num_layers: int):
    """The first ``num_layers`` transformer layers of ``model``, its final norm and its head: a
    cheaper causal LM for ``speculative_generate(model, draft, ...)``. It shares the weights of
    ``model`` (no copy, no extra memory) and leaves ``model`` unchanged. This is "early exit":
    reading the guess after a few layers (notebook 03's logit lens showed how far such guesses
    are from the final ones). Models trained for it (LayerSkip) make better early guesses;
    transformers runs the same idea with ``model.generate(assistant_early_exit=num_layers)``.
    Another draft with the same tokens: ``copy.deepcopy(model).to(torch.bfloat16)``.

    Works for models whose layers are a list named ``layers`` (Llama, Mistral, Qwen, SmolLM...)
    or ``h`` (GPT-2) under the base model; others raise a TypeError.

    >>> draft = early_exit_draft(model, 4)
    >>> draft.config.num_hidden_layers, model.config.num_hidden_layers > 4
    (4, True)
    >>> draft.lm_head.weight is model.lm_head.weight  # the same tensor
    True
    """
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    name = next((n for n in ("layers", "h") if isinstance(getattr(base, n, None), torch.nn.ModuleList)), None)
    if name is None:
        raise TypeError(f"early_exit_draft needs a model whose base model holds its layers in a ModuleList "
                        f"named 'layers' or 'h' (Llama, GPT-2, ...); {type(model).__name__} has none")
    layers = getattr(base, name)
    num_layers = check_int(num_layers, "num_layers", low=1, high=len(layers))
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = num_layers  # GPT-2's n_layer is the same attribute
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:num_layers]
    draft, draft_base = _own_copy(model), _own_copy(base)
    draft.config = draft_base.config = config
    setattr(draft_base, name, torch.nn.ModuleList(layers[:num_layers]))
    setattr(draft, model.base_model_prefix, draft_base)
    return draft
