"""sentence-transformers' all-MiniLM-L6-v2 encoding speed, the reference for
crates/core/examples/embed_speed.rs: the first N non-blank lines of Tiny Shakespeare encoded in
batches of B after one warm-up pass; prints one JSON line.

usage: MUSE_DATA_DIR=../shared/data ~/.cache/muse-bench-venv/bin/python \
       scripts/bench/embed_minilm.py --threads 2 --n 256 --batch 32 --reps 5
"""
import argparse, json, os, statistics, time

import torch
from sentence_transformers import SentenceTransformer

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--n", type=int, default=256)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--reps", type=int, default=5)
a = p.parse_args()
torch.set_num_threads(a.threads)
data = os.environ.get("MUSE_DATA_DIR", "../shared/data")
with open(os.path.join(data, "tinyshakespeare/input.txt")) as f:
    texts = [l for l in f.read().splitlines() if l.strip()][: a.n]
st = SentenceTransformer(os.path.join(data, "all-minilm-l6-v2"), device="cpu")
with torch.inference_mode():
    st.encode(texts, batch_size=a.batch)  # warm-up
    ms = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        st.encode(texts, batch_size=a.batch)
        ms.append((time.perf_counter() - t0) * 1e3)
m = statistics.median(ms)
print(json.dumps({"impl": "sentence-transformers", "threads": a.threads, "sentences": len(texts),
                  "batch": a.batch, "ms_median": round(m, 1),
                  "sentences_per_s_median": round(len(texts) / m * 1e3, 1)}))
