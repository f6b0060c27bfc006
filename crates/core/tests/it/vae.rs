//! The VAE: loss terms and gradients against PyTorch (fixture by scripts/fixtures/vae_loss.py),
//! the fused loss ops against the composed ones, reparameterisation gradients, overfitting one
//! batch, and resume == uninterrupted for the training loop.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use muse_core::models::vae::{Vae, VaeConfig, reparameterize};
use muse_core::nn::noise::standard_normal;
use muse_core::nn::ops::vae_loss::{
    bce_with_logits_rows, bce_with_logits_sum, gaussian_kl_sum, reference_bce_with_logits_sum,
    reference_gaussian_kl_sum,
};
use muse_core::run_dir::OnExisting;
use muse_core::train::vae::{VaeRunConfig, VaeTrainJob, train_vae};
use serde_json::Value;

use crate::common::{dataset, fixture};

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max diff {worst} (scale {scale})"
    );
}

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn loss_terms_and_gradients_match_pytorch() {
    let text = std::fs::read_to_string(fixture("vae_loss.json")).unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let cfg: VaeConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let varmap = VarMap::new();
        let model = Vae::new(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        {
            let data = varmap.data().lock().unwrap();
            for (k, w) in case["weights"].as_object().unwrap() {
                let shape: Vec<usize> = w["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                let t = Tensor::from_vec(floats(&w["data"]), shape, &Device::Cpu).unwrap();
                data.get(k)
                    .unwrap_or_else(|| panic!("{name}: no variable {k}"))
                    .set(&t)
                    .unwrap();
            }
        }
        let n = case["n"].as_u64().unwrap() as usize;
        let (c, s, l) = (cfg.channels, cfg.image_size, cfg.latent_dim());
        let x = Tensor::from_vec(floats(&case["x"]), (n, c, s, s), &Device::Cpu).unwrap();
        let eps = Tensor::from_vec(floats(&case["eps"]), (n, l), &Device::Cpu).unwrap();
        let (mu, logvar) = model.encode(&x).unwrap();
        close(&vec(&mu), &floats(&case["mu"]), 1e-5, &format!("{name} mu"));
        close(
            &vec(&logvar),
            &floats(&case["logvar"]),
            1e-5,
            &format!("{name} logvar"),
        );
        let loss = model.loss(&x, &x, &eps, 1.0).unwrap();
        let scalar = |t: &Tensor| t.to_scalar::<f32>().unwrap();
        for (got, key) in [(&loss.bce, "bce"), (&loss.kl, "kl"), (&loss.total, "total")] {
            let want = case[key].as_f64().unwrap() as f32;
            assert!(
                (scalar(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{name} {key}: muse {} vs torch {want}",
                scalar(got)
            );
        }
        let beta4 = model.loss(&x, &x, &eps, 4.0).unwrap().total;
        let want = case["total_beta4"].as_f64().unwrap() as f32;
        assert!((scalar(&beta4) - want).abs() <= 1e-5 * want.abs());
        let grads = loss.total.backward().unwrap();
        // The hand-written MLP step (autograd for the conv VAE) against PyTorch too.
        let (_, _, step) = model.loss_and_grads(&x, &x, &eps, 1.0).unwrap();
        let data = varmap.data().lock().unwrap();
        for (k, g) in case["grads"].as_object().unwrap() {
            let got = grads.get(data[k].as_tensor()).unwrap();
            close(&vec(got), &floats(g), 1e-4, &format!("{name} grad {k}"));
            let got = step.get(data[k].as_tensor()).unwrap();
            close(
                &vec(got),
                &floats(g),
                1e-4,
                &format!("{name} step grad {k}"),
            );
        }
    }
}

#[test]
fn fused_loss_ops_match_the_composed_path() {
    let dev = Device::Cpu;
    let logits =
        Var::from_tensor(&(standard_normal((7, 300), 1, 0, &dev).unwrap() * 4.0).unwrap()).unwrap();
    let target = Tensor::rand(0f32, 1f32, (7, 300), &dev).unwrap();
    let mu = Var::from_tensor(&standard_normal((7, 5), 2, 0, &dev).unwrap()).unwrap();
    let lv = Var::from_tensor(&standard_normal((7, 5), 3, 0, &dev).unwrap()).unwrap();
    let fused = (bce_with_logits_sum(&logits, &target).unwrap() * 0.7).unwrap()
        + (gaussian_kl_sum(&mu, &lv).unwrap() * 1.3).unwrap();
    let composed = (reference_bce_with_logits_sum(&logits, &target).unwrap() * 0.7).unwrap()
        + (reference_gaussian_kl_sum(&mu, &lv).unwrap() * 1.3).unwrap();
    let (fused, composed) = (fused.unwrap(), composed.unwrap());
    close(&vec(&fused), &vec(&composed), 1e-5, "loss");
    let (gf, gc) = (fused.backward().unwrap(), composed.backward().unwrap());
    // Per-row sums for k decodings of each target (IWAE, scores).
    let l3 = logits.as_tensor().reshape((7, 3, 100)).unwrap();
    let t2 = target.narrow(1, 0, 100).unwrap();
    let rows = bce_with_logits_rows(&l3, &t2).unwrap();
    for i in 0..7 {
        for j in 0..3 {
            let want = reference_bce_with_logits_sum(
                &l3.get(i).unwrap().get(j).unwrap(),
                &t2.get(i).unwrap(),
            )
            .unwrap();
            let got = rows.get(i).unwrap().get(j).unwrap();
            close(&vec(&got), &vec(&want), 1e-5, "rows");
        }
    }
    for (v, what) in [(&logits, "logits"), (&mu, "mu"), (&lv, "logvar")] {
        close(
            &vec(gf.get(v.as_tensor()).unwrap()),
            &vec(gc.get(v.as_tensor()).unwrap()),
            1e-5,
            what,
        );
    }
}

#[test]
fn reparameterisation_gradients_flow_to_mu_and_logvar() {
    let dev = Device::Cpu;
    let mu = Var::from_tensor(&Tensor::new(&[[0.5f32, -1.0]], &dev).unwrap()).unwrap();
    let lv = Var::from_tensor(&Tensor::new(&[[0.2f32, -0.6]], &dev).unwrap()).unwrap();
    let eps = Tensor::new(&[[1.5f32, -0.3]], &dev).unwrap();
    let w = Tensor::new(&[[2.0f32, 3.0]], &dev).unwrap();
    // loss = sum(w * z): dz/dmu = 1, dz/dlogvar = eps * exp(logvar / 2) / 2.
    let z = reparameterize(&mu, &lv, &eps).unwrap();
    let grads = (z * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gmu = vec(grads.get(mu.as_tensor()).unwrap());
    let glv = vec(grads.get(lv.as_tensor()).unwrap());
    assert_eq!(gmu, vec![2.0, 3.0]);
    let want = [
        2.0 * 1.5 * (0.1f32).exp() / 2.0,
        3.0 * -0.3 * (-0.3f32).exp() / 2.0,
    ];
    close(&glv, &want, 1e-6, "dlogvar");
}

fn tiny_config() -> VaeRunConfig {
    let mut cfg = VaeRunConfig::preset("mnist-mlp").unwrap();
    cfg.data.dataset = dataset("mnist").display().to_string();
    cfg.data.train_limit = 64;
    cfg.data.test_limit = 32;
    (cfg.model.hidden, cfg.model.latent) = (32, 4);
    cfg.train.batch_size = 16;
    cfg.train.log_interval = 1000;
    cfg.sample.n = 4;
    cfg
}

#[test]
fn overfits_one_batch() {
    let mut cfg = tiny_config();
    cfg.data.train_limit = 16;
    cfg.train.max_steps = 300;
    (cfg.train.lr, cfg.train.min_lr) = (3e-3, 3e-3);
    cfg.train.eval_interval = 1000;
    cfg.train.sample_interval = 0;
    let tmp = tempfile::tempdir().unwrap();
    let report = train_vae(VaeTrainJob {
        out: tmp.path().join("run"),
        preset: "mnist-mlp".into(),
        config: cfg,
        on_existing: OnExisting::Refuse,
        device: Device::Cpu,
    })
    .unwrap();
    // An untrained decoder costs 784 * ln 2 ~ 543 nats per image; a memorised batch of 16
    // digits far less.
    assert!(report.train_loss < 150.0, "loss {}", report.train_loss);
    assert!(tmp.path().join("run/samples/step_000300.png").is_file());
}

#[test]
fn resume_equals_uninterrupted() {
    let mut cfg = tiny_config();
    cfg.train.epochs = 3; // 4 steps per epoch, evaluation and checkpoint after each
    cfg.objective.train_noise = 0.2; // the corruption noise must resume too
    cfg.train.sample_interval = 5;
    let tmp = tempfile::tempdir().unwrap();
    let job = |out: &str, config: VaeRunConfig, on_existing| VaeTrainJob {
        out: tmp.path().join(out),
        preset: "mnist-mlp".into(),
        config,
        on_existing,
        device: Device::Cpu,
    };
    let full = train_vae(job("full", cfg.clone(), OnExisting::Refuse)).unwrap();
    let mut first = cfg.clone();
    first.train.max_steps = 6; // stops mid-epoch 2; the checkpoint is at the end of the run
    train_vae(job("split", first, OnExisting::Refuse)).unwrap();
    let resumed = train_vae(job("split", cfg.clone(), OnExisting::Resume)).unwrap();
    assert_eq!(full.steps, 12);
    assert_eq!(resumed.steps, 12);
    assert_eq!(
        crate::common::run_weights(&tmp.path().join("full")),
        crate::common::run_weights(&tmp.path().join("split"))
    );
    assert_eq!(full.test.loss, resumed.test.loss);
}

#[test]
fn hand_written_mlp_step_matches_autograd() {
    use muse_core::nn::conv::torch_default_init;
    use muse_core::nn::init_varmap;
    let cfg = VaeConfig {
        image_size: 6,
        hidden: 24,
        latent: 5,
        ..VaeConfig::mnist_mlp()
    };
    let varmap = VarMap::new();
    let model = Vae::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_varmap(&varmap, 3, torch_default_init(&varmap)).unwrap();
    let target = Tensor::rand(0f32, 1f32, (9, 1, 6, 6), &Device::Cpu).unwrap();
    let x_in =
        (&target + Tensor::rand(-0.2f32, 0.2f32, (9, 1, 6, 6), &Device::Cpu).unwrap()).unwrap();
    let eps = standard_normal((9, 5), 4, 0, &Device::Cpu).unwrap();
    for beta in [1.0, 3.0] {
        let (bce, kl, fused) = model.loss_and_grads(&x_in, &target, &eps, beta).unwrap();
        let (bce_a, kl_a, auto) = model
            .loss_and_grads_autograd(&x_in, &target, &eps, beta)
            .unwrap();
        assert!(
            (bce - bce_a).abs() < 1e-4 * bce_a.abs(),
            "bce {bce} vs {bce_a}"
        );
        assert!(
            (kl - kl_a).abs() < 1e-4 * kl_a.abs().max(1.0),
            "kl {kl} vs {kl_a}"
        );
        let data = varmap.data().lock().unwrap();
        for (name, var) in data.iter() {
            let a = vec(fused.get(var.as_tensor()).unwrap());
            let b = vec(auto.get(var.as_tensor()).unwrap());
            close(&a, &b, 1e-4, &format!("beta {beta}: {name}"));
        }
    }
}

#[test]
fn parameter_counts_match_the_built_models() {
    for cfg in [
        VaeConfig::mnist_mlp(),
        VaeConfig::mnist_conv(),
        VaeConfig::mnist_spatial(),
    ] {
        let varmap = VarMap::new();
        Vae::new(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let built: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(cfg.parameter_count(), built, "{:?}", cfg.arch);
    }
    // The spatial VAE's latent is a 4 x 8 x 8 grid of a 28x28 image padded to 32.
    let s = VaeConfig::mnist_spatial();
    assert_eq!((s.latent_grid(), s.latent_dim()), (Some((4, 8)), 256));
}
