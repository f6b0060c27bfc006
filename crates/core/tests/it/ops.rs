//! Fused CPU ops (`muse_core::nn::ops`) against the composed candle ops they replace: forward
//! values, and gradients of a random-weighted sum of the output with respect to every input via
//! `backward()`, over shapes that include T = 1, odd sizes and C not a multiple of 8. AdamW is
//! checked against a scalar implementation of its formula and against PyTorch.

use candle_core::{DType, Device, Result, Tensor, Var};
use muse_core::nn::dropout::Dropout;
use muse_core::nn::ops::{self, AdamWHyper, GeluKind, IGNORE_INDEX, WeightLayout, reference};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform values in [-scale, scale], seeded.
fn rand_vec(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn rand_tensor(dims: &[usize], scale: f32, seed: u64) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(rand_vec(n, scale, seed), dims, &Device::Cpu).unwrap()
}

/// Asserts `max |a - b| <= tol * max(1, max |b|)`.
fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
    let (worst, at) = a
        .iter()
        .zip(&b)
        .enumerate()
        .map(|(i, (x, y))| ((x - y).abs(), i))
        .fold(
            (0f32, 0),
            |m, x| if x.0 > m.0 || x.0.is_nan() { x } else { m },
        );
    assert!(
        worst <= tol * scale && !worst.is_nan(),
        "{what}: max diff {worst} at {at} ({} vs {}) > {tol} * {scale}",
        a[at],
        b[at]
    );
}

/// Runs `fused` and `reference` on the same variables and compares outputs and the gradients
/// of `sum(out * w)` (w random) with respect to every input. `fused_nodes` is how many graph
/// nodes the fused output may have (inputs + 1 for one custom op), proving the fast path ran.
fn check<F, R>(
    name: &str,
    inputs: &[Tensor],
    tol: f32,
    fused_nodes: Option<usize>,
    fused: F,
    reference: R,
) where
    F: Fn(&[Tensor]) -> Result<Tensor>,
    R: Fn(&[Tensor]) -> Result<Tensor>,
{
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let (yf, yr) = (fused(&ts).unwrap(), reference(&ts).unwrap());
    if let Some(n) = fused_nodes {
        assert!(
            yf.sorted_nodes().len() <= n,
            "{name}: fused graph has {} nodes",
            yf.sorted_nodes().len()
        );
    }
    assert_close(&yf, &yr, tol, &format!("{name} forward"));
    let w = rand_tensor(yr.dims(), 1.0, 99);
    let gf = (&yf * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (&yr * &w).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, v) in vars.iter().enumerate() {
        let (a, b) = (gf.get(v), gr.get(v));
        let (a, b) = (
            a.unwrap_or_else(|| panic!("{name}: no fused grad for input {i}")),
            b.unwrap(),
        );
        assert_close(a, b, tol, &format!("{name} grad of input {i}"));
    }
}

#[test]
fn layer_norm_matches_composed_ops() {
    for (i, dims) in [
        &[2, 3, 5][..],
        &[4, 128],
        &[1, 1, 7],
        &[3, 33],
        &[12, 64, 128],
        &[2, 768],
    ]
    .iter()
    .enumerate()
    {
        let c = *dims.last().unwrap();
        let seed = 10 * i as u64;
        let x = rand_tensor(dims, 2.0, seed).affine(1.0, 0.5).unwrap();
        let (w, b) = (
            rand_tensor(&[c], 1.0, seed + 1),
            rand_tensor(&[c], 1.0, seed + 2),
        );
        let name = format!("layer_norm {dims:?}");
        check(
            &name,
            &[x.clone(), w.clone(), b],
            2e-5,
            Some(4),
            |t| ops::layer_norm(&t[0], &t[1], Some(&t[2]), 1e-5),
            |t| reference::layer_norm(&t[0], &t[1], Some(&t[2]), 1e-5),
        );
        check(
            &format!("{name} no bias"),
            &[x, w],
            2e-5,
            Some(3),
            |t| ops::layer_norm(&t[0], &t[1], None, 1e-5),
            |t| reference::layer_norm(&t[0], &t[1], None, 1e-5),
        );
    }
    // A non-contiguous input takes the fast path after a copy.
    let x = rand_tensor(&[9, 6], 1.0, 5);
    let w = rand_tensor(&[9], 1.0, 6);
    check(
        "layer_norm transposed",
        &[x, w],
        2e-5,
        None,
        |t| ops::layer_norm(&t[0].t()?, &t[1], None, 1e-5),
        |t| reference::layer_norm(&t[0].t()?, &t[1], None, 1e-5),
    );
}

#[test]
fn rms_norm_matches_composed_ops() {
    for (i, dims) in [
        &[2, 3, 5][..],
        &[4, 128],
        &[1, 1, 7],
        &[3, 33],
        &[12, 64, 128],
    ]
    .iter()
    .enumerate()
    {
        let c = *dims.last().unwrap();
        let x = rand_tensor(dims, 2.0, 20 + i as u64);
        let w = rand_tensor(&[c], 1.0, 30 + i as u64);
        check(
            &format!("rms_norm {dims:?}"),
            &[x, w],
            2e-5,
            Some(3),
            |t| ops::rms_norm(&t[0], &t[1], 1e-6),
            |t| reference::rms_norm(&t[0], &t[1], 1e-6),
        );
    }
}

#[test]
fn causal_self_attention_matches_composed_ops() {
    // (B, T, C, n_head): T = 1, head size 1, odd sizes, T over one 64-row block, gpt_char.
    for (i, &(b, t, c, nh)) in [
        (1, 1, 8, 2),
        (2, 5, 12, 3),
        (2, 7, 6, 6),
        (1, 3, 3, 1),
        (2, 130, 16, 2),
        (3, 64, 128, 4),
    ]
    .iter()
    .enumerate()
    {
        let qkv = rand_tensor(&[b, t, 3 * c], 1.5, 40 + i as u64);
        check(
            &format!("attention {:?}", (b, t, c, nh)),
            &[qkv],
            2e-5,
            Some(2),
            |x| ops::causal_self_attention(&x[0], nh),
            |x| reference::causal_self_attention(&x[0], nh),
        );
    }
}

/// A second backward over the same graph finds the saved probabilities consumed and takes the
/// path that large inputs always take: recompute them from the saved log-sum-exp.
#[test]
fn causal_self_attention_recomputes_probabilities() {
    let qkv = Var::from_tensor(&rand_tensor(&[2, 70, 48], 1.5, 7)).unwrap();
    let w = rand_tensor(&[2, 70, 16], 1.0, 8);
    let loss = |y: Tensor| (y * &w).unwrap().sum_all().unwrap();
    let fused = loss(ops::causal_self_attention(&qkv, 2).unwrap());
    let want = loss(reference::causal_self_attention(&qkv, 2).unwrap())
        .backward()
        .unwrap();
    let want = want.get(&qkv).unwrap();
    for pass in ["saved probabilities", "recomputed probabilities"] {
        let got = fused.backward().unwrap();
        assert_close(
            got.get(&qkv).unwrap(),
            want,
            2e-5,
            &format!("attention grad, {pass}"),
        );
    }
}

#[test]
fn linear_matches_composed_ops() {
    // (leading dims, in, out)
    for (i, (lead, k, n)) in [
        (vec![1], 1, 1),
        (vec![5], 7, 3),
        (vec![33], 17, 65),
        (vec![64], 128, 384),
        (vec![2, 3], 9, 10),
        (vec![1], 96, 300),
        // One row, (in, out): row bands, the last one short and not a multiple of 4.
        (vec![1], 35, 64),
        (vec![1], 41, 5000),
    ]
    .into_iter()
    .enumerate()
    {
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let seed = 50 + 10 * i as u64;
            let x = rand_tensor(&[lead.clone(), vec![k]].concat(), 1.0, seed);
            let w_dims = if layout == WeightLayout::InOut {
                [k, n]
            } else {
                [n, k]
            };
            let (w, b) = (
                rand_tensor(&w_dims, 0.5, seed + 1),
                rand_tensor(&[n], 0.5, seed + 2),
            );
            let name = format!("linear {lead:?} {k}->{n} {layout:?}");
            check(
                &name,
                &[x.clone(), w.clone(), b],
                2e-5,
                Some(4),
                |t| ops::linear(&t[0], &t[1], Some(&t[2]), layout),
                |t| reference::linear(&t[0], &t[1], Some(&t[2]), layout),
            );
            check(
                &format!("{name} no bias"),
                &[x, w],
                2e-5,
                Some(3),
                |t| ops::linear(&t[0], &t[1], None, layout),
                |t| reference::linear(&t[0], &t[1], None, layout),
            );
        }
    }
}

#[test]
fn gelu_matches_composed_ops() {
    for (i, dims) in [&[1][..], &[7, 13], &[3, 1000], &[768, 512]]
        .iter()
        .enumerate()
    {
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            let x = rand_tensor(dims, 6.0, 70 + i as u64);
            check(
                &format!("gelu {kind:?} {dims:?}"),
                &[x],
                1e-5,
                Some(2),
                |t| ops::gelu(&t[0], kind),
                |t| reference::gelu(&t[0], kind),
            );
        }
    }
}

#[test]
fn dropout_matches_composed_ops() {
    // Sizes around whole 64-element mask words, and one large enough to split across threads.
    for (i, dims) in [&[1][..], &[7, 13], &[2, 64], &[3, 1000], &[768, 512]]
        .iter()
        .enumerate()
    {
        let x = rand_tensor(dims, 3.0, 110 + i as u64);
        let mask = Dropout::train(0.3, 120 + i as u64)
            .draw_mask(x.elem_count())
            .unwrap();
        check(
            &format!("dropout {dims:?}"),
            &[x],
            0.0,
            Some(2),
            |t| ops::dropout(&t[0], mask.clone()),
            |t| reference::dropout(&t[0], &mask),
        );
    }
    let x = rand_tensor(&[5, 7], 1.0, 1);
    let short = Dropout::train(0.5, 2).draw_mask(34).unwrap();
    let err = ops::dropout(&x, short).unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
}

#[test]
fn softmax_matches_composed_ops() {
    for (i, dims) in [
        &[1][..],
        &[7, 13],
        &[3, 1000],
        &[2, 4, 49, 49],
        &[64, 4, 20, 23],
    ]
    .iter()
    .enumerate()
    {
        let x = rand_tensor(dims, 6.0, 130 + i as u64);
        check(
            &format!("softmax {dims:?}"),
            &[x],
            1e-5,
            Some(2),
            |t| ops::softmax_last_dim(&t[0]),
            |t| reference::softmax_last_dim(&t[0]),
        );
    }
    // Masked entries, as attention's additive masks make them: exactly 0 out, no gradient.
    let mut v = rand_vec(3 * 9, 2.0, 140);
    for (i, x) in v.iter_mut().enumerate() {
        if i % 9 > 5 {
            *x = if i % 2 == 0 { f32::NEG_INFINITY } else { -1e9 };
        }
    }
    let x = Tensor::from_vec(v, (3, 9), &Device::Cpu).unwrap();
    check(
        "softmax masked",
        std::slice::from_ref(&x),
        1e-5,
        Some(2),
        |t| ops::softmax_last_dim(&t[0]),
        |t| reference::softmax_last_dim(&t[0]),
    );
    let y = ops::softmax_last_dim(&x).unwrap().to_vec2::<f32>().unwrap();
    assert!(y.iter().all(|r| r[6..].iter().all(|&p| p == 0.0)), "{y:?}");
}

/// The attention weights `softmax(scale * x + bias)` with every bias shape the attention layers
/// pass: a key-padding mask (B, 1, 1, N), a causal mask (Tq, N), a full (B, nh, Tq, N) one and
/// none; masked entries come out exactly 0 and no gradient reaches the bias.
#[test]
fn scaled_softmax_matches_composed_ops() {
    let (b, nh, tq, n) = (3, 2, 5, 7);
    let masked = |dims: &[usize], seed: u64| {
        let mut v = rand_vec(dims.iter().product(), 1.0, seed);
        // Mask every third entry of each row but its first (no row is fully masked).
        for (i, x) in v.iter_mut().enumerate() {
            if i % n % 3 == 2 {
                *x = if i % 2 == 0 { f32::NEG_INFINITY } else { -1e9 };
            }
        }
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    };
    let biases = [
        None,
        Some(masked(&[b, 1, 1, n], 151)),
        Some(masked(&[tq, n], 152)),
        Some(masked(&[b, nh, tq, n], 153)),
    ];
    for (i, bias) in biases.iter().enumerate() {
        let x = rand_tensor(&[b, nh, tq, n], 3.0, 150);
        let scale = 0.125 * (i + 1) as f64;
        check(
            &format!(
                "scaled softmax, bias {:?}",
                bias.as_ref().map(|t| t.dims().to_vec())
            ),
            std::slice::from_ref(&x),
            1e-5,
            Some(2),
            |t| ops::softmax_last_dim_scaled(&t[0], scale, bias.as_ref()),
            |t| reference::softmax_last_dim_scaled(&t[0], scale, bias.as_ref()),
        );
        if let Some(bias) = bias {
            let y = ops::softmax_last_dim_scaled(&x, scale, Some(bias)).unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = flat(&bias.broadcast_as(y.shape()).unwrap().contiguous().unwrap());
            let leaked = flat(&y).iter().zip(&b).any(|(&y, &b)| b < -1e8 && y != 0.0);
            assert!(!leaked, "masked weights must be exactly 0");
        }
    }
}

#[test]
fn swiglu_matches_composed_ops() {
    for (i, dims) in [&[1][..], &[7, 13], &[3, 1000], &[512, 1536]]
        .iter()
        .enumerate()
    {
        let gate = rand_tensor(dims, 8.0, 90 + i as u64);
        let up = rand_tensor(dims, 2.0, 95 + i as u64);
        check(
            &format!("swiglu {dims:?}"),
            &[gate, up],
            1e-5,
            Some(3),
            |t| ops::swiglu(&t[0], &t[1]),
            |t| reference::swiglu(&t[0], &t[1]),
        );
    }
}

#[test]
fn cross_entropy_matches_composed_ops() {
    for (i, &(n, v, every)) in [
        (1, 1, 0),
        (5, 7, 2),
        (64, 65, 5),
        (3, 3, 1),
        (768, 65, 0),
        (4, 1000, 3),
    ]
    .iter()
    .enumerate()
    {
        let logits = rand_tensor(&[n, v], 4.0, 80 + i as u64);
        // Every `every`-th target ignored (all when 1, none when 0).
        let targets: Vec<u32> = (0..n)
            .map(|r| {
                if every > 0 && r % every == 0 {
                    IGNORE_INDEX
                } else {
                    ((r * 7 + 3) % v) as u32
                }
            })
            .collect();
        let targets = Tensor::new(targets, &Device::Cpu).unwrap();
        check(
            &format!("cross_entropy ({n}, {v}) ignore every {every}"),
            &[logits],
            1e-5,
            Some(2),
            |t| ops::cross_entropy(&t[0], &targets),
            |t| reference::cross_entropy(&t[0], &targets),
        );
    }
    let all_ignored = Tensor::new(&[IGNORE_INDEX; 3], &Device::Cpu).unwrap();
    let loss = ops::cross_entropy(&rand_tensor(&[3, 4], 1.0, 1), &all_ignored).unwrap();
    assert_eq!(loss.to_scalar::<f32>().unwrap(), 0.0);
    let bad = Tensor::new(&[4u32], &Device::Cpu).unwrap();
    assert!(
        ops::cross_entropy(&rand_tensor(&[1, 4], 1.0, 1), &bad).is_err(),
        "target out of range"
    );
}

/// Non-F32 dtypes take the composed path and agree with the F32 kernels.
#[test]
fn f64_inputs_use_the_composed_path() {
    let x = rand_tensor(&[3, 10], 1.0, 3);
    let w = rand_tensor(&[10], 1.0, 4);
    let y32 = ops::layer_norm(&x, &w, None, 1e-5).unwrap();
    let y64 = ops::layer_norm(
        &x.to_dtype(DType::F64).unwrap(),
        &w.to_dtype(DType::F64).unwrap(),
        None,
        1e-5,
    )
    .unwrap();
    assert_eq!(y64.dtype(), DType::F64);
    assert_close(
        &y64.to_dtype(DType::F32).unwrap(),
        &y32,
        1e-5,
        "layer_norm f64",
    );
}

/// Plain-f64 AdamW, the formula of `adamw_update`'s docs.
fn adamw_scalar(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], h: &AdamWHyper) {
    let t = h.step as i32;
    for i in 0..p.len() {
        p[i] *= 1.0 - h.lr * h.weight_decay;
        m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g[i];
        v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g[i] * g[i];
        let denom = v[i].sqrt() / (1.0 - h.beta2.powi(t)).sqrt() + h.eps;
        p[i] -= h.lr / (1.0 - h.beta1.powi(t)) * m[i] / denom;
    }
}

#[test]
fn adamw_update_matches_the_formula() {
    for n in [1usize, 7, 300, 70_001] {
        let p0 = rand_vec(n, 1.0, 90);
        let (p, m, v) = (
            Var::from_slice(&p0, n, &Device::Cpu).unwrap(),
            Var::zeros(n, DType::F32, &Device::Cpu).unwrap(),
            Var::zeros(n, DType::F32, &Device::Cpu).unwrap(),
        );
        let (pr, mr, vr) = (
            Var::from_slice(&p0, n, &Device::Cpu).unwrap(),
            Var::zeros(n, DType::F32, &Device::Cpu).unwrap(),
            Var::zeros(n, DType::F32, &Device::Cpu).unwrap(),
        );
        let mut ps: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
        let (mut ms, mut vs) = (vec![0f64; n], vec![0f64; n]);
        for step in 1..=3u64 {
            let g = rand_vec(n, 0.1, 91 + step);
            let h = AdamWHyper {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.1,
                step,
            };
            let gt = Tensor::from_slice(&g, n, &Device::Cpu).unwrap();
            ops::adamw_update(&p, &gt, &m, &v, &h).unwrap();
            reference::adamw_update(&pr, &gt, &mr, &vr, &h).unwrap();
            let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
            adamw_scalar(&mut ps, &g64, &mut ms, &mut vs, &h);
        }
        let expect = |xs: &[f64]| {
            Tensor::from_vec(
                xs.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                n,
                &Device::Cpu,
            )
            .unwrap()
        };
        for (name, fused, composed, want) in [
            ("p", &p, &pr, &ps),
            ("m", &m, &mr, &ms),
            ("v", &v, &vr, &vs),
        ] {
            assert_close(
                fused.as_tensor(),
                &expect(want),
                1e-6,
                &format!("adamw {name} (n = {n}) vs formula"),
            );
            assert_close(
                composed.as_tensor(),
                &expect(want),
                1e-6,
                &format!("reference adamw {name} (n = {n}) vs formula"),
            );
        }
    }
}

/// Three steps of `torch.optim.AdamW` recorded by `scripts/fixtures/ops_adamw.py`.
#[test]
fn adamw_update_matches_pytorch() {
    let text = std::fs::read_to_string(crate::common::fixture("ops_adamw.json")).unwrap();
    let fx: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vecf = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let f = |k: &str| fx[k].as_f64().unwrap();
    let p0 = vecf(&fx["param"]);
    let n = p0.len();
    let p = Var::from_slice(&p0, n, &Device::Cpu).unwrap();
    let (m, v) = (
        Var::zeros(n, DType::F32, &Device::Cpu).unwrap(),
        Var::zeros(n, DType::F32, &Device::Cpu).unwrap(),
    );
    for (i, step) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let g = Tensor::from_vec(vecf(&step["grad"]), n, &Device::Cpu).unwrap();
        let h = AdamWHyper {
            lr: f("lr"),
            beta1: f("beta1"),
            beta2: f("beta2"),
            eps: f("eps"),
            weight_decay: f("weight_decay"),
            step: i as u64 + 1,
        };
        ops::adamw_update(&p, &g, &m, &v, &h).unwrap();
        let want = Tensor::from_vec(vecf(&step["param"]), n, &Device::Cpu).unwrap();
        assert_close(
            p.as_tensor(),
            &want,
            1e-6,
            &format!("adamw vs torch, step {}", i + 1),
        );
    }
}
