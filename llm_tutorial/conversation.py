"""A multi-turn chat that keeps its KV cache: each turn feeds the model only the new tokens.

A chat template renders the whole conversation again at every turn. The model has already seen
(and cached the keys and values of) everything up to its last answer, so a turn only needs the
tokens that come after: the end of the answer, the user's new message and the generation prompt.
That holds only if the new rendering starts with exactly the tokens in the cache, which the
template does not promise: it may re-render earlier turns differently (a default system prompt
added or dropped, whitespace stripped from an answer, reasoning removed), and the text of an
answer may tokenize differently from the tokens the model generated. ``CachedChat`` checks the
cached prefix token for token at every turn, keeps the longest common prefix, and recomputes the
rest (or raises, with ``on_mismatch="raise"``).

>>> chat = CachedChat(model, tok)
>>> chat.say("What is the capital of France?", max_new_tokens=12)
'The capital of France is Paris.'
>>> chat.say("And of Italy?", max_new_tokens=12)
'The capital of Italy is Rome.'
>>> chat.turns[1].reused > 0, chat.positions_saved == chat.turns[1].reused
(True, True)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from .arguments import check_bool, check_int
from .forward import context_length

__all__ = ["CachedChat", "Turn", "CacheMismatchWarning", "common_prefix_length"]


class CacheMismatchWarning(UserWarning):
    """The chat template re-rendered cached tokens differently: those positions were recomputed."""


@dataclass
class Turn:
    """One turn of a ``CachedChat``.

    - ``prompt_ids``: the whole conversation rendered by the template, ready for the answer.
    - ``reply_ids``: the generated tokens (EOS included when the model produced it).
    - ``reused``: positions read from the cache (not computed again): the saving.
    - ``fed``: prompt positions the model computed this turn (``len(prompt_ids) - reused``).
    - ``logits``: the raw scores of each generated token, ``[len(reply_ids), vocab]``.
    - ``mismatch``: why cached positions had to be dropped, or None.
    """

    user: str
    reply: str
    prompt_ids: list[int]
    reply_ids: list[int]
    reused: int
    fed: int
    logits: torch.Tensor = field(repr=False)
    mismatch: str | None = None


def common_prefix_length(a, b) -> int:
    """How many leading tokens two id sequences share.

    >>> common_prefix_length([1, 2, 3, 4], [1, 2, 5])
    2
    """
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _crop(cache, keep: int):
    """``cache`` cut to its first ``keep`` positions, or None if this cache cannot be cut."""
    length = cache.get_seq_length()
    if keep <= 0:
        return None
    if keep < length:
        try:
            cache.crop(keep - length)  # a negative count removes that many positions from the end
        except (AttributeError, RuntimeError, TypeError, ValueError):
            return None
    return cache if cache.get_seq_length() == keep else None


class CachedChat:
    """A conversation with ``model`` through ``tokenizer``'s chat template (or ``chat_template``,
    a Jinja string, for a tokenizer without one), keeping the KV cache between turns.

    ``say(text)`` appends the user's message, renders the conversation, checks that it starts with
    the cached tokens, feeds only the tokens after them and generates the answer (greedy unless
    ``generate`` keywords say otherwise). Where the rendering differs from the cache, the positions
    from the first difference on are recomputed (a ``CacheMismatchWarning`` says where and why),
    or with ``on_mismatch="raise"`` a ValueError. ``positions_saved`` counts the prompt positions
    the cache spared; ``turns`` keeps each turn's tokens, logits and counts.
    """

    def __init__(self, model, tokenizer, *, system: str | None = None, chat_template: str | None = None,
                 on_mismatch: str = "recompute"):
        if on_mismatch not in ("recompute", "raise"):
            raise ValueError(f"on_mismatch must be 'recompute' or 'raise', got {on_mismatch!r}")
        if chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ValueError("this tokenizer has no chat template: pass chat_template='...' (a Jinja template)")
        self.model, self.tokenizer = model, tokenizer
        self.chat_template, self.on_mismatch = chat_template, on_mismatch
        self.messages: list[dict[str, str]] = [] if system is None else [{"role": "system", "content": system}]
        self.turns: list[Turn] = []
        self.cache = None
        self.cached_ids: list[int] = []  # the tokens whose keys and values the cache holds

    @property
    def positions_saved(self) -> int:
        """Prompt positions read from the cache instead of computed again, over all turns."""
        return sum(turn.reused for turn in self.turns)

    @property
    def positions_fed(self) -> int:
        """Prompt positions the model computed, over all turns (generated tokens not counted)."""
        return sum(turn.fed for turn in self.turns)

    def render(self, messages=None) -> list[int]:
        """Token ids of ``messages`` (default: the conversation so far) with the generation prompt."""
        ids = self.tokenizer.apply_chat_template(
            self.messages if messages is None else messages, add_generation_prompt=True, tokenize=True,
            return_dict=False, chat_template=self.chat_template)
        if ids and isinstance(ids[0], list):  # a batch of one
            ids = ids[0]
        return list(ids)

    def _reusable(self, prompt_ids: list[int]) -> tuple[int, str | None]:
        """(cached positions that can be kept, why the others cannot, or None)."""
        if self.cache is None:
            return 0, None
        shared = common_prefix_length(self.cached_ids, prompt_ids)
        keep = min(shared, len(prompt_ids) - 1)  # at least one token to feed
        if keep == len(self.cached_ids):
            return keep, None
        tokens = self.tokenizer.convert_ids_to_tokens
        mismatch = (f"the rendered conversation differs from the cached tokens at position {shared} of "
                    f"{len(self.cached_ids)}: cached {tokens(self.cached_ids[shared:shared + 3])}, rendered "
                    f"{tokens(prompt_ids[shared:shared + 3])} (the template re-renders an earlier turn, or the "
                    "answer's text tokenizes differently from the generated tokens)")
        if self.on_mismatch == "raise":
            raise ValueError(mismatch)
        return keep, mismatch

    def _answer(self, prompt_ids: list[int], max_new_tokens: int, **generate_kwargs):
        """Check the context and the cache, then generate over what can be kept."""
        context = context_length(self.model)
        if context is not None and len(prompt_ids) + max_new_tokens > context:
            raise ValueError(f"the conversation ({len(prompt_ids)} tokens) plus max_new_tokens={max_new_tokens} "
                             f"does not fit the model's context of {context}: reset() or ask for fewer tokens")
        keep, mismatch = self._reusable(prompt_ids)
        cache = _crop(self.cache, keep) if keep else None
        if cache is None:
            keep = 0
        if mismatch is not None:
            warnings.warn(f"{mismatch}; recomputing {len(self.cached_ids) - keep} position(s)",
                          CacheMismatchWarning, stacklevel=3)
        input_ids = torch.tensor([prompt_ids], device=self.model.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), past_key_values=cache,
                                      max_new_tokens=max_new_tokens, pad_token_id=pad, return_dict_in_generate=True,
                                      output_logits=True, **generate_kwargs)
        return prompt_ids, keep, mismatch, out

    def say(self, text: str, *, max_new_tokens: int = 64, **generate_kwargs) -> str:
        """Send ``text`` as the user, generate the answer over the cache, and return its text."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string (the user's message)")
        check_int(max_new_tokens, "max_new_tokens", low=1)
        for key in ("past_key_values", "input_ids", "attention_mask", "return_dict_in_generate"):
            if key in generate_kwargs:
                raise ValueError(f"{key} is managed by CachedChat; leave it out")
        for key in ("num_beams", "num_return_sequences"):
            if generate_kwargs.get(key, 1) != 1:
                raise ValueError(f"{key} must be 1: a CachedChat keeps one answer and its cache")
        generate_kwargs.setdefault("do_sample", False)
        self.messages.append({"role": "user", "content": text})
        try:  # a turn that fails leaves the conversation as it was
            prompt_ids, keep, mismatch, out = self._answer(prompt_ids=self.render(), max_new_tokens=max_new_tokens,
                                                           **generate_kwargs)
        except BaseException:
            self.messages.pop()
            raise
        sequence = out.sequences[0].tolist()
        reply_ids = sequence[len(prompt_ids):]
        reply = self.tokenizer.decode(reply_ids, skip_special_tokens=True)
        self.messages.append({"role": "assistant", "content": reply})
        self.cache = out.past_key_values
        self.cached_ids = sequence[: self.cache.get_seq_length()]
        turn = Turn(text, reply, prompt_ids, reply_ids, keep, len(prompt_ids) - keep,
                    torch.cat(out.logits).float().cpu(), mismatch)
        self.turns.append(turn)
        return reply.strip()

    def reset(self, *, keep_system: bool = True) -> None:
        """Start a new conversation (the system message kept, by default); the cache is dropped."""
        check_bool(keep_system, "keep_system")
        system = self.messages[:1] if keep_system and self.messages[:1] and self.messages[0]["role"] == "system" else []
        self.messages, self.turns, self.cache, self.cached_ids = list(system), [], None, []
