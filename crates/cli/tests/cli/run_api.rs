//! What a person meets around runs: the up-arrow and `--resume`, a folder another training
//! holds, `--seed` and `--max-steps` on every family, flags of another family, bad sampling
//! values. Each case was broken or missing before the run API.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{dataset, muse, text};

/// A tiny GPT on 20 kB of Tiny Shakespeare: `muse train gpt` with these flags takes a second.
fn gpt_args(dir: &Path) -> Vec<String> {
    let corpus = dir.join("corpus.txt");
    if !corpus.is_file() {
        let text = std::fs::read_to_string(dataset("tinyshakespeare").join("input.txt")).unwrap();
        std::fs::write(&corpus, &text[..20_000]).unwrap();
    }
    let mut a: Vec<String> = ["train", "gpt", "--data"].map(String::from).to_vec();
    a.push(corpus.display().to_string());
    for s in [
        "n_layer=1",
        "n_embd=32",
        "n_head=2",
        "n_positions=16",
        "batch_size=4",
        "eval_interval=2",
        "eval_iters=1",
        "sample.tokens=8",
    ] {
        a.push("--set".into());
        a.push(s.into());
    }
    a.extend(["--out", "run"].map(String::from));
    a
}

fn run(dir: &Path, args: &[String], extra: &[&str]) -> Output {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    muse(dir, &all)
}

fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    (stdout, stderr)
}

fn fails(out: &Output, code: i32, needles: &[&str]) {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "expected '{n}' in:\n{stderr}");
    }
}

fn json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_same_command_with_resume_continues_and_real_changes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    ok(&run(dir, &args, &["--max-steps", "3", "--seed", "7"]));
    assert_eq!(json(dir.join("run/state.json"))["step"], 3);
    assert_eq!(json(dir.join("run/training.json"))["seed"], 7);
    // Up-arrow, a larger step count, --resume: accepted, continued, recorded.
    ok(&run(
        dir,
        &args,
        &["--max-steps", "5", "--seed", "7", "--resume"],
    ));
    assert_eq!(json(dir.join("run/state.json"))["step"], 5);
    let record = json(dir.join("run/training.json"));
    assert_eq!(record["config"]["train"]["max_iters"], 5);
    // A real change is refused, by name.
    fails(
        &run(dir, &args, &["--max-steps", "5", "--seed", "8", "--resume"]),
        2,
        &["--seed", "train.seed"],
    );
    fails(
        &run(dir, &args, &["--preset", "char-shakespeare", "--resume"]),
        2,
        &["--preset char-shakespeare", "char-baby"],
    );
    fails(
        &run(dir, &args, &["--resume", "--set", "n_layer=2"]),
        2,
        &["model.n_layer"],
    );
    // Another family's command on this folder.
    fails(
        &muse(dir, &["train", "vae", "--out", "run", "--resume"]),
        2,
        &["'gpt' run"],
    );
}

#[test]
fn a_run_stopped_before_its_first_checkpoint_resumes_from_step_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    ok(&run(dir, &args, &["--max-steps", "2"]));
    // What a kill before the first checkpoint leaves: the run files, no state, no weights.
    for f in ["state.json", "model.safetensors", "optimizer.safetensors"] {
        std::fs::remove_file(dir.join("run").join(f)).unwrap();
    }
    let (_, stderr) = ok(&run(dir, &args, &["--max-steps", "2", "--resume"]));
    assert!(stderr.contains("from step 0"), "{stderr}");
    assert_eq!(json(dir.join("run/state.json"))["step"], 2);
}

#[test]
fn a_folder_another_training_writes_is_refused_with_its_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    ok(&run(dir, &args, &["--max-steps", "1"]));
    // pid 1 always runs: a live holder.
    std::fs::write(dir.join("run/.lock"), "1").unwrap();
    fails(&run(dir, &args, &["--force"]), 2, &["pid 1"]);
    fails(
        &run(dir, &args, &["--resume", "--max-steps", "2"]),
        2,
        &["pid 1"],
    );
    // A lock left by a process that is gone is taken over.
    std::fs::write(dir.join("run/.lock"), "4000000000").unwrap();
    ok(&run(dir, &args, &["--resume", "--max-steps", "2"]));
    assert!(
        !dir.join("run/.lock").exists(),
        "the lock is removed at the end"
    );
}

#[test]
fn max_steps_and_seed_work_for_image_families_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&muse(
        dir,
        &[
            "train",
            "vae",
            "--max-steps",
            "2",
            "--seed",
            "3",
            "--out",
            "vae",
            "--set",
            "hidden=8",
            "--set",
            "latent=2",
            "--set",
            "test_limit=64",
        ],
    ));
    assert_eq!(json(dir.join("vae/state.json"))["step"], 2);
    assert_eq!(json(dir.join("vae/training.json"))["seed"], 3);
    // Resuming the finished run trains nothing and rewrites nothing, as for GPT.
    let metrics = std::fs::read_to_string(dir.join("vae/metrics.jsonl")).unwrap();
    let (_, stderr) = ok(&muse(
        dir,
        &[
            "train",
            "vae",
            "--max-steps",
            "2",
            "--seed",
            "3",
            "--out",
            "vae",
            "--resume",
        ],
    ));
    assert!(
        stderr.contains("already complete at step 2") && stderr.contains("--set max_steps=N"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("vae/metrics.jsonl")).unwrap(),
        metrics
    );
    // No reference classifier here: the figures that need none, and how to get the rest.
    let (stdout, _) = ok(&muse(dir, &["eval", "vae", "--iwae-k", "0"]));
    assert!(stdout.contains("loss"), "{stdout}");
    assert!(
        stdout.contains("muse train classifier --data mnist"),
        "{stdout}"
    );
    // Text flags on an image model, image flags on a text model: refused by name.
    fails(
        &muse(dir, &["sample", "vae", "--prompt", "ROMEO:"]),
        2,
        &["--prompt", "VAE"],
    );
    fails(
        &muse(dir, &["sample", "vae", "--label", "7"]),
        2,
        &["--label"],
    );
    fails(
        &muse(dir, &["sample", "vae", "-o", "x.jpg"]),
        2,
        &["x.jpg", ".png"],
    );
    fails(
        &muse(dir, &["sample", "vae", "--nrow", "0"]),
        2,
        &["--nrow"],
    );
    fails(
        &muse(dir, &["sample", "vae", "--n", "100000000"]),
        2,
        &["--n 100000000", "GB"],
    );
}

#[test]
fn sampling_values_are_checked_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    ok(&run(dir, &args, &["--max-steps", "1"]));
    fails(
        &muse(dir, &["sample", "run", "--n", "4", "-o", "x.png"]),
        2,
        &["--n, --out", "GPT"],
    );
    fails(
        &muse(dir, &["sample", "run", "--temperature", "-1"]),
        2,
        &["--temperature -1"],
    );
    let out = muse(dir, &["sample", "run", "--temperature", "nan"]);
    fails(&out, 2, &["--temperature NaN"]);
    assert!(
        !text(&out).1.contains("--top-p"),
        "only the bad flag is named"
    );
    fails(
        &muse(dir, &["sample", "run", "--top-p", "1.5"]),
        2,
        &["--top-p 1.5"],
    );
    fails(
        &muse(dir, &["sample", "run", "--prompt", ""]),
        2,
        &["--prompt"],
    );
    // `\n` in --stop is a newline: generation stops at the first one.
    let (stdout, stderr) = ok(&muse(
        dir,
        &[
            "sample",
            "run",
            "--prompt",
            "A",
            "--stop",
            "\\n",
            "--max-tokens",
            "300",
            "--temperature",
            "2",
        ],
    ));
    assert!(stderr.contains("stopped at stop string"), "{stderr}");
    let body = stdout.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert!(!body.trim_end().contains('\n'), "{stdout}");
    // A file that is not a model is named as such.
    std::fs::write(dir.join("notes.txt"), "First Citizen: hello").unwrap();
    fails(
        &muse(dir, &["sample", "notes.txt"]),
        1,
        &["not a model file"],
    );
}

#[test]
fn a_diverging_run_stops_naming_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    let out = run(
        dir,
        &args,
        &[
            "--max-steps",
            "6",
            "--set",
            "lr=1e30",
            "--set",
            "grad_clip=0",
        ],
    );
    fails(&out, 1, &["diverged at step", "last checkpoint"]);
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_last_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    ok(&run(dir, &args, &["--max-steps", "2"]));
    // The checkpoint keeps its predecessor in .prev/ while it writes: a file in its way makes
    // the next checkpoint unwritable (as a full or read-only disk would; root ignores modes).
    let _ = std::fs::remove_dir_all(dir.join("run/.prev"));
    std::fs::write(dir.join("run/.prev"), "in the way").unwrap();
    let out = run(dir, &args, &["--max-steps", "6", "--resume"]);
    fails(
        &out,
        1,
        &[
            "cannot write the checkpoint",
            "last good checkpoint",
            "--resume",
        ],
    );
    assert_eq!(json(dir.join("run/state.json"))["step"], 2);
    std::fs::remove_file(dir.join("run/.prev")).unwrap();
    ok(&run(dir, &args, &["--max-steps", "6", "--resume"]));
    assert_eq!(json(dir.join("run/state.json"))["step"], 6);
}

#[test]
fn tokenizer_flags_take_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let gpt2 = dataset("gpt2-bpe").display().to_string();
    let args = gpt_args(dir);
    // GPT-2's encoder.json + vocab.bpe folder as the training tokenizer.
    ok(&run(
        dir,
        &args,
        &[
            "--max-steps",
            "1",
            "--tokenizer",
            &gpt2,
            "--set",
            "sample.tokens=2",
        ],
    ));
    let tok = std::fs::read_to_string(dir.join("run/tokenizer.json")).unwrap();
    assert!(tok.contains("\"BPE\""), "a GPT-2 BPE tokenizer was stored");
    // And as the sampling tokenizer (a folder that holds a tokenizer.json).
    let out = muse(
        dir,
        &["sample", "run", "--tokenizer", "run", "--max-tokens", "2"],
    );
    ok(&out);
    // A folder without a tokenizer says what it should hold.
    std::fs::create_dir(dir.join("empty")).unwrap();
    fails(
        &muse(dir, &["sample", "run", "--tokenizer", "empty"]),
        1,
        &["holds no tokenizer", "encoder.json + vocab.bpe"],
    );
}

#[test]
fn resuming_a_complete_run_changes_nothing_and_info_takes_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    ok(&run(dir, &args, &["--max-steps", "4"]));
    let before = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    let state = std::fs::read_to_string(dir.join("run/state.json")).unwrap();
    let (_, stderr) = ok(&run(dir, &args, &["--max-steps", "4", "--resume"]));
    assert!(stderr.contains("already complete at step 4"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("run/state.json")).unwrap(),
        state
    );
    // `muse tokenizer info FILE`, as `encode` and `decode` are used.
    let (stdout, _) = ok(&muse(dir, &["tokenizer", "info", "run/tokenizer.json"]));
    assert!(stdout.contains("vocab size"), "{stdout}");
}

#[test]
fn a_hugging_face_export_evaluates_on_given_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    ok(&run(dir, &args, &["--max-steps", "2"]));
    ok(&muse(dir, &["export", "run", "--format", "hf", "-o", "hf"]));
    // No training.json in an export: the validation split is unknown, --data is needed.
    fails(&muse(dir, &["eval", "hf"]), 2, &["--data"]);
    let (stdout, _) = ok(&muse(dir, &["eval", "hf", "--data", "corpus.txt"]));
    assert!(stdout.contains("perplexity"), "{stdout}");
    // Export, fine-tuning and --init of an image run name what the folder holds.
    ok(&muse(
        dir,
        &[
            "train",
            "vae",
            "--max-steps",
            "1",
            "--out",
            "vae",
            "--set",
            "hidden=8",
            "--set",
            "latent=2",
            "--set",
            "test_limit=16",
        ],
    ));
    fails(
        &muse(dir, &["export", "vae", "--format", "hf", "-o", "x"]),
        2,
        &["VAE"],
    );
    fails(&muse(dir, &["finetune", "vae"]), 2, &["VAE"]);
}

#[test]
fn a_damaged_model_file_gives_the_same_short_message_with_rust_backtrace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    ok(&run(dir, &args, &["--max-steps", "1"]));
    let weights = std::fs::read(dir.join("run/model.safetensors")).unwrap();
    std::fs::write(
        dir.join("run/model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_muse"))
        .args(["sample", "run", "--max-tokens", "2"])
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    fails(&out, 1, &["model.safetensors"]);
    let stderr = text(&out).1;
    assert!(
        stderr.lines().count() <= 3 && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn dropped_examples_are_counted_by_reason_with_the_first_of_each() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    ok(&run(
        dir,
        &args,
        &["--set", "n_positions=96", "--max-steps", "1"],
    ));
    // Tiny Shakespeare has no digits.
    let mut rows: Vec<String> = (0..6)
        .map(|_| serde_json::json!({"instruction": "Speak.", "output": "I will."}).to_string())
        .collect();
    rows.insert(
        1,
        serde_json::json!({"instruction": "Count.", "output": "1 2 3"}).to_string(),
    );
    rows.insert(
        4,
        serde_json::json!({"instruction": "Add 4.", "output": "5"}).to_string(),
    );
    std::fs::write(dir.join("sft.jsonl"), rows.join("\n")).unwrap();
    let (_, stderr) = ok(&muse(
        dir,
        &[
            "finetune",
            "run",
            "--data",
            "sft.jsonl",
            "--max-steps",
            "1",
            "--out",
            "sft",
        ],
    ));
    assert!(
        stderr.contains(
            "2 dropped: 2 with characters outside the vocabulary (first: example 2, text \
             contains characters not in this model's vocabulary: '1' (U+0031)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_training_step_that_cannot_fit_in_memory_is_refused_before_anything_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = gpt_args(dir);
    fails(
        &run(dir, &args, &["--set", "n_positions=100000"]),
        2,
        &["needs about", "GB available", "--set n_positions=N"],
    );
    assert!(!dir.join("run").exists(), "no run folder was made");
}

#[test]
fn a_run_counted_in_epochs_resumes_to_more_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = |epochs: &str| -> Vec<String> {
        #[rustfmt::skip]
        let a = [
            "train", "vae", "--out", "vae", "--set", "hidden=8", "--set", "latent=2",
            "--set", "train_limit=256", "--set", "test_limit=64", "--set", "batch_size=64",
            "--set", epochs,
        ];
        a.map(String::from).to_vec()
    };
    ok(&run(dir, &args("epochs=1"), &[]));
    assert_eq!(json(dir.join("vae/state.json"))["step"], 4);
    // max_steps is 0 (count in epochs): the resume must not read that as "complete at 0".
    let (_, stderr) = ok(&run(dir, &args("epochs=2"), &["--resume"]));
    assert!(!stderr.contains("already complete"), "{stderr}");
    assert_eq!(json(dir.join("vae/state.json"))["step"], 8);
}
