"""Command line: ``python -m llm_tutorial prepare | info | ask "question"``."""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_tutorial", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="convert the embedded model once (offline) and time a warm load")
    sub.add_parser("info", help="print versions, cache folder and the model in use")
    ask_parser = sub.add_parser("ask", help="ask the model one question through its chat template")
    ask_parser.add_argument("question")
    ask_parser.add_argument("--model", default=None, help="folder or Hub id (default: embedded)")
    ask_parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)

    from . import (
        ask,
        cache_dir,
        describe_model,
        embedded_model_dir,
        load_model,
        load_tokenizer,
        prepare_embedded_model,
        resolve_model,
        version_banner,
    )
    from .embedded import is_complete
    from .notebook import quiet_libraries

    if args.command == "prepare":
        was_ready = is_complete(embedded_model_dir())
        started = time.perf_counter()
        folder = prepare_embedded_model().resolve()
        converted_in = time.perf_counter() - started
        quiet_libraries()
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (import cost apart)

        started = time.perf_counter()
        load_model("embedded"), load_tokenizer("embedded")
        how = "already converted" if was_ready else f"converted in {converted_in:.1f} s"
        print(f"embedded model ready at {folder} ({how}); "
              f"warm load {time.perf_counter() - started:.2f} s")
        return 0
    if args.command == "info":
        print(version_banner())
        print(f"cache folder: {cache_dir()}")
        print(f"model: {describe_model()} -> {resolve_model()}")
        return 0
    quiet_libraries()
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    print(ask(model, tokenizer, args.question, max_new_tokens=args.max_new_tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
