//! GPT behaviour: overfitting one batch, KV-cache decoding equal to full recomputation,
//! save -> load identity, and resume-after-stop equal to an uninterrupted run.

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};
use muse_core::models::CausalLm;
use muse_core::models::gpt::{Gpt, GptConfig, gpt2_init, load_gpt, save_config};
use muse_core::nn::{Dropout, init_varmap};
use muse_core::run_dir::OnExisting;
use muse_core::train::checkpoint::{varmap_tensors, write_safetensors};
use muse_core::train::gpt::{GptRunConfig, GptTrainJob, train_gpt};
use muse_core::train::metrics::read_metrics;
use muse_core::train::{AdamW, TrainConfig};

use crate::common::dataset;

fn tiny_config() -> GptConfig {
    GptConfig {
        vocab_size: 23,
        n_positions: 16,
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        ..GptConfig::char_baby()
    }
}

fn fresh(cfg: &GptConfig, seed: u64) -> (Gpt, VarMap) {
    let varmap = VarMap::new();
    let model = Gpt::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_varmap(&varmap, seed, gpt2_init(cfg)).unwrap();
    (model, varmap)
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

#[test]
fn overfits_a_single_batch() {
    let cfg = tiny_config();
    let (model, varmap) = fresh(&cfg, 3);
    let train = TrainConfig {
        lr: 3e-3,
        weight_decay: 0.0,
        ..TrainConfig::char_baby()
    };
    let mut opt = AdamW::new(&varmap, &train).unwrap();
    let x: Vec<u32> = (0..2 * 16).map(|i| (i * 7 % 23) as u32).collect();
    let y: Vec<u32> = (0..2 * 16).map(|i| (i * 5 % 23) as u32).collect();
    let (x, y) = (
        Tensor::from_vec(x, (2, 16), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, (2, 16), &Device::Cpu).unwrap(),
    );
    let mut first = f32::NAN;
    let mut last = f32::NAN;
    for step in 0..200 {
        let loss = model.loss(&x, &y, &mut Dropout::eval()).unwrap();
        last = loss.to_scalar().unwrap();
        if step == 0 {
            first = last;
        }
        let mut grads = opt.grads(&loss.backward().unwrap());
        grads.clip(1.0).unwrap();
        opt.step(&grads, 3e-3).unwrap();
    }
    assert!(
        first > 2.5 && last < 0.05,
        "loss went from {first} to {last}"
    );
}

#[test]
fn kv_cache_decoding_equals_full_recomputation() {
    let cfg = tiny_config();
    let (model, _varmap) = fresh(&cfg, 5);
    let ids: Vec<u32> = (0..12).map(|i| (i * 11 % 23) as u32).collect();
    let full = model
        .forward(
            &Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            &mut Dropout::eval(),
        )
        .unwrap(); // (12, V)
    let mut cache = model.new_cache(1).unwrap();
    let prompt = Tensor::new(&ids[..5], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut last = model.forward_cached(&prompt, &mut cache).unwrap();
    assert!(max_abs_diff(&last.squeeze(0).unwrap(), &full.i(4).unwrap()) < 1e-5);
    for (pos, &id) in ids.iter().enumerate().skip(5) {
        last = model
            .forward_cached(&Tensor::new(&[[id]], &Device::Cpu).unwrap(), &mut cache)
            .unwrap();
        let diff = max_abs_diff(&last.squeeze(0).unwrap(), &full.i(pos).unwrap());
        assert!(
            diff < 1e-5,
            "position {pos}: cached logits differ by {diff}"
        );
    }
    assert_eq!(cache.len(), 12);
}

#[test]
fn save_then_load_gives_identical_logits() {
    let cfg = tiny_config();
    let (model, varmap) = fresh(&cfg, 9);
    let dir = tempfile::tempdir().unwrap();
    save_config(dir.path(), &cfg).unwrap();
    write_safetensors(
        &dir.path().join("model.safetensors"),
        &varmap_tensors(&varmap),
        0,
    )
    .unwrap();
    let loaded = load_gpt(dir.path(), &Device::Cpu).unwrap();
    let x = Tensor::new(&[[1u32, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]], &Device::Cpu).unwrap();
    let a = model.forward(&x, &mut Dropout::eval()).unwrap();
    let b = loaded.forward(&x, &mut Dropout::eval()).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

/// A tiny run over the first 30 kB of Tiny Shakespeare.
fn tiny_job(
    out: &std::path::Path,
    corpus: &std::path::Path,
    max_iters: usize,
    on_existing: OnExisting,
) -> GptTrainJob {
    let mut config = GptRunConfig::char_baby();
    config.model = GptConfig {
        vocab_size: 0,
        ..tiny_config()
    };
    config.model.dropout = 0.1; // exercise the seeded dropout stream too
    let t = &mut config.train;
    (t.max_iters, t.lr_decay_iters, t.warmup_iters) = (max_iters, 12, 2);
    (
        t.batch_size,
        t.eval_interval,
        t.eval_iters,
        t.log_interval,
        t.sample_interval,
    ) = (4, 4, 2, 1, 0);
    config.sample.tokens = 0;
    GptTrainJob {
        out: out.to_path_buf(),
        preset: "test".into(),
        config,
        data: corpus.display().to_string(),
        on_existing,
        device: Device::Cpu,
    }
}

#[test]
fn resume_reproduces_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(dataset("tinyshakespeare").join("input.txt")).unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, &text[..30_000]).unwrap();

    let straight = dir.path().join("straight");
    train_gpt(tiny_job(&straight, &corpus, 12, OnExisting::Refuse)).unwrap();
    let split = dir.path().join("split");
    train_gpt(tiny_job(&split, &corpus, 6, OnExisting::Refuse)).unwrap();
    let mut job = tiny_job(&split, &corpus, 12, OnExisting::Resume);
    job.config.train.max_iters = 12;
    train_gpt(job).unwrap();

    let losses = |run: &std::path::Path| -> Vec<(u64, f64)> {
        read_metrics(&run.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .filter_map(|r| Some((r["step"].as_u64()?, r.get("loss")?.as_f64()?)))
            .collect()
    };
    assert_eq!(losses(&straight).len(), 12);
    assert_eq!(losses(&straight), losses(&split));
    let a =
        candle_core::safetensors::load(straight.join("model.safetensors"), &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(split.join("model.safetensors"), &Device::Cpu).unwrap();
    for (name, t) in &a {
        assert_eq!(
            max_abs_diff(t, &b[name]),
            0.0,
            "{name} differs after resume"
        );
    }
}

#[test]
fn preset_files_in_configs_match_the_presets() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    for name in muse_core::train::gpt::PRESETS {
        let path = root.join(format!("gpt-{name}.toml"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let from_file: GptRunConfig = toml::from_str(&text).unwrap();
        assert_eq!(
            from_file,
            GptRunConfig::preset(name).unwrap(),
            "{} is stale: regenerate it with --print-config",
            path.display()
        );
        let layered =
            muse_core::config::resolve(&GptRunConfig::char_baby(), Some(&path), &[]).unwrap();
        assert_eq!(layered, from_file);
    }
}
