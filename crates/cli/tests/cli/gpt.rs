//! `muse train gpt`, `muse sample`, `muse eval` end to end, and their errors on bad input:
//! a clear message naming the problem and the fix, a non-zero exit code, no panic, nothing
//! overwritten.

use std::path::{Path, PathBuf};

use crate::common::{data_dir, muse, text};

/// Tiny model flags so a run takes a second.
const TINY: &[&str] = &[
    "--set",
    "n_layer=1",
    "--set",
    "n_embd=32",
    "--set",
    "n_head=2",
    "--set",
    "n_positions=16",
    "--set",
    "batch_size=4",
    "--set",
    "max_iters=3",
    "--set",
    "eval_interval=2",
    "--set",
    "eval_iters=1",
    "--set",
    "sample.tokens=8",
];

fn corpus(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(data_dir().join("tinyshakespeare/input.txt")).unwrap();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, &text[..20_000]).unwrap();
    path
}

fn train(dir: &Path, extra: &[&str]) -> std::process::Output {
    let data = corpus(dir);
    let mut args = vec![
        "train",
        "gpt",
        "--data",
        data.to_str().unwrap(),
        "--out",
        "run",
    ];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    muse(dir, &args)
}

/// Asserts a failed run: the exit code, a message containing every `needle`, no panic.
fn assert_fails(out: &std::process::Output, code: i32, needles: &[&str]) {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "expected '{n}' in:\n{stderr}");
    }
}

#[test]
fn train_sample_eval_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(dir.path(), &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("AI-generated"), "{stdout}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "training.json",
        "state.json",
        "optimizer.safetensors",
        "metrics.jsonl",
        "loss.svg",
        "MODEL_CARD.md",
        "samples/step_000003.txt",
    ] {
        assert!(dir.path().join("run").join(f).is_file(), "{f} missing");
    }
    let out = muse(
        dir.path(),
        &[
            "sample",
            "run",
            "--prompt",
            "ROMEO:",
            "--max-tokens",
            "20",
            "--seed",
            "1",
        ],
    );
    let (first, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        first.starts_with("ROMEO:") && first.chars().count() >= 26,
        "{first}"
    );
    let again = muse(
        dir.path(),
        &[
            "sample",
            "run",
            "--prompt",
            "ROMEO:",
            "--max-tokens",
            "20",
            "--seed",
            "1",
        ],
    );
    assert_eq!(text(&again).0, first, "same seed, same text");
    let out = muse(
        dir.path(),
        &[
            "sample",
            "run",
            "--prompt",
            "The ",
            "--max-tokens",
            "3",
            "--show-probs",
        ],
    );
    let (probs, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        probs.lines().filter(|l| l.contains(" <- ")).count(),
        3,
        "{probs}"
    );
    let out = muse(dir.path(), &["eval", "run", "--json"]);
    let (json, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let loss = v["loss"].as_f64().unwrap();
    assert!(
        loss > 0.5 && loss < 6.0 && (v["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-6
    );
    assert!(
        (v["bits_per_char"].as_f64().unwrap() - loss / std::f64::consts::LN_2).abs() < 1e-9,
        "char model: bits/char = loss / ln 2"
    );
}

#[test]
fn existing_out_is_refused_and_left_alone_without_resume_or_force() {
    let dir = tempfile::tempdir().unwrap();
    assert!(train(dir.path(), &[]).status.success());
    let weights = dir.path().join("run/model.safetensors");
    let before = std::fs::read(&weights).unwrap();
    assert_fails(
        &train(dir.path(), &[]),
        2,
        &["already exists", "--resume", "--force"],
    );
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        before,
        "nothing overwritten"
    );
    assert!(train(dir.path(), &["--force"]).status.success());
}

#[test]
fn missing_empty_and_non_utf8_corpora_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = muse(
        dir.path(),
        &["train", "gpt", "--data", "no/such/file.txt", "--out", "run"],
    );
    assert!(!out.status.success());
    assert_fails(
        &out,
        out.status.code().unwrap(),
        &["no/such/file.txt", "muse data list"],
    );
    std::fs::write(dir.path().join("empty.txt"), "").unwrap();
    let out = muse(
        dir.path(),
        &["train", "gpt", "--data", "empty.txt", "--out", "run"],
    );
    assert_fails(&out, 1, &["empty.txt", "empty"]);
    std::fs::write(dir.path().join("latin1.txt"), b"caf\xe9 au lait\n").unwrap();
    let out = muse(
        dir.path(),
        &["train", "gpt", "--data", "latin1.txt", "--out", "run"],
    );
    assert_fails(&out, 1, &["latin1.txt", "UTF-8", "byte offset"]);
    assert!(!dir.path().join("run/model.safetensors").exists());
}

#[test]
fn unknown_preset_and_set_key_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = muse(
        dir.path(),
        &["train", "gpt", "--preset", "huge", "--out", "run"],
    );
    assert_fails(&out, 2, &["unknown gpt preset 'huge'", "char-baby"]);
    let out = muse(
        dir.path(),
        &["train", "gpt", "--set", "n_layers=3", "--out", "run"],
    );
    assert_fails(&out, 2, &["unknown config key 'n_layers'"]);
    let out = muse(
        dir.path(),
        &["train", "gpt", "--set", "n_head=3", "--out", "run"],
    );
    assert_fails(&out, 2, &["n_embd (128) must be a multiple of n_head (3)"]);
}

#[test]
fn sampling_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    assert!(train(dir.path(), &[]).status.success());
    let out = muse(dir.path(), &["sample", "run", "--max-tokens", "0"]);
    assert_fails(&out, 2, &["--max-tokens"]);
    let out = muse(dir.path(), &["sample", "run", "--prompt", "naïve 東京"]);
    assert_fails(&out, 1, &["'東' (U+6771)", "vocabulary"]);
    let out = muse(dir.path(), &["sample", "nowhere"]);
    assert_fails(&out, 1, &["nowhere", "muse train"]);
}

#[test]
fn damaged_or_mismatched_weights_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    assert!(train(dir.path(), &[]).status.success());
    let run = dir.path().join("run");
    let weights = std::fs::read(run.join("model.safetensors")).unwrap();
    std::fs::write(run.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let out = muse(dir.path(), &["sample", "run", "--max-tokens", "5"]);
    assert_fails(&out, 1, &["model.safetensors", "truncated"]);

    std::fs::write(run.join("model.safetensors"), &weights).unwrap();
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    std::fs::write(
        run.join("config.json"),
        config.replace("\"n_embd\": 32", "\"n_embd\": 48"),
    )
    .unwrap();
    let out = muse(dir.path(), &["sample", "run", "--max-tokens", "5"]);
    assert_fails(&out, 1, &["config.json", "does not match"]);
}

#[test]
fn resume_continues_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    assert!(train(dir.path(), &[]).status.success());
    let out = muse(
        dir.path(),
        &[
            "train",
            "gpt",
            "--out",
            "run",
            "--resume",
            "--set",
            "max_iters=5",
        ],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], 5);
    let out = muse(
        dir.path(),
        &["train", "gpt", "--out", "elsewhere", "--resume"],
    );
    assert_fails(&out, 1, &["elsewhere"]);
}

#[test]
fn bpe_tokenizer_and_prompts_longer_than_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(
        dir.path(),
        &["--tokenizer", "bpe", "--set", "bpe_vocab_size=300"],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let tok: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/tokenizer.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tok["model"]["type"], "BPE");
    let long_prompt = "First Citizen: Before we proceed any further, hear me speak. ".repeat(3);
    let out = muse(
        dir.path(),
        &[
            "sample",
            "run",
            "--prompt",
            &long_prompt,
            "--max-tokens",
            "10",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&long_prompt), "{stdout}");
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let mut args: Vec<&str> = vec![
        "train",
        "gpt",
        "--data",
        data.to_str().unwrap(),
        "--out",
        "run",
    ];
    args.extend_from_slice(TINY);
    args.extend_from_slice(&["--set", "max_iters=100000", "--set", "eval_interval=100000"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_muse"))
        .args(&args)
        .current_dir(dir.path())
        .env("MUSE_DATA_DIR", data_dir())
        .env("MUSE_THREADS", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = dir.path().join("run/metrics.jsonl");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 20 {
        assert!(started.elapsed().as_secs() < 60, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("checkpoint saved"), "{stderr}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/state.json")).unwrap())
            .unwrap();
    let step = state["step"].as_u64().unwrap();
    assert!(step >= 19, "saved at step {step}");
    let target = format!("max_iters={}", step + 2);
    let out = muse(
        dir.path(),
        &["train", "gpt", "--out", "run", "--resume", "--set", &target],
    );
    assert!(out.status.success(), "{}", text(&out).1);
}
