"""How much do the series' numbers move between CPUs? Compute them under several CPU profiles.

    python scripts/cpu_profiles.py              # every profile, a table of the drift against native
    python scripts/cpu_profiles.py --json F     # the same, also written to F
    python scripts/cpu_profiles.py --compute P ...  # (internal) the profiles' numbers, as JSON on stdout
    python scripts/cpu_profiles.py --run P -- COMMAND ...   # run a command under profile P
                                                 # (make test-profile: the notebooks under P)

A profile limits the instruction sets that PyTorch (ATen), MKL and oneDNN may use, as an older or
a different CPU would, in a process of its own (the limits are read when each library first runs
a kernel; the processes are forked after the imports, before that). Each process computes what
the notebooks print: logits at every position of three texts, token
log-probs, perplexities, entropies at three temperatures, top-10 probabilities, and a greedy
generation with its closest call. The drift of each quantity is its largest difference from the
native profile: relative for perplexities, entropies and probabilities; absolute (in logits or
nats) for logits and log-probs. ``tests/test_cpu_profiles.py`` asserts these stay under the
tolerances of ``llm_tutorial.stable``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys

# name -> environment. AMX is never used by these profiles (oneDNN limited below AVX512_CORE_AMX).
# Profiles without AVX-512 also make bitsandbytes take its path for CPUs without AVX512-BF16
# (scripts/portable/sitecustomize.py), as such a CPU would.
PROFILES = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
               "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},
}

TEXTS = [
    "The capital of France is",
    "Tokenization splits text into pieces that a model can look up in its vocabulary. Each piece "
    "becomes an id, each id a vector, and the model predicts the next piece from all before it.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
]
QUESTION = "What is the capital of France? Answer in one sentence."
TEMPERATURES = [0.5, 1.0, 2.0]


def compute(tok=None) -> dict:
    """This process's numbers (the profile is whatever environment it was started with);
    ``tok``: the tokenizer, if already loaded (it runs no kernel of torch)."""
    import torch

    import llm_tutorial as lt
    from llm_tutorial.notebook import thread_count

    torch.set_num_threads(thread_count())
    model, tok = lt.load_model(), tok or lt.load_tokenizer()
    out = {"capability": torch.backends.cpu.get_cpu_capability(), "texts": []}
    for text in TEXTS:
        ids = tok(text, return_tensors="pt").input_ids
        with torch.inference_mode():
            logits = model(ids).logits[0].float()
        token_logprobs = torch.log_softmax(logits, -1)[:-1].gather(-1, ids[0, 1:, None]).squeeze(-1)
        last = logits[-1]
        out["texts"].append({
            "logits": logits[:, :: 97].flatten().tolist(),  # a sample of every position's logits
            "logit_max": float(logits.abs().max()),
            "token_logprobs": token_logprobs.tolist(),
            # lt.perplexity's formula on the same log-probs: the same number without a second forward
            # pass (lt.perplexity passes an all-ones mask, which gives bit-identical logits)
            "perplexity": math.exp(-float(token_logprobs.sum()) / token_logprobs.numel()),
            "entropy": [float(lt.entropy(last[None] / t)[0]) for t in TEMPERATURES],
            "top10_probs": torch.softmax(last, -1).topk(10).values.tolist(),
            "top10_ids": torch.softmax(last, -1).topk(10).indices.tolist(),
        })
    inputs = lt.chat_inputs(tok, QUESTION)
    sequences = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    n = inputs["input_ids"].shape[1]
    out["greedy"] = sequences[0, n:].tolist()
    out["greedy_gap"] = lt.greedy_gap(model, sequences, n)
    return out


NO_AVX512 = ("avx2", "default")
# A profile can only lower what the CPU has: asking ATen for AVX-512 on a CPU without it kills the
# process. The ATen capability each profile needs, in ATen's order.
CAPABILITY_ORDER = ["DEFAULT", "AVX2", "AVX512"]
NEEDS = {"avx2": "AVX2", "avx512": "AVX512"}


def runnable(profile: str, native_capability: str | None = None) -> bool:
    """Whether this CPU can run ``profile`` (ATen's native capability at least the one it needs).

    >>> runnable("default") and runnable("native")
    True
    """
    need = NEEDS.get(profile)
    if need is None:
        return True
    if native_capability is None:
        import torch

        native_capability = torch.backends.cpu.get_cpu_capability()
    if native_capability not in CAPABILITY_ORDER:  # another architecture's kernels (ARM, POWER, s390)
        return False
    return CAPABILITY_ORDER.index(native_capability) >= CAPABILITY_ORDER.index(need)
PORTABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "portable")


def environment(profile: str) -> dict[str, str]:
    """The environment variables that imitate ``profile`` (added to the current ones)."""
    env = dict(PROFILES[profile])
    if profile in NO_AVX512:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PORTABLE, os.environ.get("PYTHONPATH")) if p)
    return env


def _compute_forked(profiles) -> dict[str, dict]:
    """``compute()`` for each profile in a child forked from this process, all at once.

    The slow part of a fresh process is importing torch and transformers (about 4 of its 7 CPU
    seconds); the tokenizer is loaded once here too. Neither runs a kernel, so ATen's kernel
    choice, MKL and oneDNN are not started: each reads its limit when first used, in the child,
    after it has set its profile's variables. Results are bit-identical to a fresh process
    started with those variables (checked on the five profiles).
    """
    import runpy

    import torch  # noqa: F401  (imported once, before forking)
    from transformers import AutoModelForCausalLM  # noqa: F401
    from transformers.models.llama import modeling_llama  # noqa: F401

    import llm_tutorial as lt

    tok = lt.load_tokenizer()
    children = {}
    for profile in dict.fromkeys(profiles):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its profile's limits, then its numbers
            status = 1
            try:
                os.close(read)
                os.environ.update(environment(profile))
                if profile in NO_AVX512:  # what PYTHONPATH=portable does at start-up in a fresh process
                    runpy.run_path(os.path.join(PORTABLE, "sitecustomize.py"))
                with os.fdopen(write, "w") as out:
                    out.write(json.dumps(compute(tok)))
                status = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        os.close(write)
        children[profile] = (pid, os.fdopen(read))
    results, failed = {}, []
    for profile, (pid, out) in children.items():
        text = out.read()
        out.close()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            failed.append(f"profile {profile} failed (wait status {status})")
        else:
            results[profile] = json.loads(text)
    if failed:
        raise RuntimeError("; ".join(failed))
    return results


def run_all(profiles) -> dict[str, dict]:
    """``compute()`` under each profile, side by side: one fresh process (one thread per profile)
    that imports the libraries once and forks a child per profile (``_compute_forked``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LLM_TUTORIAL_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "--compute", *dict.fromkeys(profiles)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: the children with it
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError("computing the profiles took over 600 s; stopped with its children") from None
    if proc.returncode != 0:
        raise RuntimeError(f"computing the profiles failed (exit status {proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def run(profile: str) -> dict:
    """``compute()`` in a fresh process with that profile's limits."""
    return run_all([profile])[profile]


def _max_abs(a, b) -> float:
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


def _max_rel(a, b) -> float:
    return max((abs(x - y) / max(abs(y), 1e-30) for x, y in zip(a, b)), default=0.0)


def drift(numbers: dict, reference: dict) -> dict:
    """Largest differences of ``numbers`` from ``reference`` (two ``compute()`` results)."""
    pairs = list(zip(numbers["texts"], reference["texts"]))
    return {
        "logits_abs": max(_max_abs(a["logits"], b["logits"]) for a, b in pairs),
        "logprobs_abs": max(_max_abs(a["token_logprobs"], b["token_logprobs"]) for a, b in pairs),
        "perplexity_rel": max(_max_rel([a["perplexity"]], [b["perplexity"]]) for a, b in pairs),
        "entropy_rel": max(_max_rel(a["entropy"], b["entropy"]) for a, b in pairs),
        "probs_rel": max(_max_rel(a["top10_probs"], b["top10_probs"]) for a, b in pairs),
        "same_top10": all(a["top10_ids"] == b["top10_ids"] for a, b in pairs),
        "same_greedy": numbers["greedy"] == reference["greedy"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--compute", nargs="+", choices=sorted(PROFILES), help=argparse.SUPPRESS)
    parser.add_argument("--profiles", nargs="*", default=list(PROFILES), choices=sorted(PROFILES))
    parser.add_argument("--json", help="also write the drift table to this file")
    parser.add_argument("--run", choices=sorted(PROFILES), help="run the command after -- under this profile")
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("--run needs a command after --")
        if not runnable(args.run):
            print(f"cpu_profiles: this CPU cannot run the {args.run} profile (it lacks the instructions)")
            return 2
        print(f"cpu_profiles: {' '.join(command)} under {args.run}: {environment(args.run)}", flush=True)
        return subprocess.call(command, env={**os.environ, **environment(args.run)})
    if args.compute:
        print(json.dumps(_compute_forked(args.compute)))
        return 0
    if platform.machine() not in ("x86_64", "AMD64"):
        print("cpu_profiles: the instruction-set limits apply to x86-64 only; nothing to compare")
        return 0
    skipped = [p for p in args.profiles if not runnable(p)]
    if skipped:
        print(f"cpu_profiles: this CPU cannot run {', '.join(skipped)} (it lacks the instructions); skipped")
    numbers = run_all(["native", *(p for p in args.profiles if p not in skipped)])
    table = {p: {"capability": numbers[p]["capability"], **drift(numbers[p], numbers["native"])}
             for p in numbers if p != "native"}
    print(f"native: ATen capability {numbers['native']['capability']}, "
          f"greedy gap {numbers['native']['greedy_gap']:.3g}")
    for p, row in table.items():
        print(f"{p:>15}: " + ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
