//! The fused convolution kernels (`nn::ops::conv2d`, `conv_transpose2d`) against candle's own
//! convolutions: forward values and the gradients of a random-weighted sum of the output with
//! respect to input, weight and bias, over odd sizes, stride 1, 2 and 3, padding 0 and 1, with and
//! without bias, and for conv2d with a bias per sample and channel (3x3 with stride 1 and
//! padding 1 takes conv2d's Winograd path); and both gradients against finite differences, also for shapes where candle's
//! own conv2d backward fails (stride 2 with height and width of different parity: candle 0.11
//! derives the output padding of the input gradient from the height alone and errors with a
//! shape mismatch).

use candle_core::{Device, Tensor, Var};
use muse_core::nn::ops::conv::{reference_conv_transpose2d, reference_conv2d};
use muse_core::nn::ops::{FrozenWeights, conv_transpose2d, conv2d};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_tensor(dims: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max diff {worst} > {tol} * {scale}"
    );
}

/// (N, C, H, W, O, k, stride, padding)
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

const CASES: &[Case] = &[
    (2, 3, 7, 5, 4, 3, 1, 1),
    (3, 2, 9, 7, 5, 4, 2, 1),
    (1, 1, 28, 28, 6, 4, 2, 1),
    (2, 5, 6, 8, 3, 2, 2, 0),
    (2, 4, 5, 5, 2, 1, 1, 0),
    (1, 3, 3, 4, 2, 3, 1, 0),
    (4, 6, 7, 7, 8, 4, 2, 1),
    (2, 3, 11, 7, 4, 5, 2, 1),
    (2, 3, 10, 10, 4, 3, 3, 1),
    // 3x3, stride 1, padding 1: conv2d's Winograd path (forward and both gradients), even and
    // odd sizes, a 1x1 image, rows of more than 8 tiles, batches cut into several chunks and
    // runs of chunks, more channels than pixels, and samples larger than a chunk's budget.
    (3, 16, 14, 14, 8, 3, 1, 1),
    (2, 8, 7, 7, 16, 3, 1, 1),
    (1, 2, 1, 1, 3, 3, 1, 1),
    (2, 5, 2, 3, 3, 3, 1, 1),
    (9, 4, 6, 9, 6, 3, 1, 1),
    (2, 3, 9, 35, 4, 3, 1, 1),
    (33, 4, 5, 5, 3, 3, 1, 1),
    (5, 40, 3, 2, 36, 3, 1, 1),
    (2, 24, 27, 19, 40, 3, 1, 1),
];

/// Compares output and gradients (of input, weight and bias when given) of `fused` and
/// `reference` on the same variables.
fn compare<F, R>(name: &str, inputs: Vec<Tensor>, fused: F, reference: R)
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
    R: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let (yf, yr) = (fused(&ts).unwrap(), reference(&ts).unwrap());
    // One custom op over the inputs: the fused path ran.
    assert_eq!(
        yf.sorted_nodes().len(),
        ts.len() + 1,
        "{name}: fused path not taken"
    );
    assert_close(&yf, &yr, 1e-5, &format!("{name} forward"));
    let w = rand_tensor(yr.dims(), 99);
    let gf = (&yf * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (&yr * &w).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, v) in vars.iter().enumerate() {
        let a = gf
            .get(v)
            .unwrap_or_else(|| panic!("{name}: no fused grad for input {i}"));
        assert_close(
            a,
            gr.get(v).unwrap(),
            1e-5,
            &format!("{name} grad of input {i}"),
        );
    }
}

#[test]
fn conv2d_matches_candle() {
    for (i, &(n, c, h, w, o, k, s, p)) in CASES.iter().enumerate() {
        let seed = 10 * i as u64;
        let x = rand_tensor(&[n, c, h, w], seed);
        let wt = rand_tensor(&[o, c, k, k], seed + 1);
        let b = rand_tensor(&[o], seed + 2);
        let name = format!("conv2d {:?}", CASES[i]);
        compare(
            &name,
            vec![x.clone(), wt.clone(), b],
            |t| conv2d(&t[0], &t[1], Some(&t[2]), s, p),
            |t| reference_conv2d(&t[0], &t[1], Some(&t[2]), s, p),
        );
        compare(
            &format!("{name} no bias"),
            vec![x.clone(), wt.clone()],
            |t| conv2d(&t[0], &t[1], None, s, p),
            |t| reference_conv2d(&t[0], &t[1], None, s, p),
        );
        // A bias per sample and channel (N, O), as a U-Net's time embedding passes.
        compare(
            &format!("{name} bias per sample"),
            vec![x, wt, rand_tensor(&[n, o], seed + 3)],
            |t| conv2d(&t[0], &t[1], Some(&t[2]), s, p),
            |t| reference_conv2d(&t[0], &t[1], Some(&t[2]), s, p),
        );
    }
}

#[test]
fn conv_transpose2d_matches_candle() {
    for (i, &(n, c, h, w, o, k, s, p)) in CASES.iter().enumerate() {
        // output_padding 1 where the stride allows, so odd output sizes come up.
        for op in 0..s {
            let seed = 100 + 10 * i as u64;
            let x = rand_tensor(&[n, c, h, w], seed);
            let wt = rand_tensor(&[c, o, k, k], seed + 1);
            let b = rand_tensor(&[o], seed + 2);
            if (h - 1) * s + k + op <= 2 * p {
                continue;
            }
            let name = format!("conv_transpose2d {:?} output_padding {op}", CASES[i]);
            compare(
                &name,
                vec![x.clone(), wt.clone(), b],
                |t| conv_transpose2d(&t[0], &t[1], Some(&t[2]), s, p, op),
                |t| reference_conv_transpose2d(&t[0], &t[1], Some(&t[2]), s, p, op),
            );
            compare(
                &format!("{name} no bias"),
                vec![x, wt],
                |t| conv_transpose2d(&t[0], &t[1], None, s, p, op),
                |t| reference_conv_transpose2d(&t[0], &t[1], None, s, p, op),
            );
        }
    }
}

/// Central differences of `sum(f(x) * r)` in a few coordinates of x and of w, in f64 on the
/// same f32 kernels (a tolerance of 1e-2 relative covers the f32 rounding).
/// A `FrozenWeights` scope keeps each weight's Winograd kernels from its first call: changing
/// the weight in place inside the scope (which its contract rules out) still gives the first
/// weight's output, which shows the kernels were reused; after the scope the new weight counts
/// again, and a second weight inside the scope gets its own kernels.
#[test]
fn frozen_weights_reuse_winograd_kernels_only_inside_the_scope() {
    let x = rand_tensor(&[2, 4, 6, 6], 40);
    let first = rand_tensor(&[3, 4, 3, 3], 41);
    let second = rand_tensor(&[3, 4, 3, 3], 42);
    let w = Var::from_tensor(&first).unwrap();
    let conv = |w: &Tensor| conv2d(&x, w, None, 1, 1).unwrap();
    let (of_first, of_second) = (conv(&first), conv(&second));
    {
        let _frozen = FrozenWeights::begin();
        assert_close(
            &conv(w.as_tensor()),
            &of_first,
            1e-6,
            "first call in the scope",
        );
        w.set(&second).unwrap();
        assert_close(
            &conv(w.as_tensor()),
            &of_first,
            1e-6,
            "kernels kept in the scope",
        );
        let other = second.copy().unwrap();
        assert_close(
            &conv(&other),
            &of_second,
            1e-6,
            "another weight in the scope",
        );
    }
    assert_close(&conv(w.as_tensor()), &of_second, 1e-6, "after the scope");
}

#[test]
fn conv_gradients_match_finite_differences() {
    let (s, p) = (2, 1);
    let x = rand_tensor(&[2, 3, 7, 6], 7);
    let w_conv = rand_tensor(&[4, 3, 4, 4], 8);
    let w_tr = rand_tensor(&[3, 4, 4, 4], 9);
    type F = Box<dyn Fn(&Tensor, &Tensor) -> Tensor>;
    let ops: [(&str, Tensor, F); 2] = [
        (
            "conv2d",
            w_conv,
            Box::new(move |x, w| conv2d(x, w, None, s, p).unwrap()),
        ),
        (
            "conv_transpose2d",
            w_tr,
            Box::new(move |x, w| conv_transpose2d(x, w, None, s, p, 1).unwrap()),
        ),
    ];
    for (name, w, f) in ops {
        let r = rand_tensor(f(&x, &w).dims(), 3);
        let loss = |x: &Tensor, w: &Tensor| -> f64 {
            (f(x, w) * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let (xv, wv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
        let grads = (f(xv.as_tensor(), wv.as_tensor()) * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (which, t) in [("x", &x), ("w", &w)] {
            let g = grads
                .get(if which == "x" {
                    xv.as_tensor()
                } else {
                    wv.as_tensor()
                })
                .unwrap();
            let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let base = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for idx in [0, base.len() / 3, base.len() / 2 + 1, base.len() - 1] {
                let h = 1e-2f32;
                let shifted = |d: f32| {
                    let mut v = base.clone();
                    v[idx] += d;
                    Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap()
                };
                let (plus, minus) = (shifted(h), shifted(-h));
                let fd = if which == "x" {
                    (loss(&plus, &w) - loss(&minus, &w)) / (2.0 * h as f64)
                } else {
                    (loss(&x, &plus) - loss(&x, &minus)) / (2.0 * h as f64)
                };
                let err = (fd - g[idx] as f64).abs();
                assert!(
                    err <= 1e-2 * fd.abs().max(1.0),
                    "{name} d/d{which}[{idx}]: {} vs fd {fd}",
                    g[idx]
                );
            }
        }
    }
}

#[test]
fn conv_shape_errors_are_reported() {
    let x = rand_tensor(&[1, 3, 5, 5], 1);
    assert!(
        conv2d(&x, &rand_tensor(&[2, 4, 3, 3], 2), None, 1, 0).is_err(),
        "channel mismatch"
    );
    assert!(
        conv2d(&x, &rand_tensor(&[2, 3, 7, 7], 2), None, 1, 0).is_err(),
        "kernel larger than input"
    );
    assert!(
        conv2d(
            &x,
            &rand_tensor(&[2, 3, 3, 3], 2),
            Some(&rand_tensor(&[3], 3)),
            1,
            0
        )
        .is_err(),
        "bias"
    );
    assert!(
        conv2d(
            &x,
            &rand_tensor(&[2, 3, 3, 3], 2),
            Some(&rand_tensor(&[2, 2], 3)),
            1,
            0
        )
        .is_err(),
        "a bias per sample for another batch size"
    );
    assert!(
        conv_transpose2d(&x, &rand_tensor(&[3, 2, 4, 4], 2), None, 2, 1, 2).is_err(),
        "output_padding >= stride"
    );
    let y = conv_transpose2d(&x, &rand_tensor(&[3, 2, 4, 4], 2), None, 2, 1, 1).unwrap();
    assert_eq!(y.dims(), &[1, 2, 11, 11]);
}

#[test]
fn batch_norm_matches_composed_ops() {
    use muse_core::nn::ops::batch_norm::reference_batch_norm_train;
    use muse_core::nn::ops::{Activation, batch_norm_train};
    let acts = [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu(0.2),
    ];
    for (i, dims) in [&[4, 3, 5, 5][..], &[2, 8, 7, 7], &[3, 5], &[1, 2, 3, 1]]
        .iter()
        .enumerate()
    {
        for (j, act) in acts.iter().enumerate() {
            let seed = 300 + 10 * i as u64 + j as u64;
            let x = rand_tensor(dims, seed).affine(2.0, 0.3).unwrap();
            let w = rand_tensor(&[dims[1]], seed + 1);
            let b = rand_tensor(&[dims[1]], seed + 2);
            let name = format!("batch_norm {dims:?} {act:?}");
            compare(
                &name,
                vec![x.clone(), w.clone(), b.clone()],
                |t| Ok(batch_norm_train(&t[0], &t[1], &t[2], 1e-5, *act)?.0),
                |t| Ok(reference_batch_norm_train(&t[0], &t[1], &t[2], 1e-5, *act)?.0),
            );
            let (_, sf) = batch_norm_train(&x, &w, &b, 1e-5, *act).unwrap();
            let (_, sr) = reference_batch_norm_train(&x, &w, &b, 1e-5, *act).unwrap();
            assert_eq!(sf.count, sr.count);
            for (a, b) in sf
                .mean
                .iter()
                .chain(&sf.var)
                .zip(sr.mean.iter().chain(&sr.var))
            {
                assert!((a - b).abs() < 1e-4, "{name}: statistics {a} vs {b}");
            }
        }
    }
}

#[test]
fn leaky_relu_matches_composed_ops() {
    use muse_core::nn::ops::leaky_relu;
    compare(
        "leaky_relu",
        vec![rand_tensor(&[3, 4, 5, 6], 5)],
        |t| leaky_relu(&t[0], 0.2),
        |t| candle_nn::ops::leaky_relu(&t[0], 0.2),
    );
}

/// The standalone activation op: values and gradients, on a tensor large enough to be split
/// into several tasks. (At exactly 0 the ReLU gradient is 0, as PyTorch's, where candle's is 1;
/// random inputs never hit it.)
#[test]
fn activation_op_matches_composed_ops() {
    use muse_core::nn::ops::{Activation, activation};
    for act in [
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Tanh,
    ] {
        compare(
            &format!("{act:?}"),
            vec![rand_tensor(&[3, 4, 100, 60], 6)],
            |t| activation(&t[0], act),
            |t| act.reference(&t[0]),
        );
    }
}

#[test]
fn fused_activations_match_composed_ops() {
    use muse_core::nn::ops::{Activation, conv_transpose2d_act, conv2d_act};
    for (i, act) in [
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Tanh,
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 500 + 10 * i as u64;
        let x = rand_tensor(&[3, 4, 9, 9], seed);
        let (wc, wt, b) = (
            rand_tensor(&[5, 4, 4, 4], seed + 1),
            rand_tensor(&[4, 5, 4, 4], seed + 2),
            rand_tensor(&[5], seed + 3),
        );
        compare(
            &format!("conv2d_act {act:?}"),
            vec![x.clone(), wc, b.clone()],
            |t| conv2d_act(&t[0], &t[1], Some(&t[2]), 2, 1, act),
            |t| act.reference(&reference_conv2d(&t[0], &t[1], Some(&t[2]), 2, 1)?),
        );
        compare(
            &format!("conv_transpose2d_act {act:?}"),
            vec![x, wt, b],
            |t| conv_transpose2d_act(&t[0], &t[1], Some(&t[2]), 2, 1, 1, act),
            |t| {
                act.reference(&reference_conv_transpose2d(
                    &t[0],
                    &t[1],
                    Some(&t[2]),
                    2,
                    1,
                    1,
                )?)
            },
        );
    }
}
