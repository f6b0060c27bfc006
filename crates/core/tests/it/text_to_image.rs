//! Text-to-image diffusion: the U-Net reads its prompt (it fits targets that differ only in
//! their text), a tinted, captioned run resumes bit for bit, and sampling from a prompt is
//! deterministic and checked against the model.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use muse_core::models::diffusion::{Condition, TextPooling, UNet, UNetConfig, UNetInit};
use muse_core::nn::TextContext;
use muse_core::nn::noise::standard_normal;

fn text_config() -> UNetConfig {
    UNetConfig {
        image_size: 8,
        channels: [8, 8, 8],
        time_dim: 8,
        temb_dim: 16,
        groups: 4,
        heads: 2,
        context_dim: 6,
        ..UNetConfig::ddpm28()
    }
}

/// Rows 0 and 1 (and 2 and 3) have the same x_t and t but different texts and different noise
/// targets: a model that ignored the text could not get below half the starting loss. Both
/// ways of pooling the prompt for the time embedding.
#[test]
fn unet_learns_targets_that_differ_only_in_their_text() {
    for pooling in [TextPooling::Mean, TextPooling::Unit] {
        fits_targets_that_differ_only_in_their_text(pooling);
    }
}

fn fits_targets_that_differ_only_in_their_text(text_pooling: TextPooling) {
    use muse_core::train::AdamW;
    use muse_core::train::diffusion::fresh_weights;
    use muse_core::train::images::EpochConfig;

    let dev = Device::Cpu;
    let cfg = UNetConfig {
        text_pooling: Some(text_pooling),
        ..text_config()
    };
    let varmap = VarMap::new();
    let net = UNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    fresh_weights(&varmap, 7, UNetInit::default()).unwrap();
    let mut ec = EpochConfig::adam_mnist(1);
    ec.lr = 3e-3;
    let mut opt = AdamW::new(&varmap, &ec.optimizer_config(300)).unwrap();
    let pair = standard_normal((2, 1, 8, 8), 1, 0, &dev).unwrap();
    let xt = Tensor::cat(&[&pair.narrow(0, 0, 1).unwrap(); 2], 0).unwrap();
    let xt = Tensor::cat(
        &[
            &xt,
            &Tensor::cat(&[&pair.narrow(0, 1, 1).unwrap(); 2], 0).unwrap(),
        ],
        0,
    )
    .unwrap(); // (4, 1, 8, 8): rows 0 = 1, 2 = 3
    let t = Tensor::new(&[300f32, 300.0, 700.0, 700.0], &dev).unwrap();
    let eps = standard_normal((4, 1, 8, 8), 2, 0, &dev).unwrap();
    // Four texts of different lengths (padding masked out).
    let states = standard_normal((4, 5, 6), 3, 0, &dev).unwrap();
    let mask = Tensor::new(
        &[
            [1f32, 1., 1., 0., 0.],
            [1., 1., 1., 1., 1.],
            [1., 1., 0., 0., 0.],
            [1., 1., 1., 1., 0.],
        ],
        &dev,
    )
    .unwrap();
    let text = TextContext { states, mask };
    let mut losses = Vec::new();
    for _ in 0..300 {
        let pred = net.forward_with(&xt, &t, Condition::Text(&text)).unwrap();
        let loss = (pred - &eps).unwrap().sqr().unwrap().mean_all().unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let g = opt.grads(&loss.backward().unwrap());
        opt.step(&g, 3e-3).unwrap();
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last * 10.0 < first,
        "{text_pooling:?}: loss fell only from {first} to {last}"
    );
    // A text model refuses to run without text, and labels.
    let none = net.forward_with(&xt, &t, Condition::None).unwrap_err();
    assert!(none.to_string().contains("text"), "{none}");
}

/// `text_zero_init`: the text enters through zero layers, so a fresh text model gives the same
/// output whatever the prompt, while the rest of the network starts as usual.
#[test]
fn zero_text_init_starts_the_model_blind_to_the_text() {
    use muse_core::train::diffusion::fresh_weights;

    let dev = Device::Cpu;
    let cfg = text_config();
    let x = standard_normal((2, 1, 8, 8), 1, 0, &dev).unwrap();
    let t = Tensor::new(&[300f32, 700.0], &dev).unwrap();
    let mask = Tensor::ones((2, 4), DType::F32, &dev).unwrap();
    let text = |seed| TextContext {
        states: standard_normal((2, 4, 6), seed, 0, &dev).unwrap(),
        mask: mask.clone(),
    };
    let (a, b) = (text(3), text(4));
    let spread = |zero_text_outputs: bool| {
        let varmap = VarMap::new();
        let net = UNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
        let init = UNetInit {
            zero_text_outputs,
            ..UNetInit::default()
        };
        fresh_weights(&varmap, 7, init).unwrap();
        let out = |c| net.forward_with(&x, &t, Condition::Text(c)).unwrap();
        let gap = max_abs(&(out(&a) - out(&b)).unwrap());
        let zeroed: Vec<String> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| max_abs(v.as_tensor()) == 0.0)
            .map(|(k, _)| k.clone())
            .collect();
        (gap, zeroed)
    };
    let (gap, zeroed) = spread(true);
    assert_eq!(
        gap, 0.0,
        "the prompt changed a zero-initialised model's output"
    );
    let mut zeroed = zeroed;
    zeroed.sort();
    for name in [
        "text_emb.weight",
        "mx.out.weight",
        "d2x.1.out.bias",
        "u2x.0.out.weight",
    ] {
        assert!(
            zeroed.iter().any(|z| z == name),
            "{name} is not zero: {zeroed:?}"
        );
    }
    assert!(
        zeroed
            .iter()
            .all(|z| z.contains("text_emb") || z.contains(".out.") || z.ends_with("bias")),
        "something else starts at zero: {zeroed:?}"
    );
    let (gap, _) = spread(false);
    assert!(
        gap > 1e-4,
        "a default-initialised model ignores the prompt ({gap})"
    );
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

fn t2i_job(
    out: &std::path::Path,
    steps: usize,
    on_existing: muse_core::run_dir::OnExisting,
) -> muse_core::train::diffusion::DiffusionTrainJob {
    use muse_core::train::diffusion::{DiffusionRunConfig, DiffusionTrainJob};
    let mut cfg = DiffusionRunConfig::preset("t2i-mnist").unwrap();
    cfg.model = UNetConfig {
        context_dim: 384,
        ..text_config()
    };
    cfg.data.dataset = crate::common::dataset("mnist").display().to_string();
    (
        cfg.data.image_size,
        cfg.data.train_limit,
        cfg.data.test_limit,
    ) = (8, 64, 16);
    cfg.text.as_mut().unwrap().encoder = crate::common::dataset("all-minilm-l6-v2")
        .display()
        .to_string();
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
        preset: "t2i-mnist".into(),
        config: cfg,
        on_existing,
        device: Device::Cpu,
    }
}

#[test]
fn text_to_image_run_resumes_exactly_and_samples_from_a_prompt() {
    use muse_core::embed::SentenceEncoder;
    use muse_core::run_dir::OnExisting;
    use muse_core::sample::diffusion::{
        Conditioning, PromptStates, SampleOptions, open_diffusion, sample,
    };
    use muse_core::train::diffusion::train_diffusion;

    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train_diffusion(t2i_job(&a, 5, OnExisting::Refuse)).unwrap();
    train_diffusion(t2i_job(&b, 4, OnExisting::Refuse)).unwrap();
    train_diffusion(t2i_job(&b, 5, OnExisting::Resume)).unwrap();
    let (wa, wb) = (
        crate::common::run_weights(&a),
        crate::common::run_weights(&b),
    );
    assert!(wa.contains_key("d2x.0.kv.weight") && wa.contains_key("text_emb.weight"));
    for (k, v) in &wa {
        assert_eq!(v, &wb[k], "{k} differs after resume");
    }

    let dev = Device::Cpu;
    let run = open_diffusion(&b, &dev).unwrap();
    let cfg = run.model.config();
    assert_eq!((cfg.image_channels, cfg.context_dim), (3, 384));
    let encoder = SentenceEncoder::open(&crate::common::dataset("all-minilm-l6-v2"), &dev).unwrap();
    let prompts = vec![
        "a digit 7 in red".to_string(),
        "green number three".to_string(),
    ];
    let mut opts = SampleOptions::ddim(4, 11);
    opts.condition = Conditioning::Text(PromptStates::encode(&encoder, &prompts).unwrap());
    opts.guidance = 3.0;
    let x = sample(&run.model, &run.space, &run.schedule, 2, &opts, &dev).unwrap();
    let y = sample(&run.model, &run.space, &run.schedule, 2, &opts, &dev).unwrap();
    assert_eq!(x.images.dims(), &[2, 3, 8, 8]);
    let d = (&x.images - &y.images)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "same seed, same images");
    // Guidance 1 is the prompted model alone; a different prompt changes the images.
    opts.guidance = 1.0;
    let one = sample(&run.model, &run.space, &run.schedule, 2, &opts, &dev).unwrap();
    let prompts2 = vec![
        "a digit 7 in blue".to_string(),
        "purple number eight".to_string(),
    ];
    opts.condition = Conditioning::Text(PromptStates::encode(&encoder, &prompts2).unwrap());
    let other = sample(&run.model, &run.space, &run.schedule, 2, &opts, &dev).unwrap();
    let d = (&one.images - &other.images)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(d.to_scalar::<f32>().unwrap() > 0.0);
    // Without a prompt, with labels, or with the wrong number of prompts: clear errors.
    opts.condition = Conditioning::None;
    let e = sample(&run.model, &run.space, &run.schedule, 2, &opts, &dev)
        .err()
        .unwrap();
    assert!(e.to_string().contains("--prompt"), "{e}");
    opts.condition = Conditioning::Labels(vec![1, 2]);
    let e = sample(&run.model, &run.space, &run.schedule, 2, &opts, &dev)
        .err()
        .unwrap();
    assert!(e.to_string().contains("--prompt"), "{e}");
    opts.condition = Conditioning::Text(PromptStates::encode(&encoder, &prompts[..1]).unwrap());
    let e = sample(&run.model, &run.space, &run.schedule, 2, &opts, &dev)
        .err()
        .unwrap();
    assert!(e.to_string().contains("1 prompts for 2 images"), "{e}");
}
