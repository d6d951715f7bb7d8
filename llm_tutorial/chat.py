"""Chat prompts through the tokenizer's own chat template, and a one-call question helper."""

from __future__ import annotations

from typing import Any

from .arguments import check_int

__all__ = ["ask", "chat_inputs"]


def _messages(question: str | list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    if isinstance(question, str):
        if not question.strip():
            raise ValueError("question must be a non-empty string or a list of messages")
        messages = [{"role": "user", "content": question}]
    elif isinstance(question, list) and all(isinstance(m, dict) for m in question):
        messages = list(question)
    else:
        raise TypeError(
            "question must be a str or a list of {'role': ..., 'content': ...} dicts, "
            f"not {type(question).__name__}"
        )
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def chat_inputs(tokenizer, question: str | list[dict[str, str]], *, system: str | None = None,
                device: Any = None):
    """Token ids and attention mask for ``question`` in the model's chat format, ready for
    ``model.generate(**inputs)``; the prompt ends where the assistant's answer begins.

    >>> inputs = chat_inputs(tok, "Hi")
    >>> tok.decode(inputs["input_ids"][0]).endswith("assistant\\n")
    True
    """
    inputs = tokenizer.apply_chat_template(
        _messages(question, system),
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    return inputs.to(device) if device is not None else inputs


def ask(model, tokenizer, question: str | list[dict[str, str]], *, system: str | None = None,
        max_new_tokens: int = 64) -> str:
    """Answer ``question`` greedily through the chat template and return only the new text.

    >>> ask(model, tok, "What is the capital of France?")
    'The capital of France is Paris.'
    """
    import torch

    check_int(max_new_tokens, "max_new_tokens", low=1)
    inputs = chat_inputs(tokenizer, question, system=system, device=model.device)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
        )
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
