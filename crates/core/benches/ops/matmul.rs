//! Matmul speed at the shapes the fused ops multiply: the `gemm` crate called directly
//! (single-threaded and split across rayon's threads) against candle's `matmul` (which calls the
//! same crate, plus an allocation and its own dispatch).

use std::time::Duration;

use candle_core::{Device, Tensor};
use gemm::Parallelism;
use muse_core::nn::ops::{self, WeightLayout};
use rayon::prelude::*;

use crate::harness::{median_ms, ms, wall_median_ms};

/// `dst (m x n, row-major) = lhs (m x k) @ rhs (k x n)` with explicit operand strides.
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    lhs: (&[f32], isize, isize),
    rhs: (&[f32], isize, isize),
    par: Parallelism,
) {
    assert!(dst.len() >= m * n);
    // SAFETY: the callers pass operands that cover their strided extents (dense buffers of
    // exactly m*k and k*n elements, or the packed attention rows checked below).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.0.as_ptr(),
            lhs.2,
            lhs.1,
            rhs.0.as_ptr(),
            rhs.2,
            rhs.1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

fn rand_vec(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 2654435761) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

pub fn run(budget: Duration) {
    let threads = rayon::current_num_threads();
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    println!(
        "\n## matmul (ms; GFLOP/s in brackets); lhsT/rhsT = operand stored transposed, read through strides"
    );
    println!(
        "# The fused ops call gemm directly (no allocation; strided views of packed q|k|v and of"
    );
    println!(
        "# either weight layout), split in row/column blocks across the pool; one row uses muse's GEMV."
    );
    println!(
        "{:<30} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16}",
        "shape",
        "gemm 1 thread",
        "gemm rayon",
        "gemm lhsT",
        "gemm rhsT",
        "candle matmul",
        "muse linear"
    );
    let shapes = [
        (768, 128, 384, "gpt_char qkv fwd"),
        (768, 512, 128, "gpt_char mlp proj fwd"),
        (768, 128, 512, "gpt_char fc fwd"),
        (768, 384, 128, "gpt_char qkv dx"),
        (128, 768, 384, "gpt_char qkv dW"),
        (768, 128, 65, "gpt_char lm_head"),
        (1, 768, 2304, "gpt2 decode qkv"),
        (1, 768, 50257, "gpt2 decode lm_head"),
    ];
    for (m, k, n, name) in shapes {
        let (a, b) = (rand_vec(m * k), rand_vec(k * n));
        let mut c = vec![0f32; m * n];
        let gf = |t: f64| 2.0 * (m * n * k) as f64 / t / 1e6;
        let mut time = |lhs: (isize, isize), rhs: (isize, isize), p: Parallelism| {
            median_ms(
                || gemm_into(&mut c, m, n, k, (&a, lhs.0, lhs.1), (&b, rhs.0, rhs.1), p),
                300,
                budget,
            )
        };
        let (ki, ni, mi) = (k as isize, n as isize, m as isize);
        let t_one = time((ki, 1), (ni, 1), Parallelism::None);
        let t_par = time((ki, 1), (ni, 1), par);
        let t_lt = time((1, mi), (ni, 1), par);
        let t_rt = time((ki, 1), (1, ki), par);
        let ta = Tensor::from_vec(a.clone(), (m, k), &Device::Cpu).unwrap();
        let tb = Tensor::from_vec(b.clone(), (k, n), &Device::Cpu).unwrap();
        let t_candle = median_ms(|| drop(ta.matmul(&tb).unwrap()), 300, budget);
        let t_muse = median_ms(
            || drop(ops::linear(&ta, &tb, None, WeightLayout::InOut).unwrap()),
            300,
            budget,
        );
        let cell = |t: f64| format!("{} ({:.0})", ms(t), gf(t));
        println!(
            "{:<30} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16}",
            format!("{name} {m}x{k}@{k}x{n}"),
            cell(t_one),
            cell(t_par),
            cell(t_lt),
            cell(t_rt),
            cell(t_candle),
            cell(t_muse)
        );
    }
    attention_scores(budget);
    decode(budget);
}

/// One-row products (GPT-2 decoding) through `ops::linear`, which uses its own GEMV kernels.
fn decode(budget: Duration) {
    for (k, n, layout) in [
        (768, 2304, WeightLayout::InOut),
        (768, 50257, WeightLayout::OutIn),
        (768, 50257, WeightLayout::InOut),
    ] {
        let x = Tensor::from_vec(rand_vec(k), (1, k), &Device::Cpu).unwrap();
        let dims = if layout == WeightLayout::InOut {
            (k, n)
        } else {
            (n, k)
        };
        let w = Tensor::from_vec(rand_vec(k * n), dims, &Device::Cpu).unwrap();
        let t = median_ms(
            || drop(ops::linear(&x, &w, None, layout).unwrap()),
            300,
            budget,
        );
        let gbs = (k * n * 4) as f64 / t / 1e6;
        println!(
            "muse linear 1x{k} @ {layout:?} {dims:?}: {} ms ({:.1} GFLOP/s, {gbs:.1} GB/s of weights)",
            ms(t),
            2.0 * (k * n) as f64 / t / 1e6
        );
    }
}

/// 12 x 4 heads of S = Q K^T (64x32 @ 32x64) read from packed (B, T, 3C) rows.
fn attention_scores(budget: Duration) {
    let (b, t, c, nh) = (12usize, 64usize, 128usize, 4usize);
    let hs = c / nh;
    let qkv = rand_vec(b * t * 3 * c);
    let mut s = vec![0f32; b * nh * t * t];
    let one_head = |bh: usize, dst: &mut [f32]| {
        let base = (bh / nh) * t * 3 * c + (bh % nh) * hs;
        let (q, k) = (&qkv[base..], &qkv[base + c..]);
        // q rows: stride 3C; k read transposed (rs 1, cs 3C). Both stay inside `qkv`.
        gemm_into(
            dst,
            t,
            t,
            hs,
            (q, 3 * c as isize, 1),
            (k, 1, 3 * c as isize),
            Parallelism::None,
        );
    };
    let seq = median_ms(
        || {
            s.chunks_mut(t * t)
                .enumerate()
                .for_each(|(bh, d)| one_head(bh, d))
        },
        300,
        budget,
    );
    let par = wall_median_ms(
        || {
            s.par_chunks_mut(t * t)
                .enumerate()
                .for_each(|(bh, d)| one_head(bh, d))
        },
        300,
        budget,
    );
    let tq = Tensor::from_vec(qkv.clone(), (b, t, 3 * c), &Device::Cpu).unwrap();
    let heads = |i: usize| {
        tq.narrow(2, i * c, c)
            .unwrap()
            .reshape((b, t, nh, hs))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let (q4, kt) = (heads(0), heads(1).t().unwrap().contiguous().unwrap());
    let candle = median_ms(|| drop(q4.matmul(&kt).unwrap()), 300, budget);
    println!(
        "attention S=QK^T 48 x (64x32@32x64): gemm per head {} | heads over rayon (wall) {} | candle batched (pre-split q, k^T) {}",
        ms(seq),
        ms(par),
        ms(candle)
    );
}
