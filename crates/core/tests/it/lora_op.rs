//! The fused LoRA linear op (`ops::lora_linear`) against the composed path it replaces
//! (`reference::lora_linear`): forward values and the gradients of x, A and B, in both weight
//! layouts, with and without bias, with and without dropout (the same mask on both sides); its
//! dropout masks draw the seeded stream exactly as `Dropout::apply` does; and an adapted
//! `Linear` equals its base layer plus `Lora::forward`.

use candle_core::{Device, Result, Tensor, Var};
use muse_core::nn::dropout::KeepMask;
use muse_core::nn::lora::{Lora, LoraDropout};
use muse_core::nn::ops::{self, LoraUpdate, WeightLayout, reference};
use muse_core::nn::{Dropout, Linear};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform values in [-scale, scale], seeded.
fn rand_tensor(dims: &[usize], scale: f32, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// Asserts `max |a - b| <= tol * max(1, max |b|)` (as `ops.rs` does).
fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, |m, d| if d > m || d.is_nan() { d } else { m });
    assert!(
        worst <= tol * scale && !worst.is_nan(),
        "{what}: max diff {worst} > {tol} * {scale}"
    );
}

const TOL: f32 = 2e-5;

/// The inputs of one adapted layer: x, A, B trainable (or not), W and bias frozen.
struct Case {
    x: Tensor,
    w: Tensor,
    bias: Option<Tensor>,
    a: Tensor,
    b: Tensor,
    layout: WeightLayout,
    scale: f64,
    mask: Option<KeepMask>,
}

impl Case {
    fn new(lead: &[usize], k: usize, n: usize, r: usize, layout: WeightLayout, seed: u64) -> Self {
        let x_dims = [lead, &[k]].concat();
        let w_dims = match layout {
            WeightLayout::InOut => [k, n],
            WeightLayout::OutIn => [n, k],
        };
        Self {
            x: rand_tensor(&x_dims, 1.0, seed),
            w: rand_tensor(&w_dims, 0.5, seed + 1),
            bias: Some(rand_tensor(&[n], 0.5, seed + 2)),
            a: rand_tensor(&[r, k], 0.5, seed + 3),
            // Non-zero (a fresh adapter's B is zero) so every gradient path carries values.
            b: rand_tensor(&[n, r], 0.5, seed + 4),
            layout,
            scale: 16.0 / r as f64,
            mask: None,
        }
    }

    /// Runs `f(x, A, B)` with x, A, B as variables where `track` says so; returns the output
    /// and the gradients of `sum(y * v)` (v random) for the tracked ones.
    fn run(
        &self,
        track: [bool; 3],
        f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    ) -> (Tensor, [Option<Tensor>; 3], usize) {
        let vars: Vec<Option<Var>> = [&self.x, &self.a, &self.b]
            .iter()
            .zip(track)
            .map(|(t, on)| on.then(|| Var::from_tensor(t).unwrap()))
            .collect();
        let ts: Vec<Tensor> = [&self.x, &self.a, &self.b]
            .iter()
            .zip(&vars)
            .map(|(t, v)| v.as_ref().map_or((*t).clone(), |v| v.as_tensor().clone()))
            .collect();
        let y = f(&ts[0], &ts[1], &ts[2]).unwrap();
        let nodes = y.sorted_nodes().len();
        let v = rand_tensor(y.dims(), 1.0, 99);
        let grads = (&y * &v).unwrap().sum_all().unwrap().backward().unwrap();
        let g = |i: usize| vars[i].as_ref().and_then(|v| grads.get(v).cloned());
        (y, [g(0), g(1), g(2)], nodes)
    }

    fn update<'a>(&self, a: &'a Tensor, b: &'a Tensor) -> LoraUpdate<'a> {
        LoraUpdate {
            a,
            b,
            scale: self.scale,
        }
    }

    /// Fused against composed, for the inputs in `track`; the fused graph must be one op
    /// over the tracked inputs.
    fn check(&self, name: &str, track: [bool; 3]) {
        let (yf, gf, nodes) = self.run(track, |x, a, b| {
            ops::lora_linear(
                x,
                &self.w,
                self.bias.as_ref(),
                self.layout,
                self.update(a, b),
                self.mask.clone(),
            )
        });
        let (yr, gr, _) = self.run(track, |x, a, b| {
            reference::lora_linear(
                x,
                &self.w,
                self.bias.as_ref(),
                self.layout,
                self.update(a, b),
                self.mask.as_ref(),
            )
        });
        let tracked = track.iter().filter(|t| **t).count();
        assert!(
            nodes <= tracked + 1,
            "{name}: the fused graph has {nodes} nodes, not one op"
        );
        assert_close(&yf, &yr, TOL, &format!("{name} forward"));
        for (i, what) in ["dx", "dA", "dB"].iter().enumerate() {
            match (&gf[i], &gr[i], track[i]) {
                (Some(f), Some(r), true) => assert_close(f, r, TOL, &format!("{name} {what}")),
                (None, None, false) => {}
                (f, r, _) => panic!(
                    "{name} {what}: fused {} / composed {} gradient",
                    f.is_some(),
                    r.is_some()
                ),
            }
        }
    }
}

#[test]
fn fused_lora_linear_matches_composed_ops() {
    // (leading dims, in, out, r): one row (decoding), odd sizes, r = 1, GPT-2-like ratios.
    for (i, (lead, k, n, r)) in [
        (vec![1], 1, 1, 1),
        (vec![5], 7, 3, 2),
        (vec![33], 17, 65, 4),
        (vec![64], 128, 384, 8),
        (vec![2, 3], 9, 10, 3),
        (vec![1], 96, 300, 8),
        (vec![40], 200, 48, 8),
    ]
    .into_iter()
    .enumerate()
    {
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let mut case = Case::new(&lead, k, n, r, layout, 300 + 10 * i as u64);
            for dropout in [0.0, 0.3] {
                case.mask = Dropout::train(dropout, 7 + i as u64).draw_mask(case.x.elem_count());
                for bias in [true, false] {
                    if !bias {
                        case.bias = None;
                    }
                    let name =
                        format!("lora {lead:?} {k}->{n} r{r} {layout:?} p{dropout} bias {bias}");
                    case.check(&name, [true, true, true]);
                }
                case.bias = Some(rand_tensor(&[n], 0.5, 1));
            }
        }
    }
}

#[test]
fn fused_lora_linear_computes_only_the_gradients_asked_for() {
    let mut case = Case::new(&[2, 11], 24, 40, 4, WeightLayout::InOut, 5);
    case.mask = Dropout::train(0.2, 3).draw_mask(case.x.elem_count());
    // The first adapted layer's input tracks nothing (frozen embeddings and norms); a frozen
    // adapter (evaluation) tracks nothing at all.
    case.check("x frozen", [false, true, true]);
    case.check("only A", [false, true, false]);
    case.check("only B", [false, false, true]);
    case.check("only x", [true, false, false]);
    case.mask = None;
    case.check("x frozen, no dropout", [false, true, true]);
}

/// With a trainable base weight the op cannot return its gradient, so the composed path runs
/// and the weight gets the composed gradient.
#[test]
fn a_trainable_base_weight_takes_the_composed_path() {
    for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
        let case = Case::new(&[9], 12, 20, 4, layout, 21);
        let w = Var::from_tensor(&case.w).unwrap();
        let run = |f: fn(
            &Tensor,
            &Tensor,
            Option<&Tensor>,
            WeightLayout,
            LoraUpdate,
        ) -> Result<Tensor>| {
            let y = f(
                &case.x,
                w.as_tensor(),
                case.bias.as_ref(),
                layout,
                case.update(&case.a, &case.b),
            )
            .unwrap();
            let g = y.sum_all().unwrap().backward().unwrap();
            (y, g.get(&w).cloned().expect("a gradient for W"))
        };
        let (yf, gf) = run(|x, w, b, l, u| ops::lora_linear(x, w, b, l, u, None));
        let (yr, gr) = run(|x, w, b, l, u| reference::lora_linear(x, w, b, l, u, None));
        assert_close(&yf, &yr, TOL, &format!("{layout:?} forward"));
        assert_close(&gf, &gr, TOL, &format!("{layout:?} dW"));
    }
}

#[test]
fn dropout_masks_draw_the_stream_as_apply_does() {
    let x = rand_tensor(&[3, 50], 1.0, 8);
    let (mut applied, mut drawn) = (Dropout::train(0.25, 77), Dropout::train(0.25, 77));
    // Two calls in a row: the second mask continues the stream where the first stopped.
    for call in 0..2 {
        let want = applied.apply(&x).unwrap();
        let mask = drawn.draw_mask(x.elem_count()).unwrap();
        let got = x.mul(&mask.to_tensor(&x).unwrap()).unwrap();
        let diff = (&want - &got)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "call {call}: the masks differ");
        let kept = (0..mask.len()).filter(|&i| mask.keeps(i)).count();
        assert!((80..=145).contains(&kept), "kept {kept} of 150 at p = 0.25");
        assert_eq!(mask.scale(), 1.0 / 0.75);
    }
    assert!(Dropout::eval().draw_mask(10).is_none());
    assert!(Dropout::train(0.0, 1).draw_mask(10).is_none());
}

/// An adapted `Linear` (the fused op, dropout drawn from the shared adapter stream) equals the
/// plain layer plus the composed `Lora::forward` drawing the same stream, values and adapter
/// gradients; leading dimensions are flattened and restored.
#[test]
fn an_adapted_linear_equals_base_plus_composed_update() {
    for layout in [WeightLayout::OutIn, WeightLayout::InOut] {
        let case = Case::new(&[2, 7], 16, 24, 4, layout, 40);
        let (a, b) = (
            Var::from_tensor(&case.a).unwrap(),
            Var::from_tensor(&case.b).unwrap(),
        );
        let dropout = LoraDropout::default();
        let lora = Lora {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale: case.scale,
            dropout: dropout.clone(),
        };
        let layer = Linear {
            weight: case.w.clone(),
            bias: case.bias.clone(),
            layout,
            lora: Some(lora.clone()),
        };
        let plain = Linear {
            lora: None,
            ..layer.clone()
        };
        let v = rand_tensor(&[2, 7, 24], 1.0, 3);
        let run = |f: &dyn Fn() -> Result<Tensor>| {
            // Two forwards per run, so the second mask continues the stream on both sides.
            dropout.train(0.1, 1234);
            let y = (f().unwrap() + f().unwrap()).unwrap();
            dropout.eval();
            let g = (&y * &v).unwrap().sum_all().unwrap().backward().unwrap();
            let (ga, gb) = (g.get(&a).cloned().unwrap(), g.get(&b).cloned().unwrap());
            (y, ga, gb)
        };
        let (yf, af, bf) = run(&|| layer.forward(&case.x));
        let (yr, ar, br) = run(&|| {
            let x2 = case.x.reshape((14, 16))?;
            (plain.forward(&x2)? + lora.forward(&x2)?)?.reshape((2, 7, 24))
        });
        assert_close(&yf, &yr, TOL, &format!("{layout:?} forward"));
        assert_close(&af, &ar, TOL, &format!("{layout:?} dA"));
        assert_close(&bf, &br, TOL, &format!("{layout:?} dB"));
    }
}
