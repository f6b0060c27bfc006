"""How far apart a text-to-image U-Net's pooled-prompt term puts prompts, next to how far apart
its time embedding puts timesteps (docs/diffusion.md, "pooled prompt").

For each run given (a label-only run: the distances between its label rows), with its trained (`raw`) and EMA weights: the norm of `text_emb(pool(prompt))`
for a few prompts, the distances between prompts that differ in colour or in item, and the
distances between the time embeddings of t = 0, 100 and 500. With no run, the same for a fresh
layer (PyTorch's `nn.Linear` initialisation, Muse's for this layer) under both poolings.

The token states come from transformers' BertModel on ../shared/data/all-minilm-l6-v2 (what
`muse embed` is checked against); `mean` is their masked mean, `unit` that mean scaled to norm
sqrt(384), as `model.text_pooling` says.

usage: python scripts/bench/t2i_prompt_separation.py [RUN/model.safetensors ...]
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

data = os.environ.get("MUSE_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))
enc_dir = os.path.join(data, "all-minilm-l6-v2")
PROMPTS = ["a red t-shirt", "a blue t-shirt", "a red sneaker", ""]

tok = AutoTokenizer.from_pretrained(enc_dir)
enc = AutoModel.from_pretrained(enc_dir).eval()
batch = tok(PROMPTS, padding=True, return_tensors="pt")
with torch.no_grad():
    states = enc(**batch).last_hidden_state
mask = batch["attention_mask"][..., None].float()
mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
POOLS = {"mean": mean, "unit": F.normalize(mean, dim=1) * math.sqrt(mean.shape[1])}


def time_embedding(w, t, dim=32):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    a = t.float()[:, None] * freqs
    e = torch.cat([a.sin(), a.cos()], 1)
    h = F.silu(F.linear(e, w["temb.0.weight"], w["temb.0.bias"]))
    return F.linear(h, w["temb.2.weight"], w["temb.2.bias"])


def report(label, p):
    d = torch.cdist(p, p)
    print(f"{label}: prompt term norms {[round(x, 2) for x in p.norm(dim=1).tolist()]}; "
          f"red/blue t-shirt {d[0, 1]:.2f}, red t-shirt/red sneaker {d[0, 2]:.2f}, "
          f"red t-shirt/empty {d[0, 3]:.2f}")


if len(sys.argv) == 1:
    torch.manual_seed(0)
    layer = torch.nn.Linear(mean.shape[1], 128)
    for name, pooled in POOLS.items():
        with torch.no_grad():
            report(f"fresh layer, {name} pooling", layer(pooled))
for path in sys.argv[1:]:
    tensors = load_file(path)
    cfg_path = os.path.join(os.path.dirname(path), "config.json")
    pooling = "mean"
    if os.path.exists(cfg_path):
        pooling = json.load(open(cfg_path)).get("text_pooling", "mean")
    for prefix in ["", "ema."]:
        w = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix) and (prefix or not k.startswith("ema."))}
        if "class_emb.weight" in w:  # a label-only run: its label rows instead
            rows = w["class_emb.weight"]
            d = torch.cdist(rows, rows)
            off = d[:-1, :-1][~torch.eye(len(rows) - 1, dtype=torch.bool)]
            print(f"{path} ({prefix or 'raw '}weights, labels): between label rows median "
                  f"{off.median():.2f} (min {off.min():.2f}), label 0/no label {d[0, -1]:.2f}")
        else:
            p = F.linear(POOLS[pooling], w["text_emb.weight"], w["text_emb.bias"])
            report(f"{path} ({prefix or 'raw '}weights, {pooling} pooling)", p)
        te = time_embedding(w, torch.tensor([0, 100, 500]))
        print(f"  time embedding: t 0/100 {(te[0] - te[1]).norm():.2f}, t 0/500 {(te[0] - te[2]).norm():.2f}")
