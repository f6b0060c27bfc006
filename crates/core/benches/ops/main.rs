//! Micro-benchmark of the fused CPU ops (`muse_core::nn::ops`) against the composed candle ops
//! they replace (`ops::reference`), forward and forward+backward, at the gpt_char shapes
//! (B=12, T=64, C=128, 4 heads, V=65, MLP 512) and at GPT-2-small shapes (B=2, T=256, C=768,
//! 12 heads, V=50257, MLP 3072), plus the matmul measurements behind the kernels' choices.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench -p muse-core --bench ops            # all sections
//! RAYON_NUM_THREADS=2 cargo bench -p muse-core --bench ops -- char     # char | gpt2 | matmul
//! ```
//! Prints the median milliseconds per call; "x" is reference / fused for forward+backward.

mod harness;
mod matmul;

use std::time::Duration;

use candle_core::{DType, Device, Result, Tensor, Var};
use harness::{median_ms, ms};
use muse_core::nn::ops::{self, AdamWHyper, GeluKind, WeightLayout, reference};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type OpFn = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;

fn randn(dims: &[usize], std: f64) -> Tensor {
    Tensor::randn(0f32, std as f32, dims, &Device::Cpu).unwrap()
}

/// Times `fused` and `reference` on the same inputs (as variables), forward and fwd+bwd.
fn compare(name: &str, inputs: Vec<Tensor>, fused: OpFn, reference: OpFn, budget: Duration) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let fwd = |f: &OpFn| median_ms(|| drop(f(&ts).unwrap()), 500, budget);
    let both = |f: &OpFn| median_ms(|| drop(f(&ts).unwrap().backward().unwrap()), 500, budget);
    let (ff, fb, rf, rb) = (fwd(&fused), both(&fused), fwd(&reference), both(&reference));
    println!(
        "{name:<34} {:>9} {:>9} | {:>9} {:>9} | {:>5.1}x",
        ms(ff),
        ms(fb),
        ms(rf),
        ms(rb),
        rb / fb
    );
}

/// The fused-vs-reference table for one model size.
#[allow(clippy::too_many_arguments)]
fn model_ops(
    title: &str,
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
    v: usize,
    mlp: usize,
    budget: Duration,
) {
    let n = b * t;
    println!(
        "\n## {title}: B={b} T={t} C={c} heads={nh} V={v} MLP={mlp} (ms; fused fwd, fwd+bwd | reference fwd, fwd+bwd)"
    );
    let x = randn(&[n, c], 1.0);
    let (w, bias) = (randn(&[c], 1.0), randn(&[c], 0.1));
    compare(
        &format!("layer_norm ({n}, {c})"),
        vec![x.clone(), w.clone(), bias],
        Box::new(|t| ops::layer_norm(&t[0], &t[1], Some(&t[2]), 1e-5)),
        Box::new(|t| reference::layer_norm(&t[0], &t[1], Some(&t[2]), 1e-5)),
        budget,
    );
    compare(
        &format!("rms_norm ({n}, {c})"),
        vec![x.clone(), w],
        Box::new(|t| ops::rms_norm(&t[0], &t[1], 1e-5)),
        Box::new(|t| reference::rms_norm(&t[0], &t[1], 1e-5)),
        budget,
    );
    let qkv = randn(&[b, t, 3 * c], 1.0);
    compare(
        &format!("attention ({b}, {t}, {}) h={nh}", 3 * c),
        vec![qkv],
        Box::new(move |t| ops::causal_self_attention(&t[0], nh)),
        Box::new(move |t| reference::causal_self_attention(&t[0], nh)),
        budget,
    );
    for (label, k, o, layout, with_bias) in [
        ("qkv", c, 3 * c, WeightLayout::InOut, true),
        ("fc", c, mlp, WeightLayout::InOut, true),
        ("proj", mlp, c, WeightLayout::InOut, true),
        ("lm_head", c, v, WeightLayout::OutIn, false),
    ] {
        let xin = randn(&[n, k], 1.0);
        let w = if layout == WeightLayout::InOut {
            randn(&[k, o], 0.02)
        } else {
            randn(&[o, k], 0.02)
        };
        let name = format!("linear {label} {n}x{k}->{o}");
        if with_bias {
            let inputs = vec![xin, w, randn(&[o], 0.02)];
            compare(
                &name,
                inputs,
                Box::new(move |t| ops::linear(&t[0], &t[1], Some(&t[2]), layout)),
                Box::new(move |t| reference::linear(&t[0], &t[1], Some(&t[2]), layout)),
                budget,
            );
        } else {
            compare(
                &name,
                vec![xin, w],
                Box::new(move |t| ops::linear(&t[0], &t[1], None, layout)),
                Box::new(move |t| reference::linear(&t[0], &t[1], None, layout)),
                budget,
            );
        }
    }
    let h = randn(&[n, mlp], 1.0);
    for kind in [GeluKind::Tanh, GeluKind::Erf] {
        compare(
            &format!("gelu {kind:?} ({n}, {mlp})"),
            vec![h.clone()],
            Box::new(move |t| ops::gelu(&t[0], kind)),
            Box::new(move |t| reference::gelu(&t[0], kind)),
            budget,
        );
    }
    let logits = randn(&[n, v], 2.0);
    let targets = Tensor::from_vec(
        (0..n as u32)
            .map(|i| (i * 7) % v as u32)
            .collect::<Vec<_>>(),
        n,
        &Device::Cpu,
    )
    .unwrap();
    let t2 = targets.clone();
    compare(
        &format!("cross_entropy ({n}, {v})"),
        vec![logits],
        Box::new(move |t| ops::cross_entropy(&t[0], &targets)),
        Box::new(move |t| reference::cross_entropy(&t[0], &t2)),
        budget,
    );
}

/// One AdamW step over parameters of the given shapes, fused vs composed.
fn adamw(title: &str, shapes: &[Vec<usize>], budget: Duration) {
    let params: Vec<(Var, Tensor, Var, Var)> = shapes
        .iter()
        .map(|s| {
            let z = || Var::zeros(s.as_slice(), DType::F32, &Device::Cpu).unwrap();
            (
                Var::from_tensor(&randn(s, 0.02)).unwrap(),
                randn(s, 0.01),
                z(),
                z(),
            )
        })
        .collect();
    let count: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let h = AdamWHyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
        step: 10,
    };
    let run = |f: fn(&Var, &Tensor, &Var, &Var, &AdamWHyper) -> Result<()>| {
        median_ms(
            || {
                params
                    .iter()
                    .for_each(|(p, g, m, v)| f(p, g, m, v, &h).unwrap())
            },
            200,
            budget,
        )
    };
    let (fused, composed) = (run(ops::adamw_update), run(reference::adamw_update));
    println!(
        "{:<34} {:>9} {:>9} | {:>9} {:>9} | {:>5.1}x",
        format!("adamw {title} ({count} params)"),
        "",
        ms(fused),
        "",
        ms(composed),
        composed / fused
    );
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |s: &str| filter.is_empty() || filter.iter().any(|f| s.contains(f.as_str()));
    println!(
        "# muse ops bench: {} rayon threads, avx2+fma {}",
        rayon::current_num_threads(),
        std::arch::is_x86_feature_detected!("fma")
    );
    let budget = Duration::from_millis(400);
    if want("char") {
        model_ops("gpt_char", 12, 64, 128, 4, 65, 512, budget);
        let (c, l) = (128, 4);
        let mut shapes = vec![vec![65, c], vec![64, c], vec![c], vec![c]];
        for _ in 0..l {
            shapes.extend([
                vec![c],
                vec![c],
                vec![c, 3 * c],
                vec![3 * c],
                vec![c, c],
                vec![c],
            ]);
            shapes.extend([
                vec![c],
                vec![c],
                vec![c, 4 * c],
                vec![4 * c],
                vec![4 * c, c],
                vec![c],
            ]);
        }
        adamw("gpt_char", &shapes, budget);
    }
    if want("gpt2") {
        model_ops(
            "GPT-2 small",
            2,
            256,
            768,
            12,
            50257,
            3072,
            Duration::from_secs(2),
        );
        adamw("wte 50257x768", &[vec![50257, 768]], Duration::from_secs(2));
    }
    if want("matmul") {
        matmul::run(budget);
    }
}
