//! The reference classifier: overfitting one batch through the training loop, loading the run
//! back for features and class probabilities, and resuming exactly.

use candle_core::Device;
use muse_core::data::images::{ImageOptions, Scale, Split, load_images};
use muse_core::eval::image::open_classifier;
use muse_core::models::classifier::load_classifier;
use muse_core::run_dir::{OnExisting, RunDir};
use muse_core::train::classifier::{
    ClassifierRunConfig, ClassifierTrainJob, evaluate_classifier, train_classifier,
};
use muse_core::train::config::ScheduleKind;

use crate::common::dataset;

#[test]
fn overfits_one_batch_and_loads_back() {
    let mut cfg = ClassifierRunConfig::preset("mnist").unwrap();
    cfg.data.dataset = dataset("mnist").display().to_string();
    (cfg.data.train_limit, cfg.data.test_limit) = (32, 32);
    (cfg.model.conv1, cfg.model.conv2, cfg.model.hidden) = (4, 8, 16);
    cfg.model.dropout = 0.0;
    cfg.augment.max_shift = 0;
    cfg.train.batch_size = 32;
    cfg.train.max_steps = 60;
    (cfg.train.lr, cfg.train.min_lr) = (3e-3, 3e-3);
    (cfg.train.eval_interval, cfg.train.log_interval) = (1000, 1000);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cls");
    let report = train_classifier(ClassifierTrainJob {
        out: out.clone(),
        preset: "mnist".into(),
        config: cfg.clone(),
        on_existing: OnExisting::Refuse,
        device: Device::Cpu,
    })
    .unwrap();
    assert_eq!(report.steps, 60);
    assert_eq!(RunDir::open(&out).unwrap().family().unwrap(), "classifier");
    // Loaded back, it classifies its 32 training images perfectly.
    let model = load_classifier(&out, &Device::Cpu).unwrap();
    let train = load_images(
        cfg.data.dataset.as_str(),
        Split::Train,
        &ImageOptions::default(),
    )
    .unwrap()
    .take(32);
    let ev = evaluate_classifier(&model, &train, 16, &Device::Cpu).unwrap();
    assert_eq!(ev.accuracy, 1.0, "train loss {}", ev.loss);
    assert!(ev.loss < 0.05, "{}", ev.loss);
    let x = train.batch(&[0, 1, 2], Scale::Unit, &Device::Cpu).unwrap();
    let (features, probs) = model.features_and_probs(&x).unwrap();
    assert_eq!(features.dims(), &[3, 16]);
    assert_eq!(probs.dims(), &[3, 10]);
    let sums: Vec<f32> = probs.sum(1).unwrap().to_vec1().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
    // The metrics' loader: a wrong path says how to train one.
    assert!(open_classifier(Some(&out), "mnist", &Device::Cpu).is_ok());
    let err = open_classifier(Some(&tmp.path().join("nope")), "mnist", &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("muse train classifier --data mnist"), "{err}");
}

#[test]
fn resume_equals_uninterrupted() {
    let mut cfg = ClassifierRunConfig::preset("mnist").unwrap();
    cfg.data.dataset = dataset("mnist").display().to_string();
    (cfg.data.train_limit, cfg.data.test_limit) = (40, 16);
    (cfg.model.conv1, cfg.model.conv2, cfg.model.hidden) = (4, 8, 16);
    // Dropout and random shifts on: their per-step seeds must resume too.
    (cfg.model.dropout, cfg.augment.max_shift) = (0.25, 2);
    cfg.train.batch_size = 16; // 3 steps per epoch, the last one short
    cfg.train.max_steps = 8;
    // A constant rate, so that a shorter first run follows the same schedule.
    cfg.train.schedule = ScheduleKind::Constant;
    cfg.train.min_lr = cfg.train.lr;
    (cfg.train.eval_interval, cfg.train.log_interval) = (2, 1000);
    let tmp = tempfile::tempdir().unwrap();
    let job = |out: &str, config: ClassifierRunConfig, on_existing| ClassifierTrainJob {
        out: tmp.path().join(out),
        preset: "mnist".into(),
        config,
        on_existing,
        device: Device::Cpu,
    };
    let full = train_classifier(job("full", cfg.clone(), OnExisting::Refuse)).unwrap();
    let mut first = cfg.clone();
    first.train.max_steps = 4; // stops mid-epoch 2
    train_classifier(job("split", first, OnExisting::Refuse)).unwrap();
    let resumed = train_classifier(job("split", cfg, OnExisting::Resume)).unwrap();
    assert_eq!((full.steps, resumed.steps), (8, 8));
    let weights = |out: &str| -> Vec<(String, Vec<f32>)> {
        let mut w: Vec<(String, Vec<f32>)> = candle_core::safetensors::load(
            tmp.path().join(out).join("model.safetensors"),
            &Device::Cpu,
        )
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    };
    assert_eq!(weights("full"), weights("split"));
    assert_eq!(full.test.loss, resumed.test.loss);
}
