//! The fused decoding kernels against the composed path they replace: attention of a few
//! queries over a KV cache (`nn::ops::decode_attention`), with grouped-query heads, strided
//! queries and cache views.

use candle_core::{Device, Tensor, Var};
use muse_core::nn::Dropout;
use muse_core::nn::attention::causal_attention;
use muse_core::nn::ops::decode_attention::{applies, decode_attention};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The composed path: the same call on tensors that track gradients, which the fused kernel
/// declines.
fn composed(q: &Tensor, k: &Tensor, v: &Tensor, nh: usize, nkv: usize) -> Tensor {
    let track = |t: &Tensor| Var::from_tensor(&t.contiguous().unwrap()).unwrap();
    let (q, k, v) = (track(q), track(k), track(v));
    assert!(!applies(q.as_tensor(), k.as_tensor(), v.as_tensor()));
    causal_attention(&q, &k, &v, nh, nkv, &mut Dropout::eval()).unwrap()
}

#[test]
fn decode_attention_matches_the_composed_path() {
    let (b, hs, cap) = (2, 16, 48);
    for (nh, nkv) in [(4, 4), (4, 2), (6, 1)] {
        // Single tokens, short continuations and whole prompts (tq == tk).
        for (tq, tk) in [
            (1, 1),
            (1, 7),
            (3, 3),
            (3, 40),
            (16, 45),
            (40, 40),
            (41, 48),
        ] {
            let seed = (nh * 100 + nkv * 10 + tq * 1000 + tk) as u64;
            // Queries as a narrow of a packed projection (row stride wider than the row).
            let packed = randn(&[b, tq, 3 * nh * hs], seed);
            let q = packed.narrow(2, nh * hs, nh * hs).unwrap();
            // Keys and values as the first tk positions of a larger cache buffer.
            let kbuf = randn(&[b, cap, nkv * hs], seed + 1);
            let vbuf = randn(&[b, cap, nkv * hs], seed + 2);
            let k = kbuf.narrow(1, 0, tk).unwrap();
            let v = vbuf.narrow(1, 0, tk).unwrap();
            assert!(applies(&q, &k, &v));
            let fused = decode_attention(&q, &k, &v, nh, nkv).unwrap();
            let want = composed(&q, &k, &v, nh, nkv);
            let d = max_abs_diff(&fused, &want);
            assert!(d < 2e-5, "heads {nh}/{nkv}, tq {tq}, tk {tk}: {d}");
            // The dispatching entry point takes the fused kernel and agrees too.
            let via = causal_attention(&q, &k, &v, nh, nkv, &mut Dropout::eval()).unwrap();
            assert!(max_abs_diff(&via, &want) < 2e-5);
        }
    }
}

#[test]
fn decode_attention_rejects_mismatched_shapes() {
    let q = randn(&[1, 1, 32], 1);
    let k = randn(&[1, 4, 16], 2);
    assert!(decode_attention(&q, &k, &k, 4, 2).is_ok());
    assert!(decode_attention(&q, &k, &k, 4, 3).is_err());
    assert!(decode_attention(&q, &k, &k, 4, 4).is_err());
    let short = randn(&[1, 1, 16], 3);
    let q2 = randn(&[1, 2, 32], 4);
    assert!(decode_attention(&q2, &short, &short, 4, 2).is_err());
}
