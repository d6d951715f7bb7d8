"""Command line: ``python -m llm_tutorial prepare | info | check | ask "question" | bench``."""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_tutorial", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="convert the embedded model once (offline) and time a warm load")
    sub.add_parser("info", help="print versions, cache folder and the model in use")
    sub.add_parser("check", help="check this machine for the series: [OK]/[WARN]/[FAIL] with fixes; "
                   "exit status 1 when something failed")
    ask_parser = sub.add_parser("ask", help="ask the model one question through its chat template")
    ask_parser.add_argument("question")
    ask_parser.add_argument("--model", default=None, help="folder or Hub id (default: embedded)")
    ask_parser.add_argument("--max-new-tokens", type=int, default=64)
    bench_parser = sub.add_parser(
        "bench", help="time the no-cache loop, the cached hand loop and generate(); print their speed ratios, "
        "the decoding speed limit, batch throughput, prompt-lookup and speculative speed-ups")
    bench_parser.add_argument("--model", default=None, help="folder or Hub id (default: embedded)")
    bench_parser.add_argument("--tokens", type=int, default=32, help="new tokens per run (default 32)")
    bench_parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, fastest step kept")
    bench_parser.add_argument("--prompt", default="Why is the sky blue? Answer in two sentences.")
    bench_parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32],
                              help="batch sizes of the throughput measurement (default 1 2 4 8 16 32)")
    bench_parser.add_argument("--bandwidth-mib", type=int, default=256,
                              help="size of the tensor summed to measure memory bandwidth (default 256)")
    args = parser.parse_args(argv)
    if args.command == "check":  # before anything else is imported: a missing package is a finding
        from .check import main as check_main

        return check_main()

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
    if args.command == "bench":
        return _bench(model, tokenizer, args)
    print(ask(model, tokenizer, args.question, max_new_tokens=args.max_new_tokens))
    return 0


def _bench(model, tokenizer, args) -> int:
    import torch

    from .bench import speed_ratios, time_decoding
    from .chat import chat_inputs
    from .models import describe_model
    from .notebook import thread_count

    torch.set_num_threads(thread_count())
    inputs = chat_inputs(tokenizer, args.prompt)
    prompt = inputs["input_ids"].shape[1]
    print(f"{describe_model(args.model)}: {prompt}-token prompt, {args.tokens} new tokens, "
          f"best step of {args.repeats} runs, {torch.get_num_threads()} threads")
    times, tokens = time_decoding(model, inputs, max_new_tokens=args.tokens, repeats=args.repeats)
    if len({tuple(t) for t in tokens.values()}) != 1:
        print("the three loops gave different tokens", file=sys.stderr)
        return 1
    for loop, t in times.items():
        steps = [b - a for a, b in zip(t, t[1:])]
        print(f"{loop:<18} {args.tokens / t[-1]:6.1f} tok/s   first token {1000 * t[0]:6.0f} ms   "
              f"later steps {1000 * sum(steps) / max(len(steps), 1):5.0f} ms")
    for name, ratio in speed_ratios(times).items():
        print(f"{name}: {ratio:.2f}x tokens/s")
    return _bench_limits(model, tokenizer, inputs, times["generate()"], args)


def _bench_limits(model, tokenizer, inputs, generate_times, args) -> int:
    """Notebook 07's measurements: the roofline, batching, prompt lookup, speculative decoding."""
    import copy

    import torch

    from .bench import COPY_TASK, time_batched_steps, time_speedups
    from .chat import chat_inputs
    from .roofline import forward_bytes, matmul_flops, memory_bandwidth
    from .speculative import early_exit_draft

    bandwidth = memory_bandwidth(args.bandwidth_mib * 2**20, device=model.device)
    flop_rate = matmul_flops(1024, device=model.device)
    step_bytes = forward_bytes(model, 1, past_tokens=inputs["input_ids"].shape[1] + args.tokens // 2)
    limit = bandwidth / step_bytes
    print(f"memory bandwidth {bandwidth / 1e9:.1f} GB/s, float32 matmul {flop_rate / 1e9:.0f} GFLOP/s: "
          f"ridge point {flop_rate / bandwidth:.1f} FLOP/byte")
    if len(generate_times) > 1:
        decoding = (len(generate_times) - 1) / (generate_times[-1] - generate_times[0])
        print(f"decoding reads {step_bytes / 1e6:.0f} MB a token: speed limit {limit:.1f} tok/s; "
              f"generate() decodes {decoding:.1f} tok/s = {decoding / limit:.2f}x the limit")
    steps = time_batched_steps(model, inputs["input_ids"], args.batch_sizes)
    small, large = min(steps), max(steps)
    print(f"batch {large} / batch {small}: {large / steps[large] / (small / steps[small]):.2f}x tokens/s "
          f"(a step {steps[large] / steps[small]:.2f}x as long)")
    drafts = {}
    try:
        drafts["speculative, bfloat16 draft"] = copy.deepcopy(model).to(torch.bfloat16)
    except (TypeError, ValueError, RuntimeError) as error:  # a quantized model cannot be cast
        print(f"speculative, bfloat16 draft: skipped ({error})")
    layers = max(1, model.config.num_hidden_layers // 8)
    try:
        drafts[f"speculative, early-exit draft ({layers} layers)"] = early_exit_draft(model, layers)
    except TypeError as error:
        print(f"speculative, early-exit draft: skipped ({error})")
    for label, task_inputs, task_drafts in (("copy task", chat_inputs(tokenizer, COPY_TASK), {}),
                                            ("this prompt", inputs, drafts)):
        results = time_speedups(model, task_inputs, max_new_tokens=max(args.tokens, 2), repeats=args.repeats,
                                drafts=task_drafts)
        for name, r in results.items():
            stats = r["stats"]
            same = "" if r["same_tokens"] else "  (other tokens than greedy: a near-tie)"
            print(f"{name}, {label}: {r['speedup']:.2f}x tokens/s of greedy generate(), "
                  f"{stats.acceptance_rate:.0%} of guesses kept, {stats.forward_calls} passes for "
                  f"{stats.new_tokens} tokens{same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
