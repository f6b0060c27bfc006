//! Latent diffusion: the latent scale, a tiny ldm-mnist run on the latents of a tiny
//! spatial-latent VAE (resume = uninterrupted, the VAE copied into the run, samples decoded to
//! the data's size), and the bad inputs (no VAE, a VAE without a latent grid, a VAE of other
//! images, an init image).

use std::path::Path;

use candle_core::{Device, Tensor};
use muse_core::models::diffusion::{UNetConfig, unit_variance_scale};
use muse_core::run_dir::OnExisting;
use muse_core::sample::diffusion::{
    Conditioning, DiffusionRun, ImageSpace, SampleOptions, open_diffusion, sample,
};
use muse_core::train::diffusion::{
    DiffusionRunConfig, DiffusionTrainJob, LATENT_COND_STEPS, train_diffusion,
};
use muse_core::train::vae::{VaeRunConfig, VaeTrainJob, train_vae};

use crate::common::dataset;

/// Two images sampled from `run` with `opts`, decoded.
fn two_images(run: &DiffusionRun, opts: &SampleOptions) -> Tensor {
    let out = sample(&run.model, &run.space, &run.schedule, 2, opts, &Device::Cpu);
    out.unwrap().images
}

/// A spatial-latent VAE trained for a few steps on 64 MNIST digits (or any other preset).
fn tiny_vae(out: &Path, preset: &str) {
    let mut cfg = VaeRunConfig::preset(preset).unwrap();
    cfg.data.dataset = dataset("mnist").display().to_string();
    (cfg.data.train_limit, cfg.data.test_limit) = (64, 16);
    (cfg.model.conv_channels, cfg.model.hidden) = (4, 16);
    cfg.train.batch_size = 16;
    cfg.train.epochs = 1;
    (cfg.train.log_interval, cfg.train.sample_interval) = (1000, 0);
    cfg.sample.n = 4;
    train_vae(VaeTrainJob {
        out: out.to_path_buf(),
        preset: preset.into(),
        config: cfg,
        on_existing: OnExisting::Refuse,
        device: Device::Cpu,
    })
    .unwrap();
}

fn ldm_job(out: &Path, vae: &Path, steps: usize, on_existing: OnExisting) -> DiffusionTrainJob {
    ldm_preset_job("ldm-mnist", out, vae, steps, on_existing)
}

/// A tiny run of a latent preset on 64 MNIST digits.
fn ldm_preset_job(
    preset: &str,
    out: &Path,
    vae: &Path,
    steps: usize,
    on_existing: OnExisting,
) -> DiffusionTrainJob {
    let mut cfg = DiffusionRunConfig::preset(preset).unwrap();
    cfg.latent.as_mut().unwrap().vae = vae.display().to_string();
    cfg.model = UNetConfig {
        channels: [8, 8, 8],
        time_dim: 8,
        temb_dim: 16,
        groups: 4,
        heads: 2,
        ..cfg.model
    };
    cfg.data.dataset = dataset("mnist").display().to_string();
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
fn the_latent_scale_gives_unit_variance() {
    let dev = Device::Cpu;
    // mu ~ N(3, 2^2) per value and sigma = 1.5: Var[z] = 4 + 2.25, so the scale is 1 / 2.5.
    let mu = ((Tensor::randn(0f32, 1f32, (4000, 4), &dev).unwrap() * 2.0).unwrap() + 3.0).unwrap();
    let std = Tensor::full(1.5f32, (4000, 4), &dev).unwrap();
    let s = unit_variance_scale(&mu, &std).unwrap();
    assert!((s - 0.4).abs() < 0.01, "scale {s}");
    // A VAE whose latents do not move has no scale.
    let flat = Tensor::zeros((10, 4), candle_core::DType::F32, &dev).unwrap();
    assert!(unit_variance_scale(&flat, &flat).is_err());
}

#[test]
fn the_conditional_latent_presets_are_the_latent_unet_with_labels() {
    for (name, dataset) in [
        ("ldm-mnist-cond", "mnist"),
        ("ldm-fashion-cond", "fashion-mnist"),
    ] {
        let cfg = DiffusionRunConfig::preset(name).unwrap();
        assert_eq!(cfg.data.dataset, dataset);
        assert!(cfg.latent.is_some(), "{name}");
        assert_eq!(
            (cfg.model.channels, cfg.model.n_classes),
            (UNetConfig::latent8().channels, 10)
        );
        assert_eq!(cfg.label_dropout, 0.1);
        assert_eq!(cfg.train.max_steps, LATENT_COND_STEPS);
    }
}

#[test]
fn a_class_conditional_latent_run_samples_the_asked_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let vae = tmp.path().join("vae");
    tiny_vae(&vae, "mnist-latent");
    let run_dir = tmp.path().join("cond");
    train_diffusion(ldm_preset_job(
        "ldm-mnist-cond",
        &run_dir,
        &vae,
        3,
        OnExisting::Refuse,
    ))
    .unwrap();
    let run = open_diffusion(&run_dir, &Device::Cpu).unwrap();
    assert!(matches!(run.space, ImageSpace::Latent(_)));
    assert_eq!(run.model.config().n_classes, 10);
    let draw = |labels: Vec<u32>| {
        let mut opts = SampleOptions::ddim(3, 7);
        (opts.condition, opts.guidance) = (Conditioning::Labels(labels), 3.0);
        two_images(&run, &opts)
    };
    let guided = draw(vec![3, 7]);
    assert_eq!(guided.dims(), &[2, 1, 28, 28]);
    // The label reaches the decoded images: other labels, other pictures from the same noise.
    let other = draw(vec![1, 1]);
    let diff = crate::common::largest_abs(&(guided - other).unwrap());
    assert!(diff > 0.0, "labels 3, 7 and 1, 1 gave the same images");
}

#[test]
fn a_latent_run_trains_resumes_and_samples_images() {
    let tmp = tempfile::tempdir().unwrap();
    let vae = tmp.path().join("vae");
    tiny_vae(&vae, "mnist-latent");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train_diffusion(ldm_job(&a, &vae, 5, OnExisting::Refuse)).unwrap();
    train_diffusion(ldm_job(&b, &vae, 4, OnExisting::Refuse)).unwrap();
    // The VAE run may move away once the run has its copy.
    std::fs::rename(&vae, tmp.path().join("moved")).unwrap();
    let report = train_diffusion(ldm_job(&b, &vae, 5, OnExisting::Resume)).unwrap();
    assert_eq!(report.steps, 5);
    let (wa, wb) = (
        crate::common::run_weights(&a),
        crate::common::run_weights(&b),
    );
    for (k, v) in &wa {
        assert_eq!(v, &wb[k], "{k} differs after resume");
    }
    // The U-Net reads the VAE's 4 x 8 x 8 grid; the scale is measured and kept.
    let unet: UNetConfig =
        serde_json::from_str(&std::fs::read_to_string(b.join("config.json")).unwrap()).unwrap();
    assert_eq!((unet.image_channels, unet.image_size), (4, 8));
    let training: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("training.json")).unwrap()).unwrap();
    let scale = training["config"]["latent"]["scale"].as_f64().unwrap();
    assert!(scale > 0.0 && scale.is_finite(), "scale {scale}");
    assert!(b.join("vae/model.safetensors").is_file());
    assert!(b.join("samples/step_000005.png").is_file());
    // Sampling decodes: images of the data's size in [0, 1], not latents.
    let run = open_diffusion(&b, &Device::Cpu).unwrap();
    assert!(matches!(run.space, ImageSpace::Latent(_)));
    let images = two_images(&run, &SampleOptions::ddim(3, 7));
    assert_eq!(images.dims(), &[2, 1, 28, 28]);
    let v = images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(v.iter().all(|p| (0.0..=1.0).contains(p)));
    // Image-to-image works on pixels only.
    let mut with_init = SampleOptions::ddim(3, 7);
    with_init.guide = Some(muse_core::sample::diffusion::ImageGuide {
        x0: Tensor::zeros((1, 1, 28, 28), candle_core::DType::F32, &Device::Cpu).unwrap(),
        strength: 0.5,
        keep: None,
    });
    let e = sample(
        &run.model,
        &run.space,
        &run.schedule,
        1,
        &with_init,
        &Device::Cpu,
    )
    .err()
    .expect("an init image is refused");
    assert!(e.to_string().contains("latent space"), "{e}");
}

#[test]
fn bad_vaes_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // No VAE given.
    let mut job = ldm_job(&out, Path::new(""), 2, OnExisting::Refuse);
    job.config.latent.as_mut().unwrap().vae.clear();
    let e = train_diffusion(job).err().expect("no VAE").to_string();
    assert!(e.contains("--set vae=RUN"), "{e}");
    // A folder that holds no VAE.
    let e = train_diffusion(ldm_job(&out, tmp.path(), 2, OnExisting::Refuse))
        .err()
        .expect("not a VAE")
        .to_string();
    assert!(e.contains("vae=") && e.contains("config.json"), "{e}");
    // A VAE whose latent is a vector.
    let conv = tmp.path().join("conv");
    tiny_vae(&conv, "mnist-conv");
    let e = train_diffusion(ldm_job(&out, &conv, 2, OnExisting::Refuse))
        .err()
        .expect("a latent vector")
        .to_string();
    assert!(e.contains("latent grid"), "{e}");
    // A VAE of other images: its convolutions load at any size, its config says 32x32.
    let spatial = tmp.path().join("spatial");
    tiny_vae(&spatial, "mnist-latent");
    let cfg_path = spatial.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(
        &cfg_path,
        text.replace("\"image_size\": 28", "\"image_size\": 32"),
    )
    .unwrap();
    let e = ldm_job(&out, &spatial, 2, OnExisting::Refuse);
    let e = train_diffusion(e).err().expect("other images").to_string();
    assert!(e.contains("the VAE reads 1x32x32"), "{e}");
    assert!(!out.join("model.safetensors").exists());
}
