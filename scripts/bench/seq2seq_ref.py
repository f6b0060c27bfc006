"""PyTorch reference for Muse's encoder-decoder transformer, preset tatoeba-en-fr: 3 + 3
pre-LN layers, d 256, 4 heads, FFN 1024, dropout 0.1, shared scaled embeddings, sinusoidal
positions, label smoothing 0.1, Adam (0.9, 0.98, 1e-9), clip 1.0, inverse square-root schedule
(7e-4 after 1,000 warm-up steps), batches of 64 pairs (see seq2seq_ref_model.py).

Same data as Muse: the split that `muse data split eng-fra --out SPLIT` writes (Muse deals it,
so the pairs and their order are Muse's own) and the tokenizer.json of a Muse run.

  # time N training steps on batches spread over the length distribution (as `muse bench
  # seq2seq`): one JSON line with ms_per_step_median
  python seq2seq_ref.py --split SPLIT --tokenizer RUN/tokenizer.json --threads 2 --steps 30 --warmup 5
  # train S steps, save, translate a file greedily (and with --beam 4), one JSON line each
  python seq2seq_ref.py --split SPLIT --tokenizer RUN/tokenizer.json --train_steps 2000 \
      --save ref.pt --translate src.txt --out hyp.txt [--beam 4]
  # a long run that survives being stopped: the same command again continues it
  python seq2seq_ref.py ... --train_steps 12000 --checkpoint ref12k.ckpt --save ref12k.pt ...
  # translate again with saved weights
  python seq2seq_ref.py --split SPLIT --tokenizer RUN/tokenizer.json --load ref.pt --translate src.txt --out hyp.txt

Score with `muse eval --hyp hyp.txt --ref ref.txt` (sacreBLEU's settings).
"""
import argparse, json, os, statistics, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--split", required=True, help="folder with train.tsv, valid.tsv (muse data split)")
ap.add_argument("--tokenizer", required=True, help="a Muse translation run's tokenizer.json")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--steps", type=int, default=0, help="timed steps (timing mode)")
ap.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed ones")
ap.add_argument("--train_steps", type=int, default=0, help="train this many steps")
ap.add_argument("--log_interval", type=int, default=100)
ap.add_argument("--save", help="write the trained weights here")
ap.add_argument("--load", help="start from these weights")
ap.add_argument("--checkpoint", help="with --train_steps: save weights, optimizer, step and RNG "
                "here every --checkpoint_every steps, and continue from it when it exists")
ap.add_argument("--checkpoint_every", type=int, default=250)
ap.add_argument("--translate", help="a file of source sentences, one a line")
ap.add_argument("--out", help="write the greedy translations here (beam: OUT.beamK)")
ap.add_argument("--beam", type=int, default=1, help="also translate with this beam (>1)")
ap.add_argument("--length_penalty", type=float, default=0.6)
ap.add_argument("--translate_batch", type=int, default=32, help="as muse eval --batch-size")
ap.add_argument("--seed", type=int, default=1337)
args = ap.parse_args()
for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[v] = str(args.threads)
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seq2seq_ref_model as S  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)
torch.manual_seed(args.seed)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(**d):
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), **d}),
          flush=True)


tok = Tokenizer.from_file(args.tokenizer)
assert [tok.token_to_id(t) for t in ("<pad>", "<s>", "</s>")] == [S.PAD, S.BOS, S.EOS]
model = S.Seq2SeqRef(tok.get_vocab_size(with_added_tokens=True))
if args.load:
    model.load_state_dict(torch.load(args.load))
params = sum(p.numel() for p in model.parameters())
opt = torch.optim.Adam(model.parameters(), lr=S.LR, betas=S.BETAS, eps=S.ADAM_EPS)

train = valid = None
if args.steps or args.train_steps:
    t0 = time.perf_counter()
    train = S.encode_pairs(tok, S.read_tsv(os.path.join(args.split, "train.tsv")))
    kept = [p for p in train if S.pair_len(p) <= S.MAX_POS]  # Muse leaves longer ones out
    log(f"{len(train)} train pairs, {len(train) - len(kept)} longer than {S.MAX_POS} left out, "
        f"{params} parameters, {time.perf_counter() - t0:.1f} s to tokenise")
    train = kept
    lengths = [S.pair_len(p) for p in train]


def train_step(idx, lr):
    src, tin, tout, tokens = S.make_batch(train, idx)
    for g in opt.param_groups:
        g["lr"] = lr
    loss = model.loss(src, tin, tout)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), S.CLIP)
    opt.step()
    return loss.item(), tokens


if args.steps:
    model.train()
    ms, cpu_ms, tokens, loss = [], [], 0, float("nan")
    for phase, n in (("warmup", args.warmup), ("timed", args.steps)):
        for idx in S.quantile_batches(lengths, n):
            t0, cpu0 = time.perf_counter(), time.process_time()
            loss, tok_count = train_step(idx, S.LR)
            if phase == "timed":
                ms.append((time.perf_counter() - t0) * 1e3)
                cpu_ms.append((time.process_time() - cpu0) * 1e3)
                tokens += tok_count
    q = sorted(ms)
    emit(bench="seq2seq", preset="tatoeba-en-fr", batch=S.BATCH, params=params,
         timed_steps=len(ms), ms_per_step_median=round(statistics.median(ms), 3),
         ms_per_step_p10=round(q[int(0.1 * (len(q) - 1) + 0.5)], 3),
         ms_per_step_p90=round(q[int(0.9 * (len(q) - 1) + 0.5)], 3),
         cpu_ms_per_step_median=round(statistics.median(cpu_ms), 3),  # all threads' CPU time
         timed_tgt_tokens=tokens, tgt_tokens_per_s=round(tokens / (sum(ms) / 1e3), 1),
         final_loss=round(loss, 4))


@torch.no_grad()
def valid_loss():
    """Validation cross-entropy without smoothing, nats per target token (Muse's valid_loss:
    all pairs cut to fit, sorted by length, batches of 64)."""
    model.eval()
    pairs = [(s[:S.MAX_POS - 1], t[:S.MAX_POS - 1])
             for s, t in S.encode_pairs(tok, S.read_tsv(os.path.join(args.split, "valid.tsv")))]
    order = sorted(range(len(pairs)), key=lambda i: S.pair_len(pairs[i]))
    total = count = 0
    for b0 in range(0, len(order), S.BATCH):
        src, tin, tout, n = S.make_batch(pairs, order[b0:b0 + S.BATCH])
        total += model.loss(src, tin, tout, smoothing=0.0).item() * n
        count += n
    model.train()
    return total / count


if args.train_steps:
    model.train()
    per_epoch, plan = None, (None, None)
    t_start, ms, loss, first = time.perf_counter(), [], float("nan"), 0
    if args.checkpoint and os.path.exists(args.checkpoint):
        ck = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"])
        first, ms, loss = ck["step"], ck["ms"], ck["loss"]
        t_start -= ck["seconds"]
        log(f"continuing from {args.checkpoint} at step {first}")
    for step in range(first, args.train_steps):
        per_epoch = per_epoch or len(S.epoch_batches(lengths, args.seed, 0))
        epoch, i = divmod(step, per_epoch)
        if plan[0] != epoch:
            plan = (epoch, S.epoch_batches(lengths, args.seed, epoch))
        t0 = time.perf_counter()
        loss, _ = train_step(plan[1][i], S.lr_at(step))
        ms.append((time.perf_counter() - t0) * 1e3)
        if step % args.log_interval == 0 or step + 1 == args.train_steps:
            log(f"step {step} | loss {loss:.4f} | lr {S.lr_at(step):.1e} | {ms[-1]:.0f} ms")
        if args.checkpoint and (step + 1) % args.checkpoint_every == 0:
            # written aside and renamed, so a stop while saving keeps the last good one
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "rng": torch.get_rng_state(), "step": step + 1, "ms": ms, "loss": loss,
                        "seconds": time.perf_counter() - t_start}, args.checkpoint + ".tmp")
            os.replace(args.checkpoint + ".tmp", args.checkpoint)
    val = valid_loss()
    emit(bench="seq2seq_train", steps=args.train_steps, params=params, final_loss=round(loss, 4),
         val_loss=round(val, 4), ms_per_step_median=round(statistics.median(ms), 3),
         train_seconds=round(time.perf_counter() - t_start, 1))
    if args.save:
        torch.save(model.state_dict(), args.save)

if args.translate:
    with open(args.translate, encoding="utf-8") as f:
        texts = f.read().removesuffix("\n").split("\n")
    for beam in sorted({1, args.beam}):
        t0 = time.perf_counter()
        hyps = S.translate(model, tok, texts, args.translate_batch, beam, args.length_penalty)
        secs = time.perf_counter() - t0
        out = args.out if beam == 1 else f"{args.out}.beam{beam}"
        with open(out, "w", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in hyps))
        emit(bench="seq2seq_translate", beam=beam, sentences=len(texts), seconds=round(secs, 3),
             sentences_per_s=round(len(texts) / secs, 2), out=out)
