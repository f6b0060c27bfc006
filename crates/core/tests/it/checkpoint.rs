//! Checkpoints around a kill that cut a save short: the run resumes from `.prev/`, and its
//! next save must not replace that complete checkpoint with the mixed files it resumed past.

use candle_core::{DType, Device};
use candle_nn::{Init, VarMap};
use muse_core::run_dir::RunDir;
use muse_core::train::AdamW;
use muse_core::train::checkpoint::{self, TrainState};
use muse_core::train::tuning::finetune_train_config;

/// A run folder with a one-matrix model, and a save that records `step`.
fn saver(root: std::path::PathBuf) -> (RunDir, impl Fn(u64)) {
    let varmap = VarMap::new();
    varmap
        .get((2, 2), "w", Init::Const(1.0), DType::F32, &Device::Cpu)
        .unwrap();
    let opt = AdamW::new(&varmap, &finetune_train_config(false)).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let run = RunDir::new(root.clone());
    let save = {
        let run = RunDir::new(root);
        move |step| {
            let weights = checkpoint::varmap_tensors(&varmap);
            let state = TrainState {
                step,
                ..Default::default()
            };
            checkpoint::save(&run, &weights, &[("", &opt)], &state).unwrap();
        }
    };
    (run, save)
}

fn resumed_step(run: &RunDir) -> Result<u64, String> {
    let mut varmap = VarMap::new();
    varmap
        .get((2, 2), "w", Init::Const(0.0), DType::F32, &Device::Cpu)
        .unwrap();
    let mut opt = AdamW::new(&varmap, &finetune_train_config(false)).unwrap();
    checkpoint::load(run, &mut varmap, &mut [("", &mut opt)])
        .map(|s| s.step)
        .map_err(|e| e.to_string())
}

#[test]
fn a_save_after_resuming_past_a_cut_short_one_keeps_the_complete_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, save) = saver(tmp.path().join("run"));
    let (other, save_other) = saver(tmp.path().join("other"));
    save(1);
    save(2);
    save_other(3);
    // A kill cut the save of step 3 short: its optimizer file landed, the others did not.
    let cut_short = || std::fs::copy(other.optimizer(), run.optimizer()).unwrap();
    cut_short();
    assert_eq!(resumed_step(&run), Ok(1), "falls back to .prev");
    // The resumed run saves step 2 again, and a kill cuts its next save short the same way.
    save(2);
    assert_eq!(resumed_step(&run), Ok(2));
    cut_short();
    assert_eq!(
        resumed_step(&run),
        Ok(1),
        "the complete checkpoint in .prev survived the save after the resume"
    );
}
