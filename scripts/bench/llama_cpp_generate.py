#!/usr/bin/env python3
"""llama.cpp's side of `muse bench generate`: prompt processing (pp) and generation (tg)
tokens/s of a GGUF file through llama-cpp-python, measured as llama-bench measures them and as
Muse's benchmark does: pp runs PROMPT random tokens as one batch into an empty cache, tg decodes
GEN tokens one at a time from an empty cache, each timed alone; median of REPS after a warm-up.

usage: python scripts/bench/llama_cpp_generate.py MODEL.gguf [--threads 2] [--prompt-tokens 512]
       [--gen-tokens 128] [--reps 5]
needs: pip install llama-cpp-python (builds llama.cpp from source). Prints one JSON line with
the same keys as `muse bench generate`.
"""
import argparse
import json
import random
import resource
import statistics
import time

import llama_cpp

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--prompt-tokens", type=int, default=512)
ap.add_argument("--gen-tokens", type=int, default=128)
ap.add_argument("--reps", type=int, default=5)
args = ap.parse_args()

ctx = max(args.prompt_tokens, args.gen_tokens)
llm = llama_cpp.Llama(
    model_path=args.model,
    n_ctx=ctx,
    n_batch=max(args.prompt_tokens, 1),
    n_ubatch=max(args.prompt_tokens, 1),
    n_threads=args.threads,
    n_threads_batch=args.threads,
    verbose=False,
)
rng = random.Random(0)
ids = [rng.randrange(llm.n_vocab()) for _ in range(ctx)]


def time_prompt():
    llm.reset()
    llm._ctx.kv_cache_clear()
    t0 = time.perf_counter()
    llm.eval(ids[: args.prompt_tokens])
    return time.perf_counter() - t0


def time_generation():
    llm.reset()
    llm._ctx.kv_cache_clear()
    t0 = time.perf_counter()
    for i in range(args.gen_tokens):
        llm.eval([ids[i]])
    return time.perf_counter() - t0


pp, tg = [], []
for rep in range(args.reps + 1):
    if args.prompt_tokens:
        s = time_prompt()
        if rep:
            pp.append(args.prompt_tokens / s)
    if args.gen_tokens:
        s = time_generation()
        if rep:
            tg.append(args.gen_tokens / s)

median = lambda v: round(statistics.median(v), 2) if v else None
print(json.dumps({
    "bench": "generate",
    "impl": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}",
    "model": args.model,
    "threads": args.threads,
    "prompt_tokens": args.prompt_tokens,
    "gen_tokens": args.gen_tokens,
    "reps": args.reps,
    "prompt_tokens_per_s": median(pp),
    "gen_tokens_per_s": median(tg),
    "prompt_tokens_per_s_runs": [round(x, 2) for x in pp],
    "gen_tokens_per_s_runs": [round(x, 2) for x in tg],
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
