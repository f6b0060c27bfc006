//! The GAN family: which optimizer moves which weights, a discriminator that overfits a fixed
//! real/fake pair and a generator that learns to fool it, WGAN-GP's gradient penalty against
//! PyTorch double backward, conditional shapes and label checks, and resume = uninterrupted.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use muse_core::models::gan::{DNorm, Gan, GanConfig};
use muse_core::nn::NormMode;
use muse_core::run_dir::OnExisting;
use muse_core::sample::gan::{Labels, generate_images, labels_for};
use muse_core::train::gan::{
    GanLoss, GanRunConfig, GanTrainJob, GanTrainer, gradient_penalty, noise, split_vars, train_gan,
};
use rand::{Rng, SeedableRng};

fn tiny(n_classes: usize, d_norm: DNorm) -> GanConfig {
    GanConfig {
        z_dim: 8,
        image_size: 8,
        g_channels: 8,
        d_channels: 4,
        n_classes,
        d_norm,
        ..GanConfig::dcgan_mnist()
    }
}

fn run_config(model: GanConfig, lr: f64) -> GanRunConfig {
    let mut cfg = GanRunConfig::dcgan_mnist();
    cfg.model = model;
    (cfg.train.lr, cfg.train.min_lr, cfg.train.batch_size) = (lr, lr, 8);
    cfg
}

fn rand_images(n: usize, size: usize, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * size * size)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    Tensor::from_vec(v, (n, 1, size, size), &Device::Cpu).unwrap()
}

/// Values of the trainable weights, by name.
fn snapshot(tr: &GanTrainer) -> HashMap<String, Vec<f32>> {
    let (g, d) = split_vars(&tr.varmap);
    g.into_iter()
        .chain(d)
        .map(|(k, v)| {
            (
                k,
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

/// Names of the trainable weights that differ between two snapshots.
fn changed(a: &HashMap<String, Vec<f32>>, b: &HashMap<String, Vec<f32>>) -> Vec<String> {
    let mut out: Vec<String> = a
        .iter()
        .filter(|(k, v)| b[*k] != **v)
        .map(|(k, _)| k.clone())
        .collect();
    out.sort();
    out
}

#[test]
fn d_step_moves_only_d_and_g_step_only_g() {
    let cfg = run_config(tiny(0, DNorm::Batch), 1e-3);
    let t = cfg.train.optimizer_config(10);
    let mut tr = GanTrainer::new(&cfg.model, &t, &Device::Cpu).unwrap();
    let z = noise(8, 8, 1, 0, 0, &Device::Cpu).unwrap();
    let fake = tr.gan.g.forward(&z, None, NormMode::Train).unwrap();
    let real = rand_images(8, 8, 3);
    let before = snapshot(&tr);
    tr.d_step(&cfg, &real, None, &fake.detach(), None, (1, 0, 0), 1e-3)
        .unwrap();
    let after_d = snapshot(&tr);
    let moved = changed(&before, &after_d);
    assert!(!moved.is_empty(), "the D step changed nothing");
    assert!(
        moved.iter().all(|k| k.starts_with("d.")),
        "D step moved {moved:?}"
    );
    let n_d = before.keys().filter(|k| k.starts_with("d.")).count();
    assert_eq!(moved.len(), n_d, "every D weight moves: {moved:?}");
    tr.g_step(GanLoss::Bce, &fake, None, 1e-3).unwrap();
    let moved = changed(&after_d, &snapshot(&tr));
    assert!(!moved.is_empty(), "the G step changed nothing");
    assert!(
        moved.iter().all(|k| k.starts_with("g.")),
        "G step moved {moved:?}"
    );
    // The batch-norm running statistics are not trainable: neither optimizer holds them.
    let (g, d) = split_vars(&tr.varmap);
    assert!(
        g.iter().chain(&d).all(|(k, _)| !k.contains("running")),
        "running statistics in an optimizer"
    );
}

#[test]
fn d_overfits_a_fixed_batch_then_g_learns_to_fool_it() {
    let cfg = run_config(tiny(0, DNorm::Batch), 2e-3);
    let t = cfg.train.optimizer_config(100);
    let mut tr = GanTrainer::new(&cfg.model, &t, &Device::Cpu).unwrap();
    let real = rand_images(8, 8, 5).affine(0.5, 0.4).unwrap();
    let z = noise(8, 8, 1, 0, 0, &Device::Cpu).unwrap();
    let fake = tr
        .frozen
        .g
        .forward(&z, None, NormMode::Batch)
        .unwrap()
        .detach();
    let (mut d_real, mut d_fake) = (0.5, 0.5);
    for _ in 0..60 {
        (_, d_real, d_fake, _) = tr
            .d_step(&cfg, &real, None, &fake, None, (1, 0, 0), 2e-3)
            .unwrap();
    }
    assert!(
        d_real > 0.9 && d_fake < 0.1,
        "D did not separate: D(x) {d_real}, D(G(z)) {d_fake}"
    );
    // With D frozen, G moves its samples towards what D calls real.
    let score = |tr: &GanTrainer| {
        let x = tr.frozen.g.forward(&z, None, NormMode::Batch).unwrap();
        let s = tr.frozen.d.forward(&x, None, NormMode::Batch).unwrap();
        muse_core::models::gan::mean_probability(&s).unwrap()
    };
    let start = score(&tr);
    for _ in 0..60 {
        let x = tr.gan.g.forward(&z, None, NormMode::Batch).unwrap();
        tr.g_step(GanLoss::Bce, &x, None, 2e-3).unwrap();
    }
    let end = score(&tr);
    assert!(
        end > 0.5 && end > start + 0.3,
        "G did not learn to fool D: {start} -> {end}"
    );
}

#[derive(serde::Deserialize)]
struct GpCase {
    image_channels: usize,
    n_classes: usize,
    d_channels: usize,
    image_size: usize,
    batch: usize,
    real: Vec<f32>,
    fake: Vec<f32>,
    eps: Vec<f32>,
    labels: Option<Vec<u32>>,
    weights: HashMap<String, GpWeight>,
    input_grad: Vec<f32>,
    penalty: f64,
    grads: HashMap<String, Vec<f32>>,
}

#[derive(serde::Deserialize)]
struct GpWeight {
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max diff {worst} > {tol} * {scale}"
    );
}

/// The penalty, the critic's input gradient and the penalty's gradient with respect to every
/// critic weight, against PyTorch's double backward (`scripts/fixtures/gan_wgan_gp.py`).
#[test]
fn gradient_penalty_matches_pytorch() {
    let path = crate::common::fixture("gan_wgan_gp.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let cases: Vec<GpCase> = serde_json::from_value(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["cases"].clone(),
    )
    .unwrap();
    let dev = Device::Cpu;
    for (ci, c) in cases.iter().enumerate() {
        let cfg = GanConfig {
            z_dim: 4,
            image_channels: c.image_channels,
            image_size: c.image_size,
            g_channels: 4,
            d_channels: c.d_channels,
            n_classes: c.n_classes,
            d_norm: DNorm::None,
            ..GanConfig::dcgan_mnist()
        };
        let varmap = VarMap::new();
        let gan = Gan::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
        {
            let data = varmap.data().lock().unwrap();
            for (name, w) in &c.weights {
                let t = Tensor::from_vec(w.values.clone(), w.shape.as_slice(), &dev).unwrap();
                data[&format!("d.{name}")].set(&t).unwrap();
            }
        }
        let (n, ch, s) = (c.batch, c.image_channels, c.image_size);
        let img = |v: &[f32]| Tensor::from_vec(v.to_vec(), (n, ch, s, s), &dev).unwrap();
        let eps = Tensor::from_vec(c.eps.clone(), (n, 1, 1, 1), &dev).unwrap();
        let labels = c
            .labels
            .as_ref()
            .map(|l| Tensor::from_vec(l.clone(), n, &dev).unwrap());
        let (real, fake) = (img(&c.real), img(&c.fake));
        let mix = (real.broadcast_mul(&eps).unwrap()
            + fake.broadcast_mul(&eps.affine(-1.0, 1.0).unwrap()).unwrap())
        .unwrap();
        let g = gan.d.input_gradient(&mix, labels.as_ref()).unwrap();
        assert_close(
            &g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            &c.input_grad,
            1e-4,
            &format!("case {ci}: input gradient"),
        );
        let gp = gradient_penalty(&gan, &real, &fake, &eps, labels.as_ref()).unwrap();
        let value = gp.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (value - c.penalty).abs() <= 1e-4 * c.penalty.abs().max(1.0),
            "case {ci}: penalty {value} vs PyTorch {}",
            c.penalty
        );
        let store = gp.backward().unwrap();
        let data = varmap.data().lock().unwrap();
        for (name, want) in &c.grads {
            let var = &data[&format!("d.{name}")];
            let got = match store.get(var.as_tensor()) {
                Some(g) => g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                None => vec![0.0; want.len()],
            };
            assert_close(
                &got,
                want,
                1e-4,
                &format!("case {ci}: d penalty / d {name}"),
            );
        }
    }
}

#[test]
fn conditional_shapes_and_label_checks() {
    let dev = Device::Cpu;
    let cfg = tiny(3, DNorm::Batch);
    let varmap = VarMap::new();
    let gan = Gan::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    muse_core::nn::init_varmap(&varmap, 1, muse_core::models::gan::dcgan_init).unwrap();
    let z = noise(6, 8, 1, 0, 0, &dev).unwrap();
    let labels = Tensor::new(&[0u32, 1, 2, 0, 1, 2], &dev).unwrap();
    let x = gan.g.forward(&z, Some(&labels), NormMode::Train).unwrap();
    assert_eq!(x.dims(), &[6, 1, 8, 8]);
    let s = gan.d.forward(&x, Some(&labels), NormMode::Train).unwrap();
    assert_eq!(s.dims(), &[6]);
    assert!(
        gan.g.forward(&z, None, NormMode::Train).is_err(),
        "conditional G without labels"
    );
    // Different labels, same noise: different images.
    let other = Tensor::new(&[1u32, 2, 0, 1, 2, 0], &dev).unwrap();
    let y = gan.g.forward(&z, Some(&other), NormMode::Eval).unwrap();
    let x = gan.g.forward(&z, Some(&labels), NormMode::Eval).unwrap();
    let diff = (x - y)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff > 1e-3, "the label does not reach the generator");

    assert_eq!(
        labels_for(&gan, 4, Labels::Class(2)).unwrap(),
        Some(vec![2; 4])
    );
    assert_eq!(
        labels_for(&gan, 4, Labels::Any).unwrap(),
        Some(vec![0, 1, 2, 0])
    );
    let err = labels_for(&gan, 4, Labels::Class(3)).unwrap_err();
    assert!(
        err.is_usage() && err.to_string().contains("0 to 2"),
        "{err}"
    );
    let images = generate_images(&gan, 5, Some(&[1, 1, 1, 1, 1]), 7, &dev).unwrap();
    assert_eq!(images.dims(), &[5, 1, 8, 8]);
    let v = images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(v.iter().all(|p| (0.0..=1.0).contains(p)));

    let plain = Gan::new(
        &tiny(0, DNorm::Batch),
        VarBuilder::from_varmap(&VarMap::new(), DType::F32, &dev),
    )
    .unwrap();
    let err = labels_for(&plain, 4, Labels::Class(1)).unwrap_err();
    assert!(
        err.is_usage() && err.to_string().contains("unconditional"),
        "{err}"
    );
}

/// A small MNIST run for the loop tests: 256 images, tiny networks, batch 16.
fn mnist_job(
    out: &std::path::Path,
    steps: usize,
    on_existing: OnExisting,
    loss: GanLoss,
) -> GanTrainJob {
    let mut cfg = GanRunConfig::dcgan_mnist().with_loss(loss);
    cfg.model = GanConfig {
        z_dim: 8,
        g_channels: 8,
        d_channels: 4,
        d_norm: cfg.model.d_norm,
        ..GanConfig::dcgan_mnist()
    };
    cfg.data.dataset = crate::common::dataset("mnist").display().to_string();
    cfg.data.train_limit = 256;
    cfg.train.batch_size = 16;
    cfg.train.max_steps = steps;
    (
        cfg.train.eval_interval,
        cfg.train.sample_interval,
        cfg.train.log_interval,
    ) = (2, 2, 1);
    cfg.gan.n_critic = cfg.gan.n_critic.min(2);
    GanTrainJob {
        out: out.to_path_buf(),
        preset: "dcgan-mnist".into(),
        config: cfg,
        on_existing,
        device: Device::Cpu,
    }
}

#[test]
fn resume_equals_uninterrupted() {
    for loss in [GanLoss::Bce, GanLoss::WganGp] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        train_gan(mnist_job(&a, 5, OnExisting::Refuse, loss), None).unwrap();
        train_gan(mnist_job(&b, 3, OnExisting::Refuse, loss), None).unwrap();
        let report = train_gan(mnist_job(&b, 5, OnExisting::Resume, loss), None).unwrap();
        assert_eq!(report.steps, 5);
        let (wa, wb) = (
            crate::common::run_weights(&a),
            crate::common::run_weights(&b),
        );
        assert_eq!(wa.len(), wb.len());
        for (k, v) in &wa {
            assert_eq!(v, &wb[k], "{loss:?}: {k} differs after resume");
        }
        // The logs agree too (timings aside), and the run folder is complete.
        let strip = |dir: &std::path::Path| -> Vec<serde_json::Value> {
            muse_core::train::metrics::read_metrics(&dir.join("metrics.jsonl"))
                .unwrap()
                .into_iter()
                .map(|mut r| {
                    for k in ["ms", "img_per_s"] {
                        r.as_object_mut().unwrap().remove(k);
                    }
                    r
                })
                .collect()
        };
        assert_eq!(strip(&a), strip(&b), "{loss:?}: metrics differ");
        for f in [
            "config.json",
            "training.json",
            "MODEL_CARD.md",
            "loss.svg",
            "samples/step_000004.png",
        ] {
            assert!(b.join(f).is_file(), "{f} missing");
        }
        let card = std::fs::read_to_string(b.join("MODEL_CARD.md")).unwrap();
        assert!(card.contains("AI-generated"));
    }
}
