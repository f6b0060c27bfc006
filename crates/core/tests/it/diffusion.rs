//! The diffusion family: GroupNorm and the tiny U-Net (values and gradients) against PyTorch,
//! noise schedules and one step of each sampler against diffusers (fixtures by
//! scripts/fixtures/diffusion.py), the guidance formula, upsampling's gradient, the U-Net
//! overfitting one batch, sampling determinism, and resume = uninterrupted.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use muse_core::models::diffusion::{UNet, UNetConfig, UNetInit};
use muse_core::nn::{group_norm::group_norm, upsample_nearest2x};
use muse_core::sample::diffusion::{
    NoiseSchedule, Spacing, ddim_step, ddpm_step, guided_eps, timesteps,
};
use serde_json::Value;

use crate::common::fixture;

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Max |a - b| <= tol * (1 + max |b|).
fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = 1.0 + b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        worst <= tol * scale,
        "{what}: max diff {worst} (scale {scale})"
    );
}

fn tiny_fixture() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("ddpm_unet_tiny.safetensors"), &Device::Cpu).unwrap()
}

fn tiny_config() -> UNetConfig {
    UNetConfig {
        image_size: 8,
        channels: [8, 8, 8],
        time_dim: 8,
        temb_dim: 16,
        groups: 4,
        heads: 4,
        n_classes: 3,
        ..UNetConfig::ddpm28()
    }
}

#[test]
fn group_norm_matches_pytorch() {
    let f = tiny_fixture();
    let x = Var::from_tensor(&f["gn.x"]).unwrap();
    let w = Var::from_tensor(&f["gn.weight"]).unwrap();
    let b = Var::from_tensor(&f["gn.bias"]).unwrap();
    let y = group_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 4, 1e-5).unwrap();
    assert_close(&vec(&y), &vec(&f["gn.y"]), 1e-5, "output");
    let grads = (y * &f["gn.r"])
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (v, name) in [
        (&x, "gn.grad_x"),
        (&w, "gn.grad_weight"),
        (&b, "gn.grad_bias"),
    ] {
        let g = grads.get(v.as_tensor()).unwrap();
        assert_close(&vec(g), &vec(&f[name]), 1e-5, name);
    }
}

#[test]
fn fused_group_norm_silu_matches_composed() {
    use muse_core::nn::ops::group_norm::{group_norm_act, reference_group_norm};
    let dev = Device::Cpu;
    for (shape, groups) in [((3, 8, 5, 7), 4), ((2, 16, 7, 7), 8), ((1, 6, 1, 1), 3)] {
        let n: usize = [shape.0, shape.1, shape.2, shape.3].iter().product();
        let x = Var::from_tensor(
            &(muse_core::nn::noise::standard_normal(shape, 1, 0, &dev).unwrap() * 2.0)
                .unwrap()
                .affine(1.0, 0.3)
                .unwrap(),
        )
        .unwrap();
        let w =
            Var::from_tensor(&muse_core::nn::noise::standard_normal(shape.1, 2, 0, &dev).unwrap())
                .unwrap();
        let b =
            Var::from_tensor(&muse_core::nn::noise::standard_normal(shape.1, 3, 0, &dev).unwrap())
                .unwrap();
        let r = muse_core::nn::noise::standard_normal(shape, 4, 0, &dev).unwrap();
        assert_eq!(r.elem_count(), n);
        for silu in [false, true] {
            let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
            let fused = group_norm_act(xt, wt, bt, groups, 1e-5, silu).unwrap();
            let mut composed = reference_group_norm(xt, wt, bt, groups, 1e-5).unwrap();
            if silu {
                composed = composed.silu().unwrap();
            }
            let what = format!("{shape:?} silu={silu}");
            assert_close(&vec(&fused), &vec(&composed), 1e-5, &what);
            let gf = (&fused * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gc = (&composed * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (v, name) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
                let (a, c) = (
                    gf.get(v.as_tensor()).unwrap(),
                    gc.get(v.as_tensor()).unwrap(),
                );
                assert_close(&vec(a), &vec(c), 1e-4, &format!("{what} {name}"));
            }
        }
    }
}

#[test]
fn unet_matches_pytorch_values_and_gradients() {
    let f = tiny_fixture();
    let weights: HashMap<String, Tensor> = f
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("model.")?.to_string(), v.clone())))
        .collect();
    // As variables, so that the backward pass reaches them.
    let vars: HashMap<String, Var> = weights
        .iter()
        .map(|(k, v)| (k.clone(), Var::from_tensor(v).unwrap()))
        .collect();
    let tensors = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let net = UNet::new(&tiny_config(), vb).unwrap();
    let labels = f["labels"].to_dtype(DType::U32).unwrap();
    let eps = net.forward(&f["x"], &f["t"], Some(&labels)).unwrap();
    assert_close(&vec(&eps), &vec(&f["eps"]), 1e-4, "eps");
    let loss = (eps - &f["target"])
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    assert_close(&vec(&loss), &vec(&f["loss"]), 1e-5, "loss");
    let grads = loss.backward().unwrap();
    let mut checked = 0;
    for (k, want) in &f {
        let Some(name) = k.strip_prefix("grad.") else {
            continue;
        };
        let got = grads.get(vars[name].as_tensor()).unwrap();
        assert_close(&vec(got), &vec(want), 2e-4, name);
        checked += 1;
    }
    assert!(checked >= 20, "{checked} gradients checked");
}

/// The fused upsampling against the composed broadcast and reshape it replaces: the same
/// values, and the same input gradient of a random-weighted sum of the output, for odd sizes,
/// a 1x1 plane and a batch of several planes.
#[test]
fn fused_upsample_matches_the_composed_ops() {
    use muse_core::nn::ops::{reference, upsample_nearest2x as fused};
    for (dims, seed) in [((2, 3, 5, 7), 1u64), ((1, 1, 1, 1), 2), ((3, 8, 14, 14), 3)] {
        let (n, c, h, w) = dims;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, dims, &Device::Cpu).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (n, c, 2 * h, 2 * w), &Device::Cpu).unwrap();
        let run = |up: fn(&Tensor) -> candle_core::Result<Tensor>| {
            let y = up(x.as_tensor()).unwrap();
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            (vec(&y), vec(g.get(x.as_tensor()).unwrap()))
        };
        let (y, dx) = run(fused);
        let (y_ref, dx_ref) = run(reference::upsample_nearest2x);
        assert_eq!(y, y_ref, "values, case {seed}");
        assert_close(&dx, &dx_ref, 1e-6, &format!("input gradient, case {seed}"));
    }
}

#[test]
fn upsample_nearest2x_matches_and_sums_gradients() {
    let x = Var::from_tensor(
        &Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 3, 2, 2))
            .unwrap(),
    )
    .unwrap();
    let y = upsample_nearest2x(x.as_tensor()).unwrap();
    let want = x.as_tensor().upsample_nearest2d(4, 4).unwrap();
    assert_eq!(vec(&y), vec(&want));
    // Used twice: the gradients of both uses add up (candle's own op overwrites one).
    let r = Tensor::arange(0f32, 48.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 3, 4, 4))
        .unwrap();
    let loss = ((&y * &r).unwrap().sum_all().unwrap() + x.as_tensor().sum_all().unwrap()).unwrap();
    let g = loss.backward().unwrap();
    let got = vec(g.get(x.as_tensor()).unwrap());
    let rv = vec(&r);
    for c in 0..3 {
        for i in 0..2 {
            for j in 0..2 {
                let s: f32 = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(di, dj)| rv[c * 16 + (2 * i + di) * 4 + 2 * j + dj])
                    .sum();
                assert_eq!(got[c * 4 + i * 2 + j], s + 1.0);
            }
        }
    }
}

fn schedulers() -> Value {
    let text = std::fs::read_to_string(fixture("diffusion_schedulers.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn schedule(name: &str) -> NoiseSchedule {
    match name {
        "linear" => NoiseSchedule::linear(1000, 1e-4, 0.02),
        "squaredcos_cap_v2" => NoiseSchedule::cosine(1000),
        _ => unreachable!(),
    }
}

fn tensor(v: &Value) -> Tensor {
    Tensor::from_vec(floats(v), (2, 1, 4, 4), &Device::Cpu).unwrap()
}

#[test]
fn schedules_match_diffusers() {
    let f = schedulers();
    for name in ["linear", "squaredcos_cap_v2"] {
        let s = schedule(name);
        let want = &f["schedules"][name];
        let betas: Vec<f32> = s.betas.iter().map(|&b| b as f32).collect();
        let abar: Vec<f32> = s.alphas_cumprod.iter().map(|&b| b as f32).collect();
        // diffusers works in f32, Muse in f64: the cumulative product drifts by ~1e-6.
        assert_close(&betas, &floats(&want["betas"]), 1e-6, name);
        assert_close(&abar, &floats(&want["alphas_cumprod"]), 5e-6, name);
    }
}

#[test]
fn ddim_timesteps_match_diffusers() {
    let f = schedulers();
    for (spacing, name) in [
        (Spacing::Leading, "leading"),
        (Spacing::Trailing, "trailing"),
    ] {
        let got: Vec<u64> = timesteps(1000, 50, spacing)
            .iter()
            .map(|&(t, _)| t as u64)
            .collect();
        let want: Vec<u64> = f["ddim_timesteps"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{name}");
    }
    // Full DDPM: every step, to the previous one, the last to the clean image.
    let all = timesteps(1000, 1000, Spacing::Leading);
    assert_eq!(all[0], (999, Some(998)));
    assert_eq!(all[999], (0, None));
}

#[test]
fn ddpm_step_matches_diffusers() {
    let f = schedulers();
    let cases = f["ddpm"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let s = schedule(c["schedule"].as_str().unwrap());
        let t = c["t"].as_u64().unwrap() as usize;
        let clip = c["clip"].as_bool().unwrap();
        let out = ddpm_step(
            &s,
            &tensor(&c["eps"]),
            t,
            t.checked_sub(1),
            &tensor(&c["x"]),
            &tensor(&c["noise"]),
            clip,
        )
        .unwrap();
        let what = format!("ddpm {} t={t} clip={clip}", c["schedule"]);
        assert_close(&vec(&out.x0), &floats(&c["x0"]), 2e-5, &what);
        assert_close(&vec(&out.prev), &floats(&c["prev"]), 2e-5, &what);
    }
}

#[test]
fn ddim_step_matches_diffusers() {
    let f = schedulers();
    let cases = f["ddim"].as_array().unwrap();
    assert!(cases.len() >= 16);
    for c in cases {
        let s = schedule(c["schedule"].as_str().unwrap());
        let spacing = match c["spacing"].as_str().unwrap() {
            "leading" => Spacing::Leading,
            _ => Spacing::Trailing,
        };
        let t = c["t"].as_u64().unwrap() as usize;
        let prev = timesteps(1000, 50, spacing)
            .into_iter()
            .find(|&(u, _)| u == t)
            .unwrap()
            .1;
        let (eta, clip) = (c["eta"].as_f64().unwrap(), c["clip"].as_bool().unwrap());
        let out = ddim_step(
            &s,
            &tensor(&c["eps"]),
            t,
            prev,
            &tensor(&c["x"]),
            eta,
            &tensor(&c["noise"]),
            clip,
        )
        .unwrap();
        let what = format!(
            "ddim {} {spacing:?} t={t} eta={eta} clip={clip}",
            c["schedule"]
        );
        assert_close(&vec(&out.x0), &floats(&c["x0"]), 2e-5, &what);
        assert_close(&vec(&out.prev), &floats(&c["prev"]), 2e-5, &what);
    }
}

#[test]
fn guidance_combines_conditional_and_unconditional() {
    let dev = Device::Cpu;
    let u = Tensor::new(&[1f32, -2.0, 0.5], &dev).unwrap();
    let c = Tensor::new(&[3f32, 0.0, 0.5], &dev).unwrap();
    assert_eq!(vec(&guided_eps(&u, &c, 0.0).unwrap()), vec(&u));
    assert_eq!(vec(&guided_eps(&u, &c, 1.0).unwrap()), vec(&c));
    // eps_u + 3 (eps_c - eps_u)
    assert_eq!(vec(&guided_eps(&u, &c, 3.0).unwrap()), vec![7.0, 4.0, 0.5]);
}

fn small_config(n_classes: usize) -> UNetConfig {
    UNetConfig {
        heads: 2,
        n_classes,
        ..tiny_config()
    }
}

#[test]
fn unet_overfits_one_batch() {
    use candle_nn::VarMap;
    use muse_core::train::AdamW;
    use muse_core::train::diffusion::fresh_weights;
    use muse_core::train::images::EpochConfig;

    let dev = Device::Cpu;
    let cfg = small_config(3);
    let varmap = VarMap::new();
    let net = UNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    fresh_weights(&varmap, 7, UNetInit::default()).unwrap();
    let mut ec = EpochConfig::adam_mnist(1);
    ec.lr = 3e-3;
    let mut opt = AdamW::new(&varmap, &ec.optimizer_config(300)).unwrap();
    // One fixed batch of (x_t, t, label, eps): the network must learn to predict this eps.
    let s = NoiseSchedule::linear(1000, 1e-4, 0.02);
    let x0 = muse_core::nn::noise::standard_normal((4, 1, 8, 8), 1, 0, &dev)
        .unwrap()
        .tanh()
        .unwrap();
    let eps = muse_core::nn::noise::standard_normal((4, 1, 8, 8), 2, 0, &dev).unwrap();
    let ts = [10usize, 250, 600, 900];
    let coef = |f: &dyn Fn(f64) -> f64| {
        let v: Vec<f32> = ts.iter().map(|&t| f(s.alphas_cumprod[t]) as f32).collect();
        Tensor::from_vec(v, (4, 1, 1, 1), &dev).unwrap()
    };
    let xt = (x0.broadcast_mul(&coef(&|a| a.sqrt())).unwrap()
        + eps.broadcast_mul(&coef(&|a| (1.0 - a).sqrt())).unwrap())
    .unwrap();
    let t = Tensor::new(&[10f32, 250.0, 600.0, 900.0], &dev).unwrap();
    let labels = Tensor::new(&[0u32, 1, 2, 3], &dev).unwrap();
    let mut losses = Vec::new();
    for _ in 0..300 {
        let pred = net.forward(&xt, &t, Some(&labels)).unwrap();
        let loss = (pred - &eps).unwrap().sqr().unwrap().mean_all().unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let g = opt.grads(&loss.backward().unwrap());
        opt.step(&g, 3e-3).unwrap();
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last * 10.0 < first, "loss fell only from {first} to {last}");
}

#[test]
fn sampling_is_deterministic_and_checks_labels() {
    use candle_nn::VarMap;
    use muse_core::sample::diffusion::{ImageSpace, SampleOptions, Sampler, record_points, sample};

    let dev = Device::Cpu;
    let cfg = small_config(3);
    let varmap = VarMap::new();
    let net = UNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    muse_core::train::diffusion::fresh_weights(&varmap, 3, UNetInit::default()).unwrap();
    let s = NoiseSchedule::cosine(100);
    let mut opts = SampleOptions::ddim(10, 5);
    opts.condition = muse_core::sample::diffusion::Conditioning::Labels(vec![0, 1, 2]);
    opts.guidance = 3.0;
    opts.record = record_points(10, 4);
    assert_eq!(opts.record, vec![2, 4, 7, 9]);
    let a = sample(&net, &ImageSpace::Pixels, &s, 3, &opts, &dev).unwrap();
    let b = sample(&net, &ImageSpace::Pixels, &s, 3, &opts, &dev).unwrap();
    assert_eq!(vec(&a.images), vec(&b.images));
    assert_eq!(a.images.dims(), &[3, 1, 8, 8]);
    assert_eq!(a.trajectory.len(), 4);
    // The last recorded point is the final image.
    assert_eq!(vec(&a.trajectory[3].x), vec(&a.images));
    let v = vec(&a.images);
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    // DDPM with noise differs from deterministic DDIM, but repeats for a seed.
    opts.sampler = Sampler::Ddpm;
    let c = sample(&net, &ImageSpace::Pixels, &s, 3, &opts, &dev).unwrap();
    assert_ne!(vec(&c.images), v);
    assert_eq!(
        vec(&c.images),
        vec(&sample(&net, &ImageSpace::Pixels, &s, 3, &opts, &dev)
            .unwrap()
            .images)
    );
    // Guidance 0 is the unconditional model (one call on the "no label" row): the labels
    // asked make no difference, and the images are those of the two-call formula to rounding.
    opts.sampler = Sampler::Ddim { eta: 0.0 };
    opts.guidance = 0.0;
    let u = vec(&sample(&net, &ImageSpace::Pixels, &s, 3, &opts, &dev)
        .unwrap()
        .images);
    opts.condition = muse_core::sample::diffusion::Conditioning::Labels(vec![2, 2, 0]);
    assert_eq!(
        vec(&sample(&net, &ImageSpace::Pixels, &s, 3, &opts, &dev)
            .unwrap()
            .images),
        u
    );
    opts.guidance = 1e-12;
    let near_zero = vec(&sample(&net, &ImageSpace::Pixels, &s, 3, &opts, &dev)
        .unwrap()
        .images);
    assert_close(
        &near_zero,
        &u,
        1e-4,
        "guidance 0 against the guided formula",
    );
    opts.guidance = 3.0;
    // Bad requests are errors, not panics.
    opts.condition = muse_core::sample::diffusion::Conditioning::Labels(vec![0, 3, 1]);
    assert!(
        sample(&net, &ImageSpace::Pixels, &s, 3, &opts, &dev).is_err(),
        "label 3 of 3 classes"
    );
    opts.condition = muse_core::sample::diffusion::Conditioning::Labels(vec![0, 1, 2]);
    opts.steps = 101;
    assert!(
        sample(&net, &ImageSpace::Pixels, &s, 3, &opts, &dev).is_err(),
        "more steps than T"
    );
}

fn mnist_job(
    out: &std::path::Path,
    steps: usize,
    on_existing: muse_core::run_dir::OnExisting,
    preset: &str,
) -> muse_core::train::diffusion::DiffusionTrainJob {
    use muse_core::train::diffusion::{DiffusionRunConfig, DiffusionTrainJob};
    let mut cfg = DiffusionRunConfig::preset(preset).unwrap();
    cfg.model = small_config(cfg.model.n_classes);
    cfg.data.dataset = crate::common::dataset("mnist").display().to_string();
    (cfg.data.train_limit, cfg.data.test_limit) = (64, 16);
    cfg.train.batch_size = 8;
    cfg.train.max_steps = steps;
    (
        cfg.train.eval_interval,
        cfg.train.sample_interval,
        cfg.train.log_interval,
    ) = (2, 2, 1);
    (cfg.sample.n, cfg.sample.nrow, cfg.sample.steps) = (4, 2, 3);
    DiffusionTrainJob {
        out: out.to_path_buf(),
        preset: preset.into(),
        config: cfg,
        on_existing,
        device: Device::Cpu,
    }
}

#[test]
fn resume_equals_uninterrupted() {
    use muse_core::run_dir::OnExisting;
    use muse_core::train::diffusion::train_diffusion;
    for preset in ["ddpm-mnist", "ddpm-mnist-cond"] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        train_diffusion(mnist_job(&a, 5, OnExisting::Refuse, preset)).unwrap();
        // Stopped at an evaluation step, so its closing evaluation is the one the
        // uninterrupted run logs there.
        train_diffusion(mnist_job(&b, 4, OnExisting::Refuse, preset)).unwrap();
        let report = train_diffusion(mnist_job(&b, 5, OnExisting::Resume, preset)).unwrap();
        assert_eq!(report.steps, 5);
        let (wa, wb) = (
            crate::common::run_weights(&a),
            crate::common::run_weights(&b),
        );
        assert_eq!(wa.len(), wb.len());
        assert!(wa.keys().any(|k| k.starts_with("ema.")), "the EMA is saved");
        for (k, v) in &wa {
            assert_eq!(v, &wb[k], "{preset}: {k} differs after resume");
        }
        // The EMA moved away from the weights it averages.
        assert_ne!(wa["ema.out.weight"], wa["out.weight"]);
        let strip = |dir: &std::path::Path| -> Vec<serde_json::Value> {
            muse_core::train::metrics::read_metrics(&dir.join("metrics.jsonl"))
                .unwrap()
                .into_iter()
                .map(|mut r| {
                    r.as_object_mut().unwrap().remove("ms");
                    r
                })
                .collect()
        };
        assert_eq!(strip(&a), strip(&b), "{preset}: metrics differ");
        for f in [
            "config.json",
            "training.json",
            "MODEL_CARD.md",
            "loss.svg",
            "samples/step_000004.png",
            "samples/step_000005.png",
        ] {
            assert!(b.join(f).is_file(), "{preset}: {f} missing");
        }
        // The run opens for sampling, with its schedule and EMA weights.
        let run = muse_core::sample::diffusion::open_diffusion(&b, &Device::Cpu).unwrap();
        assert_eq!(run.schedule.len(), 1000);
        assert_eq!(run.model.config().conditional(), preset.ends_with("cond"));
    }
}

/// The class embedding starts at the scale the run asks for (`class_embedding_std`). At the
/// default N(0, 1) (`nn.Embedding`'s), two labels of a fresh ddpm-mnist-cond U-Net lie
/// further apart than the time embeddings of t = 0 and t = 100; at 0.02 they lie closer. That
/// balance decides between speckled backgrounds and labels that matter (docs/diffusion.md).
#[test]
fn the_class_embedding_starts_at_the_asked_scale() {
    use candle_nn::VarMap;
    use muse_core::models::diffusion::Condition;

    let dev = Device::Cpu;
    let cfg = UNetConfig::ddpm28_cond(10);
    let gaps = |class_std: f64| {
        let varmap = VarMap::new();
        let net = UNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
        let init = UNetInit {
            class_std,
            ..UNetInit::default()
        };
        muse_core::train::diffusion::fresh_weights(&varmap, 7, init).unwrap();
        let row = |t: f32, label: u32| {
            let t = Tensor::new(&[t], &dev).unwrap();
            let l = Tensor::new(&[label], &dev).unwrap();
            vec(&net.embed(&t, Condition::Labels(&l)).unwrap())
        };
        let dist = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f32>()
                .sqrt()
        };
        let time_gap = dist(&row(0.0, 3), &row(100.0, 3));
        let label_gap = dist(&row(0.0, 3), &row(0.0, 8));
        (label_gap, time_gap)
    };
    let (label, time) = gaps(1.0);
    assert!(
        label > 5.0 * time,
        "N(0, 1): labels {label} apart, times {time}"
    );
    let (label, time) = gaps(0.02);
    assert!(
        label < time,
        "N(0, 0.02): labels {label} apart, times {time}"
    );
}
