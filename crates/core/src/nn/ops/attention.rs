//! Causal multi-head self-attention on a packed q|k|v tensor (Vaswani et al. 2017, "Attention
//! Is All You Need"; the GPT-2 layout), fused forward and backward.
//!
//! Per (batch, head): `S = Q K^T / sqrt(hs)` with `gemm` reading q and k straight out of the
//! packed rows (no split, transpose or copy), a causal softmax in place, then `O = P V` written
//! into the head's columns of the output. Rows go in blocks of 32 so the masked upper triangle
//! beyond each block is never multiplied. The backward is four more strided `gemm`s per head.
//!
//! The forward keeps the probabilities `P` for the backward while they take at most 64 MiB;
//! beyond that (GPT-2 at B=12, T=1024 would keep 600 MB per layer) it keeps only each row's
//! log-sum-exp and the backward recomputes `P` from `Q K^T`, as flash attention does.

use std::ops::Range;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

use super::cpu::{CpuRead, f32_slice, run_tasks, tensor, threads};
use super::math::{Fma, exp, max, simd_dispatch, sum_map, sum_map2};
use super::matmul::{Mat, Out, extent, mm};
use super::{fast_path, reference};

/// Causal self-attention, heads concatenated, scale `1 / sqrt(hs)`.
///
/// `qkv` packs q = `[..., 0..C]`, k = `[..., C..2C]`, v = `[..., 2C..3C]`; head `h` uses channels
/// `h * hs..(h + 1) * hs` of each, `hs = C / n_head`. The backward returns `d_qkv`.
///
/// # Shapes
/// `qkv`: (B, T, 3C) -> (B, T, C), ready for the output projection.
pub fn causal_self_attention(qkv: &Tensor, n_head: usize) -> Result<Tensor> {
    let (b, t, c3) = qkv.dims3()?;
    if n_head == 0 || c3 % (3 * n_head) != 0 {
        bail!("causal_self_attention: last dim {c3} is not 3 * n_head ({n_head}) * head size")
    }
    if !fast_path(&[qkv]) || b * t * c3 == 0 {
        return reference::causal_self_attention(qkv, n_head);
    }
    let op = AttentionOp {
        n_head,
        saved: Mutex::new(None),
    };
    qkv.contiguous()?.apply_op1(op)
}

/// What the forward keeps for the backward.
enum Saved {
    /// Softmax probabilities, (B, nh, T, T).
    Probs(Vec<f32>),
    /// Log-sum-exp of each row of scaled scores, (B, nh, T).
    Lse(Vec<f32>),
}

struct AttentionOp {
    n_head: usize,
    saved: Mutex<Option<Saved>>,
}

const NAME: &str = "muse-causal-attention";
/// Query rows per block: a block's scores only reach the keys up to its last row. 32 beat 16,
/// 64 and 128 on gpt_char (fwd+bwd 1.19-1.26 ms against 1.19-1.46 at one thread).
const BLOCK: usize = 32;
/// Largest probability tensor kept between forward and backward.
const MAX_SAVED_PROBS_BYTES: usize = 64 << 20;

/// The shapes of one call, and where one (batch, head) pair's operands start.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
    hs: usize,
}

impl Dims {
    fn new(l: &Layout, nh: usize) -> Self {
        let (d, c) = (l.dims(), l.dims()[2] / 3);
        Self {
            b: d[0],
            t: d[1],
            c,
            nh,
            hs: c / nh,
        }
    }

    /// Offset of pair `bh`'s q columns in the packed (B, T, 3C) rows (k at +C, v at +2C).
    fn qkv_base(&self, bh: usize) -> usize {
        (bh / self.nh) * self.t * 3 * self.c + (bh % self.nh) * self.hs
    }

    /// Offset of pair `bh`'s columns in a (B, T, C) tensor.
    fn out_base(&self, bh: usize) -> usize {
        (bh / self.nh) * self.t * self.c + (bh % self.nh) * self.hs
    }

    fn scale(&self) -> f32 {
        1.0 / (self.hs as f32).sqrt()
    }
}

/// Splits the B * nh (batch, head) pairs into one contiguous range per thread.
fn head_ranges(pairs: usize) -> Vec<Range<usize>> {
    let per = pairs.div_ceil(threads()).max(1);
    (0..pairs)
        .step_by(per)
        .map(|s| s..(s + per).min(pairs))
        .collect()
}

/// Row blocks `[i0, i1)` of a length-`t` sequence.
fn blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t)
        .step_by(BLOCK)
        .map(move |i0| (i0, (i0 + BLOCK).min(t)))
}

/// `p[i0..i1, ..i1] = scale * Q[i0..i1] K[..i1]^T` for the pair whose q starts at `base`.
fn scores(d: Dims, qkv: &[f32], base: usize, p: &mut [f32], (i0, i1): (usize, usize)) {
    let (t, c3) = (d.t, 3 * d.c);
    let q = Mat::view(qkv, base + i0 * c3, (i1 - i0, d.hs), c3, 1);
    let kt = Mat::view(qkv, base + d.c, (d.hs, i1), 1, c3);
    assert!(i0 * t + extent(i1 - i0, i1, t, 1) <= p.len());
    // SAFETY: the views are bounds-checked above and `p` is borrowed mutably, apart from qkv.
    unsafe {
        mm(
            (i1 - i0, i1, d.hs),
            (p.as_mut_ptr().add(i0 * t), t),
            q,
            kt,
            d.scale(),
        )
    }
}

/// In place: row[..len] = softmax(row[..len]), row[len..] = 0; returns the log-sum-exp.
#[inline(always)]
fn softmax_kernel<F: Fma>(row: &mut [f32], len: usize) -> f32 {
    let (live, masked) = row.split_at_mut(len);
    let m = max(live);
    live.iter_mut().for_each(|x| *x = exp::<F>(*x - m));
    let sum = sum_map(live, |x| x);
    let inv = 1.0 / sum;
    live.iter_mut().for_each(|x| *x *= inv);
    masked.fill(0.0);
    m + sum.ln()
}
simd_dispatch!(fn softmax_row(row: &mut [f32], len: usize) -> f32 = softmax_kernel);

/// In place: row[..len] = exp(row[..len] - lse), row[len..] = 0 (probabilities from saved
/// log-sum-exp).
#[inline(always)]
fn reprob_kernel<F: Fma>(row: &mut [f32], len: usize, lse: f32) {
    let (live, masked) = row.split_at_mut(len);
    live.iter_mut().for_each(|x| *x = exp::<F>(*x - lse));
    masked.fill(0.0);
}
simd_dispatch!(fn reprob_row(row: &mut [f32], len: usize, lse: f32) = reprob_kernel);

/// Forward for pairs `bhs`: their columns of `out`, this range's
/// log-sum-exps, and its probabilities when `probs` is given (else a scratch head is reused).
fn forward_heads(
    d: Dims,
    qkv: &[f32],
    out: Out,
    probs: Option<&mut [f32]>,
    lse: &mut [f32],
    bhs: Range<usize>,
) {
    let (t, tt, c3) = (d.t, d.t * d.t, 3 * d.c);
    let keep = probs.is_some();
    let mut scratch = if keep { Vec::new() } else { vec![0f32; tt] };
    let probs = probs.unwrap_or(&mut scratch[..]);
    for (n, bh) in bhs.enumerate() {
        let p = if keep {
            &mut probs[n * tt..(n + 1) * tt]
        } else {
            &mut probs[..]
        };
        let base = d.qkv_base(bh);
        for (i0, i1) in blocks(t) {
            scores(d, qkv, base, p, (i0, i1));
            for i in i0..i1 {
                lse[n * t + i] = softmax_row(&mut p[i * t..(i + 1) * t], i + 1);
            }
            // O[i0..i1] = P[i0..i1, ..i1] V[..i1], into this pair's columns of the output.
            let pm = Mat::view(p, i0 * t, (i1 - i0, i1), t, 1);
            let v = Mat::view(qkv, base + 2 * d.c, (i1, d.hs), c3, 1);
            let dst = out.block(d.out_base(bh) + i0 * d.c, i1 - i0, d.hs, d.c);
            // SAFETY: views and dst checked; pair bh alone writes its head's output columns.
            unsafe { mm((i1 - i0, d.hs, i1), (dst, d.c), pm, v, 1.0) }
        }
    }
}

/// Backward for pairs `bhs`: writes their dq, dk, dv columns of `dqkv`.
/// `saved` holds this range's probabilities, or its log-sum-exps to recompute them from.
fn backward_heads(
    d: Dims,
    qkv: &[f32],
    dout: &[f32],
    saved: (&[f32], bool),
    dqkv: Out,
    bhs: Range<usize>,
) {
    let (t, tt, c, c3, hs) = (d.t, d.t * d.t, d.c, 3 * d.c, d.hs);
    let (saved, is_probs) = saved;
    let mut ds = vec![0f32; tt]; // dP, then dS, of one head
    let mut recomputed = if is_probs { Vec::new() } else { vec![0f32; tt] };
    let at = |off: usize, rows: usize| dqkv.block(off, rows, hs, c3);
    for (n, bh) in bhs.enumerate() {
        let (base, obase) = (d.qkv_base(bh), d.out_base(bh));
        let p: &[f32] = if is_probs {
            &saved[n * tt..(n + 1) * tt]
        } else {
            for (i0, i1) in blocks(t) {
                scores(d, qkv, base, &mut recomputed, (i0, i1));
                for i in i0..i1 {
                    reprob_row(&mut recomputed[i * t..(i + 1) * t], i + 1, saved[n * t + i]);
                }
            }
            &recomputed
        };
        // SAFETY (every gemm below): operand views are bounds-checked by `Mat::view`, `ds` is
        // a local buffer, and dst blocks by `Out::block`; only pair bh writes its head's dq, dk, dv
        // columns, so concurrent tasks never write the same element.
        for (i0, i1) in blocks(t) {
            let rows = i1 - i0;
            // dP[i0..i1, ..i1] = dO[i0..i1] V[..i1]^T
            let dom = Mat::view(dout, obase + i0 * c, (rows, hs), c, 1);
            let vt = Mat::view(qkv, base + 2 * c, (hs, i1), 1, c3);
            assert!(i1 * t <= ds.len());
            // SAFETY: see above; the block lies inside `ds` (asserted).
            unsafe {
                mm(
                    (rows, i1, hs),
                    (ds.as_mut_ptr().add(i0 * t), t),
                    dom,
                    vt,
                    1.0,
                )
            }
            // dS = P * (dP - rowsum(P * dP))
            for i in i0..i1 {
                let (pr, dr) = (&p[i * t..i * t + i + 1], &mut ds[i * t..(i + 1) * t]);
                let dot = sum_map2(pr, dr, |a, b| a * b);
                for (d, &pv) in dr.iter_mut().zip(pr) {
                    *d = pv * (*d - dot);
                }
                dr[i + 1..].fill(0.0);
            }
            // dQ[i0..i1] = scale * dS[i0..i1, ..i1] K[..i1]
            let dsm = Mat::view(&ds, i0 * t, (rows, i1), t, 1);
            let k = Mat::view(qkv, base + c, (i1, hs), c3, 1);
            // SAFETY: see above.
            unsafe {
                mm(
                    (rows, hs, i1),
                    (at(base + i0 * c3, rows), c3),
                    dsm,
                    k,
                    d.scale(),
                )
            }
        }
        // Key/value rows j0..j1 only receive from query rows i >= j0.
        for (j0, j1) in blocks(t) {
            let (rows, span) = (j1 - j0, t - j0);
            // dV[j0..j1] = P[j0.., j0..j1]^T dO[j0..]
            let pt = Mat::view(p, j0 * t + j0, (rows, span), 1, t);
            let dom = Mat::view(dout, obase + j0 * c, (span, hs), c, 1);
            // SAFETY: see above.
            unsafe {
                mm(
                    (rows, hs, span),
                    (at(base + 2 * c + j0 * c3, rows), c3),
                    pt,
                    dom,
                    1.0,
                )
            }
            // dK[j0..j1] = scale * dS[j0.., j0..j1]^T Q[j0..]
            let ds_t = Mat::view(&ds, j0 * t + j0, (rows, span), 1, t);
            let q = Mat::view(qkv, base + j0 * c3, (span, hs), c3, 1);
            // SAFETY: see above.
            unsafe {
                mm(
                    (rows, hs, span),
                    (at(base + c + j0 * c3, rows), c3),
                    ds_t,
                    q,
                    d.scale(),
                )
            }
        }
    }
}

impl AttentionOp {
    /// Runs the forward over all pairs: the output and what to keep for the backward.
    fn forward(&self, d: Dims, qkv: &[f32], keep_probs: bool) -> (Vec<f32>, Saved) {
        let (tt, n_out) = (d.t * d.t, d.b * d.t * d.c);
        let mut out = Vec::with_capacity(n_out);
        let mut probs = vec![0f32; if keep_probs { d.b * d.nh * tt } else { 0 }];
        let mut lse = vec![0f32; d.b * d.nh * d.t];
        let ptr = Out::new(&mut out, n_out);
        let ranges = head_ranges(d.b * d.nh);
        let mut tasks = Vec::with_capacity(ranges.len());
        let (mut p_rest, mut l_rest) = (probs.as_mut_slice(), lse.as_mut_slice());
        for r in ranges {
            let p_len = if keep_probs { r.len() * tt } else { 0 };
            let (p, p_tail) = std::mem::take(&mut p_rest).split_at_mut(p_len);
            let (l, l_tail) = std::mem::take(&mut l_rest).split_at_mut(r.len() * d.t);
            (p_rest, l_rest) = (p_tail, l_tail);
            tasks.push((r, keep_probs.then_some(p), l));
        }
        run_tasks(tasks, |(r, p, l)| forward_heads(d, qkv, ptr, p, l, r));
        // SAFETY: the P V products wrote every row of every head's columns (no zeroing needed).
        unsafe { out.set_len(n_out) };
        let saved = if keep_probs {
            Saved::Probs(probs)
        } else {
            Saved::Lse(lse)
        };
        (out, saved)
    }
}

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(l, self.n_head);
        let keep_probs = d.b * d.nh * d.t * d.t * 4 <= MAX_SAVED_PROBS_BYTES;
        let (out, saved) = self.forward(d, f32_slice(s, l, NAME)?, keep_probs);
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        Ok((CpuStorage::F32(out), Shape::from((d.b, d.t, d.c))))
    }

    fn bwd(&self, qkv: &Tensor, _out: &Tensor, dout: &Tensor) -> Result<Option<Tensor>> {
        let dout = dout.contiguous()?;
        let (qr, dr) = (CpuRead::new(qkv, NAME)?, CpuRead::new(&dout, NAME)?);
        let (qs, dos) = (qr.slice(), dr.slice());
        let d = Dims::new(qkv.layout(), self.n_head);
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner()).take();
        // A second backward over the same graph recomputes what the first one consumed.
        let saved = match saved {
            Some(s) => s,
            None => self.forward(d, qs, false).1,
        };
        let (all, is_probs, per_pair) = match &saved {
            Saved::Probs(p) => (p.as_slice(), true, d.t * d.t),
            Saved::Lse(l) => (l.as_slice(), false, d.t),
        };
        let n = qs.len();
        let mut dqkv = Vec::with_capacity(n);
        let ptr = Out::new(&mut dqkv, n);
        run_tasks(head_ranges(d.b * d.nh), |r| {
            let mine = &all[r.start * per_pair..r.end * per_pair];
            backward_heads(d, qs, dos, (mine, is_probs), ptr, r)
        });
        // SAFETY: the dQ, dK and dV products wrote every row of every head's q, k, v columns.
        unsafe { dqkv.set_len(n) };
        Ok(Some(tensor(dqkv, qkv.shape())?))
    }
}
