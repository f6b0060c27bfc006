"""The PyTorch twin of Muse's `models::seq2seq` at the `tatoeba-en-fr` preset, its data and its
search, shared by seq2seq_ref.py.

Model: `torch.nn.Transformer(norm_first=True)` (pre-LayerNorm, ReLU, final encoder and decoder
LayerNorms) between one embedding shared by source, target and output projection, scaled by
sqrt(d_model), plus the sinusoidal positions of Vaswani et al. 2017; dropout on the embeddings
and inside every layer; source padding masked in encoder self-attention and cross-attention.
Initialised as Muse does: embedding N(0, d^-1/2), matrices N(0, 0.02), zero biases, unit gains.

Data: the pairs of `muse data split eng-fra --out DIR` (Muse's own split, written by Muse),
tokenised with a Muse run's tokenizer.json, batched as crates/core/src/data/parallel/batch.rs
does (sources + EOS; BOS + target; target + EOS; right-padded; epochs of length-sorted pools of
50 batches). Search: greedy and beam search ported from crates/core/src/sample/beam.rs, with
an encoder run once, cross-attention keys/values computed once and a self-attention cache.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The tatoeba-en-fr preset (configs/seq2seq-tatoeba-en-fr.toml).
D_MODEL, HEADS, ENC_LAYERS, DEC_LAYERS, FFN, DROPOUT, MAX_POS, LN_EPS = 256, 4, 3, 3, 1024, 0.1, 64, 1e-5
PAD, BOS, EOS = 0, 1, 2
BATCH, LR, WARMUP, BETAS, ADAM_EPS, CLIP, SMOOTHING = 64, 7e-4, 1000, (0.9, 0.98), 1e-9, 1.0, 0.1
POOL_BATCHES = 50


def sinusoidal(n, d):
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(d // 2, dtype=torch.float64)[None, :]
    angle = pos / 10000 ** (2 * i / d)
    pe = torch.zeros(n, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angle.sin(), angle.cos()
    return pe.float()


class Seq2SeqRef(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.emb = nn.Embedding(vocab, D_MODEL)
        self.tr = nn.Transformer(D_MODEL, HEADS, ENC_LAYERS, DEC_LAYERS, FFN, DROPOUT,
                                 activation="relu", batch_first=True, norm_first=True,
                                 layer_norm_eps=LN_EPS)
        self.drop = nn.Dropout(DROPOUT)
        self.register_buffer("pe", sinusoidal(MAX_POS, D_MODEL), persistent=False)
        with torch.no_grad():  # Muse's seq2seq_init, not nn.Transformer's xavier
            self.emb.weight.normal_(0, D_MODEL ** -0.5)
            for name, p in self.tr.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.dim() == 1:
                    p.fill_(1.0)
                else:
                    p.normal_(0, 0.02)

    def embed(self, ids, offset=0):
        return self.emb(ids) * math.sqrt(D_MODEL) + self.pe[offset:offset + ids.shape[1]]

    def forward(self, src, tgt_in):
        """(B, Ts), (B, Tt) -> logits (B, Tt, V)."""
        pad = src == PAD
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1])
        y = self.tr(self.drop(self.embed(src)), self.drop(self.embed(tgt_in)), tgt_mask=causal,
                    src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_is_causal=True)
        return y @ self.emb.weight.T

    def loss(self, src, tgt_in, tgt_out, smoothing=SMOOTHING):
        logits = self(src, tgt_in)
        return F.cross_entropy(logits.reshape(-1, self.vocab), tgt_out.reshape(-1),
                               ignore_index=PAD, label_smoothing=smoothing)


def lr_at(step):
    """Muse's inverse_sqrt schedule (crates/core/src/train/schedule.rs), step from 0."""
    s, w = step + 1, WARMUP
    return LR * min(s / w, math.sqrt(w / s))


# ---- data -------------------------------------------------------------------------------

def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t")[:2] for line in f if line.strip("\n")]


def encode_pairs(tok, pairs):
    src = tok.encode_batch([p[0] for p in pairs], add_special_tokens=False)
    tgt = tok.encode_batch([p[1] for p in pairs], add_special_tokens=False)
    return [(s.ids, t.ids) for s, t in zip(src, tgt)]


def pair_len(p):
    return max(len(p[0]), len(p[1])) + 1


def make_batch(pairs, idx):
    """Right-padded (src, tgt_in, tgt_out) tensors and the target tokens counted in the loss."""
    ts = max(len(pairs[i][0]) for i in idx) + 1
    tt = max(len(pairs[i][1]) for i in idx) + 1
    src = torch.full((len(idx), ts), PAD, dtype=torch.long)
    tin = torch.full((len(idx), tt), PAD, dtype=torch.long)
    tout = torch.full((len(idx), tt), PAD, dtype=torch.long)
    tokens = 0
    for r, i in enumerate(idx):
        s, t = pairs[i]
        src[r, :len(s) + 1] = torch.tensor(s + [EOS])
        tin[r, :len(t) + 1] = torch.tensor([BOS] + t)
        tout[r, :len(t) + 1] = torch.tensor(t + [EOS])
        tokens += len(t) + 1
    return src, tin, tout, tokens


def epoch_batches(lengths, seed, epoch):
    """Shuffle, sort pools of 50 batches by length, cut, shuffle the batches (Muse's scheme;
    NumPy's generator instead of ChaCha8, so the same distribution, not the same batches)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches = []
    pool = BATCH * POOL_BATCHES
    for p0 in range(0, len(order), pool):
        chunk = sorted(order[p0:p0 + pool].tolist(), key=lambda i: lengths[i])
        batches += [chunk[b:b + BATCH] for b in range(0, len(chunk), BATCH)]
    return [batches[i] for i in rng.permutation(len(batches))]


def quantile_batches(lengths, m):
    """`m` batches spread evenly over the length distribution: batch k is the BATCH pairs
    starting at position (k + 0.5) / m of the pairs sorted by length (stably). The same batches
    in Muse's `muse bench seq2seq`, so both time the same work."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    span = max(len(order) - BATCH, 0)
    return [order[int((k + 0.5) / m * span):][:BATCH] for k in range(m)]


# ---- search -----------------------------------------------------------------------------

def _heads(x):
    b, t, _ = x.shape
    return x.view(b, t, HEADS, D_MODEL // HEADS).transpose(1, 2)  # (B, nh, T, hs)


class CachedDecoder:
    """Encoder states and cross-attention keys/values of a batch of sources, computed once, and
    a self-attention cache: one token per row per step (Muse's ModelDecoder)."""

    def __init__(self, model, src):
        self.m = model
        keep = (src != PAD)[:, None, None, :]  # (B, 1, 1, Ts): True where attended
        mem = model.tr.encoder(model.embed(src), src_key_padding_mask=src == PAD)
        self.keep, self.cross, self.cache, self.len = keep, [], [], 0
        for layer in model.tr.decoder.layers:
            w, b = layer.multihead_attn.in_proj_weight, layer.multihead_attn.in_proj_bias
            k = F.linear(mem, w[D_MODEL:2 * D_MODEL], b[D_MODEL:2 * D_MODEL])
            v = F.linear(mem, w[2 * D_MODEL:], b[2 * D_MODEL:])
            self.cross.append((_heads(k), _heads(v)))
            self.cache.append(None)

    def step(self, tokens):
        """Log-probabilities (N, V) of the next token after `tokens` (N) for each live row."""
        x = self.m.embed(torch.tensor(tokens)[:, None], self.len)  # (N, 1, C)
        for i, layer in enumerate(self.m.tr.decoder.layers):
            sa = layer.self_attn
            q, k, v = F.linear(layer.norm1(x), sa.in_proj_weight, sa.in_proj_bias).chunk(3, -1)
            q, k, v = _heads(q), _heads(k), _heads(v)
            if self.cache[i] is not None:
                k, v = torch.cat([self.cache[i][0], k], 2), torch.cat([self.cache[i][1], v], 2)
            self.cache[i] = (k, v)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(x.shape)
            x = x + sa.out_proj(a)
            ca = layer.multihead_attn
            w, b = ca.in_proj_weight, ca.in_proj_bias
            q = _heads(F.linear(layer.norm2(x), w[:D_MODEL], b[:D_MODEL]))
            ck, cv = self.cross[i]
            a = F.scaled_dot_product_attention(q, ck, cv, attn_mask=self.keep)
            x = x + ca.out_proj(a.transpose(1, 2).reshape(x.shape))
            x = x + layer.linear2(F.relu(layer.linear1(layer.norm3(x))))
        self.len += 1
        logits = self.m.tr.decoder.norm(x[:, -1]) @ self.m.emb.weight.T
        lp = F.log_softmax(logits, -1)
        lp[:, PAD] = lp[:, BOS] = -math.inf  # never outputs
        return lp

    def keep_rows(self, rows):
        idx = torch.tensor(rows)
        self.keep = self.keep[idx]
        self.cross = [(k[idx], v[idx]) for k, v in self.cross]
        self.cache = [(k[idx], v[idx]) for k, v in self.cache]


def greedy(dec, n, max_len):
    out, live, tokens = [[] for _ in range(n)], list(range(n)), [BOS] * n
    for _ in range(max_len):
        if not live:
            break
        best = dec.step(tokens).argmax(-1).tolist()
        keep = [r for r, t in enumerate(best) if t != EOS]
        for r in keep:
            out[live[r]].append(best[r])
        if 0 < len(keep) < len(live):
            dec.keep_rows(keep)
        live, tokens = [live[r] for r in keep], [best[r] for r in keep]
    return out


def length_penalty(n, alpha):
    return ((5 + n) / 6) ** alpha


def beam_search(dec, n, max_len, k, alpha):
    """Muse's beam search: the best 2k extensions of each sentence's live hypotheses; those
    ending in EOS among the best k finish; done at k finished; best length-normalised wins."""
    sents = [{"live": [([], 0.0)], "finished": [], "done": False} for _ in range(n)]
    for step in range(max_len):
        tokens = [h[0][-1] if h[0] else BOS for s in sents if not s["done"] for h in s["live"]]
        if not tokens:
            break
        lp = dec.step(tokens)
        top_lp, top_ix = lp.topk(2 * k, -1)  # (N, 2k), best first
        top_lp, top_ix = top_lp.double().tolist(), top_ix.tolist()
        last, keep, row0 = step + 1 == max_len, [], 0
        for s in (s for s in sents if not s["done"]):
            rows = len(s["live"])
            cands = [(s["live"][r][1] + top_lp[row0 + r][j], r, top_ix[row0 + r][j])
                     for r in range(rows) for j in range(2 * k)]
            cands.sort(key=lambda c: (-c[0], c[1], c[2]))
            live = []
            for rank, (score, r, t) in enumerate(cands[:2 * k]):
                if t == EOS:
                    if rank < k:
                        toks = s["live"][r][0]
                        s["finished"].append((score / length_penalty(len(toks) + 1, alpha), toks))
                    continue
                if len(live) < k:
                    live.append((row0 + r, (s["live"][r][0] + [t], score)))
            row0 += rows
            if len(s["finished"]) >= k or not live:
                s["done"] = True
                continue
            if last:
                for _, (toks, score) in live:
                    s["finished"].append((score / length_penalty(len(toks), alpha), toks))
                s["done"] = True
                continue
            keep += [row for row, _ in live]
            s["live"] = [h for _, h in live]
        if not keep:
            break
        dec.keep_rows(keep)
    return [max(s["finished"], key=lambda f: f[0])[1] if s["finished"] else [] for s in sents]


@torch.no_grad()
def translate(model, tok, texts, batch_size, beam=1, alpha=0.6):
    """Translations of `texts`, in batches of similar length, longest first (as Muse's
    translate_texts)."""
    model.eval()
    ids = [tok.encode(t, add_special_tokens=False).ids[:MAX_POS - 1] + [EOS] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
    out = [""] * len(texts)
    for b0 in range(0, len(order), batch_size):
        chunk = order[b0:b0 + batch_size]
        longest = max(len(ids[i]) for i in chunk)
        src = torch.full((len(chunk), longest), PAD, dtype=torch.long)
        for r, i in enumerate(chunk):
            src[r, :len(ids[i])] = torch.tensor(ids[i])
        max_len = min(2 * longest + 10, MAX_POS)
        dec = CachedDecoder(model, src)
        res = greedy(dec, len(chunk), max_len) if beam == 1 else \
            beam_search(dec, len(chunk), max_len, beam, alpha)
        for i, o in zip(chunk, res):
            out[i] = tok.decode(o, skip_special_tokens=False)
    return out
