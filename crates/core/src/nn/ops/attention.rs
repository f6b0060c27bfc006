//! Causal multi-head self-attention on a packed q|k|v tensor (Vaswani et al. 2017, "Attention
//! Is All You Need"; the GPT-2 layout), fused forward and backward.
//!
//! Per (batch, head): `S = Q K^T / sqrt(hs)` with `gemm` reading q and k straight out of the
//! packed rows (no split, transpose or copy), a causal softmax in place, then `O = P V` written
//! into the head's columns of the output. The probabilities `P` are kept for the backward, which
//! is four more strided `gemm`s per head. Rows are processed in blocks so the masked upper
//! triangle beyond each block is never multiplied.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

use super::cpu::{CpuRead, SendPtr, f32_slice, run_tasks, tensor, threads};
use super::math::{Fma, exp, max, simd_dispatch, sum_map, sum_map2};
use super::matmul::{Mat, gemm};
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
        probs: Mutex::new(None),
    };
    qkv.contiguous()?.apply_op1(op)
}

struct AttentionOp {
    n_head: usize,
    /// Softmax probabilities (B, nh, T, T) saved by the forward for the backward.
    probs: Mutex<Option<Vec<f32>>>,
}

const NAME: &str = "muse-causal-attention";
/// Query rows per block: the block's scores only reach the keys up to its last row.
const BLOCK: usize = 32;

/// The shapes of one call.
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
        let d = l.dims();
        let c = d[2] / 3;
        Self {
            b: d[0],
            t: d[1],
            c,
            nh,
            hs: c / nh,
        }
    }
}

/// Splits the B * nh (batch, head) pairs into one contiguous range per thread.
fn head_ranges(pairs: usize) -> Vec<std::ops::Range<usize>> {
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

/// In place: row[..len] = softmax(row[..len]), row[len..] = 0.
#[inline(always)]
fn softmax_kernel<F: Fma>(row: &mut [f32], len: usize) {
    let (live, masked) = row.split_at_mut(len);
    let m = max(live);
    live.iter_mut().for_each(|x| *x = exp::<F>(*x - m));
    let inv = 1.0 / sum_map(live, |x| x);
    live.iter_mut().for_each(|x| *x *= inv);
    masked.fill(0.0);
}
simd_dispatch!(fn softmax_row(row: &mut [f32], len: usize) = softmax_kernel);

/// Forward for pairs `bhs`: writes `out` (through `out`'s pointer) and `probs` (this range's).
fn forward_heads(
    d: Dims,
    qkv: &[f32],
    out: SendPtr,
    probs: &mut [f32],
    bhs: std::ops::Range<usize>,
) {
    let Dims { t, c, nh, hs, .. } = d;
    let scale = 1.0 / (hs as f32).sqrt();
    let (rs, tt) = (3 * c as isize, t * t);
    for (bh, p) in bhs.zip(probs.chunks_exact_mut(tt)) {
        let (bi, h) = (bh / nh, bh % nh);
        let base = bi * t * 3 * c + h * hs;
        let (q, k, v) = (&qkv[base..], &qkv[base + c..], &qkv[base + 2 * c..]);
        for (i0, i1) in blocks(t) {
            // SAFETY: q, k, v rows lie inside `qkv` (base + (t-1) * 3C + 3C <= len), `p` rows
            // i0..i1 inside this pair's T*T chunk, and `out` rows of head h in batch bi belong to
            // this pair only. S_block = scale * Q[i0..i1] K[..i1]^T.
            unsafe {
                let qm = Mat {
                    ptr: q.as_ptr().add(i0 * 3 * c),
                    rs,
                    cs: 1,
                };
                let km = Mat {
                    ptr: k.as_ptr(),
                    rs: 1,
                    cs: rs,
                };
                gemm(
                    i1 - i0,
                    i1,
                    hs,
                    p.as_mut_ptr().add(i0 * t),
                    t as isize,
                    1,
                    false,
                    qm,
                    km,
                    scale,
                );
            }
            for i in i0..i1 {
                softmax_row(&mut p[i * t..(i + 1) * t], i + 1);
            }
            // SAFETY: as above; O[i0..i1] = P[i0..i1, ..i1] V[..i1] into head h's columns.
            unsafe {
                let pm = Mat {
                    ptr: p.as_ptr().add(i0 * t),
                    rs: t as isize,
                    cs: 1,
                };
                let vm = Mat {
                    ptr: v.as_ptr(),
                    rs,
                    cs: 1,
                };
                let dst = out.get().add((bi * t + i0) * c + h * hs);
                gemm(i1 - i0, hs, i1, dst, c as isize, 1, false, pm, vm, 1.0);
            }
        }
    }
}

impl AttentionOp {
    /// Runs the forward over all pairs, returning (out, probs).
    fn forward(&self, d: Dims, qkv: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let n_out = d.b * d.t * d.c;
        let mut out = Vec::with_capacity(n_out);
        let mut probs = vec![0f32; d.b * d.nh * d.t * d.t];
        let ptr = SendPtr(out.as_mut_ptr());
        let mut rest = probs.as_mut_slice();
        let mut tasks = Vec::new();
        for r in head_ranges(d.b * d.nh) {
            let (mine, tail) = rest.split_at_mut(r.len() * d.t * d.t);
            rest = tail;
            tasks.push((r, mine));
        }
        run_tasks(tasks, |(r, p)| forward_heads(d, qkv, ptr, p, r));
        // SAFETY: the P V products wrote every row of every head's columns (no zeroing needed).
        unsafe { out.set_len(n_out) };
        (out, probs)
    }
}

/// Backward for pairs `bhs`, writing dq, dk, dv of those heads into `dqkv`'s pointer.
fn backward_heads(
    d: Dims,
    qkv: &[f32],
    dout: &[f32],
    probs: &[f32],
    dqkv: SendPtr,
    bhs: std::ops::Range<usize>,
) {
    let Dims { t, c, nh, hs, .. } = d;
    let scale = 1.0 / (hs as f32).sqrt();
    let (rs, tt) = (3 * c as isize, t * t);
    let mut ds = vec![0f32; tt]; // dP, then dS, of one head
    for bh in bhs {
        let (bi, h) = (bh / nh, bh % nh);
        let base = bi * t * 3 * c + h * hs;
        let (q, k, v) = (&qkv[base..], &qkv[base + c..], &qkv[base + 2 * c..]);
        let dob = &dout[bi * t * c + h * hs..];
        let p = &probs[bh * tt..(bh + 1) * tt];
        // SAFETY (all gemms below): operands stay inside qkv / dout / p / ds as in the forward;
        // dqkv writes go to head h's dq, dk, dv columns of batch bi, owned by this pair alone.
        for (i0, i1) in blocks(t) {
            // dP[i0..i1, ..i1] = dO[i0..i1] V[..i1]^T
            unsafe {
                let dom = Mat {
                    ptr: dob.as_ptr().add(i0 * c),
                    rs: c as isize,
                    cs: 1,
                };
                let vt = Mat {
                    ptr: v.as_ptr(),
                    rs: 1,
                    cs: rs,
                };
                gemm(
                    i1 - i0,
                    i1,
                    hs,
                    ds.as_mut_ptr().add(i0 * t),
                    t as isize,
                    1,
                    false,
                    dom,
                    vt,
                    1.0,
                );
            }
            for i in i0..i1 {
                let (pr, dr) = (&p[i * t..i * t + i + 1], &mut ds[i * t..(i + 1) * t]);
                let dot = sum_map2(pr, dr, |a, b| a * b);
                for (d, &pv) in dr.iter_mut().zip(pr) {
                    *d = pv * (*d - dot);
                }
                dr[i + 1..].fill(0.0);
            }
            // dQ[i0..i1] = scale * dS[i0..i1, ..i1] K[..i1]
            unsafe {
                let dsm = Mat {
                    ptr: ds.as_ptr().add(i0 * t),
                    rs: t as isize,
                    cs: 1,
                };
                let km = Mat {
                    ptr: k.as_ptr(),
                    rs,
                    cs: 1,
                };
                let dst = dqkv.get().add(base + i0 * 3 * c);
                gemm(i1 - i0, hs, i1, dst, rs, 1, false, dsm, km, scale);
            }
        }
        // Key/value rows j0..j1 only receive from query rows i >= j0.
        for (j0, j1) in blocks(t) {
            let span = t - j0;
            unsafe {
                // dV[j0..j1] = P[j0.., j0..j1]^T dO[j0..]
                let pt = Mat {
                    ptr: p.as_ptr().add(j0 * t + j0),
                    rs: 1,
                    cs: t as isize,
                };
                let dom = Mat {
                    ptr: dob.as_ptr().add(j0 * c),
                    rs: c as isize,
                    cs: 1,
                };
                let dst = dqkv.get().add(base + 2 * c + j0 * 3 * c);
                gemm(j1 - j0, hs, span, dst, rs, 1, false, pt, dom, 1.0);
                // dK[j0..j1] = scale * dS[j0.., j0..j1]^T Q[j0..]
                let ds_t = Mat {
                    ptr: ds.as_ptr().add(j0 * t + j0),
                    rs: 1,
                    cs: t as isize,
                };
                let qm = Mat {
                    ptr: q.as_ptr().add(j0 * 3 * c),
                    rs,
                    cs: 1,
                };
                let dst = dqkv.get().add(base + c + j0 * 3 * c);
                gemm(j1 - j0, hs, span, dst, rs, 1, false, ds_t, qm, scale);
            }
        }
    }
}

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(l, self.n_head);
        let (out, probs) = self.forward(d, f32_slice(s, l, NAME)?);
        *self.probs.lock().unwrap_or_else(|e| e.into_inner()) = Some(probs);
        Ok((CpuStorage::F32(out), Shape::from((d.b, d.t, d.c))))
    }

    fn bwd(&self, qkv: &Tensor, _out: &Tensor, dout: &Tensor) -> Result<Option<Tensor>> {
        let dout = dout.contiguous()?;
        let (qr, dr) = (CpuRead::new(qkv, NAME)?, CpuRead::new(&dout, NAME)?);
        let d = Dims::new(qkv.layout(), self.n_head);
        let saved = self.probs.lock().unwrap_or_else(|e| e.into_inner()).take();
        // A second backward over the same graph recomputes what the first one consumed.
        let probs = match saved {
            Some(p) => p,
            None => self.forward(d, qr.slice()).1,
        };
        let n = qr.slice().len();
        let mut dqkv = Vec::with_capacity(n);
        let ptr = SendPtr(dqkv.as_mut_ptr());
        let (qs, ds) = (qr.slice(), dr.slice());
        run_tasks(head_ranges(d.b * d.nh), |r| {
            backward_heads(d, qs, ds, &probs, ptr, r)
        });
        // SAFETY: the dQ, dK and dV products wrote every row of every head's q, k, v columns.
        unsafe { dqkv.set_len(n) };
        Ok(Some(tensor(dqkv, qkv.shape())?))
    }
}
