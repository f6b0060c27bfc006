//! Scaled dot-product attention with a causal mask, for any number of query positions after
//! an offset (prompt processing and cached decoding), grouped-query heads, and dropout on the
//! attention weights ("Attention Is All You Need", Vaswani et al. 2017).
//!
//! This is the general path, composed from tensor ops (its softmax and dropout are fused kernels
//! on the CPU); it runs on every device. Training without attention dropout uses the fused CPU
//! kernel [`super::ops::causal_self_attention`] instead.

use candle_core::{DType, Device, Result, Tensor};

use super::{Dropout, ops};

/// Causal attention of `q` over `k`, `v`, where query `i` sits at absolute position
/// `offset + i` and may see keys `0..=offset + i`.
///
/// # Shapes
/// `q`: (B, Tq, n_head * hs); `k`, `v`: (B, Tk, n_kv_head * hs) with `Tk = offset + Tq`
/// -> (B, Tq, n_head * hs).
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    n_head: usize,
    n_kv_head: usize,
    dropout: &mut Dropout,
) -> Result<Tensor> {
    if !dropout.is_active() && super::ops::decode_attention::applies(q, k, v) {
        // A few queries over a cache, no gradients: the fused CPU kernel.
        return super::ops::decode_attention::decode_attention(q, k, v, n_head, n_kv_head);
    }
    let (b, tq, c) = q.dims3()?;
    let tk = k.dim(1)?;
    let hs = c / n_head;
    let offset = tk - tq;
    let q = q
        .reshape((b, tq, n_head, hs))?
        .transpose(1, 2)?
        .contiguous()?; // (B, nh, Tq, hs)
    let k = repeat_kv(split_heads(k, n_kv_head)?, n_head / n_kv_head)?; // (B, nh, Tk, hs)
    let v = repeat_kv(split_heads(v, n_kv_head)?, n_head / n_kv_head)?; // (B, nh, Tk, hs)
    let scale = 1.0 / (hs as f64).sqrt();
    let scores = q.matmul(&k.t()?)?; // (B, nh, Tq, Tk)
    let mask = if tq > 1 {
        Some(causal_mask(
            tq,
            tk,
            offset,
            scores.dtype(),
            scores.device(),
        )?) // (Tq, Tk)
    } else {
        None
    };
    let att = ops::softmax_last_dim_scaled(&scores, scale, mask.as_ref())?;
    let att = dropout.apply(&att)?;
    let y = att.matmul(&v)?; // (B, nh, Tq, hs)
    y.transpose(1, 2)?.reshape((b, tq, c)) // (B, Tq, C)
}

/// (B, T, nh * hs) -> (B, nh, T, hs), contiguous.
fn split_heads(x: &Tensor, n: usize) -> Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    x.reshape((b, t, n, c / n))?.transpose(1, 2)?.contiguous()
}

/// Repeats each key/value head `n_rep` times for grouped-query attention.
///
/// # Shapes
/// (B, n_kv, T, hs) -> (B, n_kv * n_rep, T, hs).
fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, n_kv, t, hs) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, n_kv, n_rep, t, hs))?
        .reshape((b, n_kv * n_rep, t, hs))
}

/// Additive mask: 0 where query `i` (at `offset + i`) may see key `j`, -inf elsewhere.
///
/// # Shapes
/// -> (Tq, Tk).
pub fn causal_mask(
    tq: usize,
    tk: usize,
    offset: usize,
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let mask: Vec<f32> = (0..tq)
        .flat_map(|i| {
            (0..tk).map(move |j| {
                if j <= offset + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (tq, tk), dev)?.to_dtype(dtype)
}
