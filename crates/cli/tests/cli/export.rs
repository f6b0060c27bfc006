//! `muse export --format hf` end to end: a trained run becomes a Hugging Face folder that
//! `muse sample` reads back with the same greedy output; llama2.c checkpoints and bad inputs
//! give clear errors.

use std::path::{Path, PathBuf};

use crate::common::{dataset, manual_dataset, muse, text};

fn tiny_run(dir: &Path) {
    let corpus = std::fs::read_to_string(dataset("tinyshakespeare").join("input.txt")).unwrap();
    std::fs::write(dir.join("corpus.txt"), &corpus[..20_000]).unwrap();
    let sets = [
        "n_layer=1",
        "n_embd=32",
        "n_head=2",
        "n_positions=16",
        "batch_size=4",
        "max_iters=3",
        "eval_interval=2",
        "eval_iters=1",
        "sample.tokens=8",
    ];
    let mut args = vec!["train", "gpt", "--data", "corpus.txt", "--out", "run"];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let out = muse(dir, &args);
    assert!(out.status.success(), "{:?}", text(&out));
}

fn greedy(dir: &Path, model: &str) -> String {
    let out = muse(
        dir,
        &[
            "sample",
            model,
            "--temperature",
            "0",
            "--max-tokens",
            "12",
            "--prompt",
            "ROMEO:",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    text(&out).0
}

#[test]
fn a_trained_run_exports_to_a_folder_muse_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_run(tmp.path());
    let out = muse(tmp.path(), &["export", "run", "--format", "hf", "-o", "hf"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("model.safetensors") && stdout.contains("tokenizer_config.json"));
    assert!(stderr.contains("zero biases"), "{stderr}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("hf/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "gpt2");
    assert_eq!(config["activation_function"], "gelu");
    assert_eq!(greedy(tmp.path(), "hf"), greedy(tmp.path(), "run"));

    // A second export into the same folder needs --force.
    let again = muse(tmp.path(), &["export", "run", "-o", "hf"]);
    assert_eq!(again.status.code(), Some(2), "{:?}", text(&again));
    assert!(text(&again).1.contains("--force"));
    let forced = muse(tmp.path(), &["export", "run", "-o", "hf", "--force"]);
    assert!(forced.status.success(), "{:?}", text(&forced));
}

#[test]
fn export_and_sample_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let out = muse(tmp.path(), &["export", "missing", "-o", "hf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("nothing at missing"),
        "{:?}",
        text(&out)
    );
    assert!(!text(&out).1.contains("backtrace"));

    let Some(l2c) = manual_dataset("llama2c") else {
        return;
    };
    let bin = l2c.join("stories260K-plctlab.bin");
    let out = muse(tmp.path(), &["sample", bin.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("--tokenizer"));
    let tok = l2c.join("tokenizer.bin");
    let out = muse(
        tmp.path(),
        &[
            "sample",
            bin.to_str().unwrap(),
            "--tokenizer",
            tok.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(err.contains("32000 tokens") && err.contains("512"), "{err}");
}

/// `muse train gpt --init`: continued pretraining starts from the folder's weights and
/// tokenizer (a Hugging Face GPT-2 folder with vocab.json + merges.txt here).
#[test]
fn train_init_starts_from_the_pretrained_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = std::fs::read_to_string(dataset("tinyshakespeare").join("input.txt")).unwrap();
    std::fs::write(tmp.path().join("corpus.txt"), &corpus[..20_000]).unwrap();
    let hf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/hf/gpt2");
    let hf = hf.to_str().unwrap();
    let mut args = vec![
        "train",
        "gpt",
        "--init",
        hf,
        "--data",
        "corpus.txt",
        "--out",
        "cont",
    ];
    // One step at a negligible learning rate: the weights stay the pretrained ones.
    for s in [
        "max_iters=1",
        "lr=1e-12",
        "min_lr=0",
        "warmup_iters=0",
        "batch_size=2",
        "eval_iters=1",
        "sample.tokens=4",
    ] {
        args.extend(["--set", s]);
    }
    let out = muse(tmp.path(), &args);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(tmp.path().join("cont/tokenizer.json").is_file());
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("cont/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (config["n_embd"].as_u64(), config["n_positions"].as_u64()),
        (Some(32), Some(64))
    );
    assert_eq!(greedy(tmp.path(), "cont"), greedy(tmp.path(), hf));

    // Changing the architecture cannot work; a Llama folder is not for this loop.
    args.truncate(6);
    args.extend(["--out", "bad", "--set", "n_layer=3"]);
    let out = muse(tmp.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("Keep the architecture"),
        "{:?}",
        text(&out)
    );
    let llama = hf.replace("gpt2", "llama_gqa");
    let out = muse(
        tmp.path(),
        &[
            "train",
            "gpt",
            "--init",
            &llama,
            "--data",
            "corpus.txt",
            "--out",
            "l",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("GPT-2-family"), "{:?}", text(&out));
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// `--format gguf`: a Hugging Face Llama folder becomes one GGUF file that `muse sample`
/// continues as it continues the folder.
#[test]
fn a_llama_folder_exports_to_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let llama = fixture("hf/llama_gqa");
    let args = ["export", &llama, "--format", "gguf", "--quant", "f32", "-o"];
    let out = muse(tmp.path(), &[&args[..], &["m.gguf"]].concat());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("(llama, f32)") && stderr.contains("llama-cli -m m.gguf"));
    assert_eq!(greedy(tmp.path(), "m.gguf"), greedy(tmp.path(), &llama));
    // q8_0: ffn_down's rows (88 wide) do not split into blocks of 32 and stay f16.
    let out = muse(
        tmp.path(),
        &[
            "export", &llama, "--format", "gguf", "--quant", "q8_0", "-o", "q.gguf",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).1.contains("written as f16"), "{:?}", text(&out));
}

/// A GPT-2 folder exports as llama.cpp's `gpt2` architecture and samples the same greedy text
/// from the file; a character-level run cannot (GGUF holds no character vocabulary) and says
/// what to do instead.
#[test]
fn gpt2_models_export_to_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let gpt2 = fixture("hf/gpt2");
    let out = muse(
        tmp.path(),
        &[
            "export", &gpt2, "--format", "gguf", "--quant", "f32", "-o", "g.gguf",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("(gpt2, f32)"), "{stdout}");
    assert_eq!(greedy(tmp.path(), "g.gguf"), greedy(tmp.path(), &gpt2));
    tiny_run(tmp.path());
    let out = muse(
        tmp.path(),
        &["export", "run", "--format", "gguf", "-o", "c.gguf"],
    );
    let err = text(&out).1;
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(
        err.contains("character-level") && err.contains("BPE"),
        "{err}"
    );
    assert!(!tmp.path().join("c.gguf").exists());
}

/// Bad requests for `--format gguf` are usage errors (exit 2) that say what to do.
#[test]
fn gguf_export_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let llama = fixture("hf/llama_gqa");
    let expect = |args: &[&str], code: i32, says: &[&str]| {
        let out = muse(tmp.path(), args);
        let err = text(&out).1;
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        for s in says {
            assert!(err.contains(s), "{args:?}: {err}");
        }
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    };
    expect(
        &[
            "export", &llama, "--format", "gguf", "--quant", "q3", "-o", "a.gguf",
        ],
        2,
        &["unknown GGUF type 'q3'", "q8_0, q4_0"],
    );
    expect(
        &["export", &llama, "--format", "gguf", "-o", "."],
        2,
        &["is a folder", "model.gguf"],
    );
    expect(
        &[
            "export", &llama, "--format", "hf", "--quant", "q8_0", "-o", "hf",
        ],
        2,
        &["--quant applies to --format gguf"],
    );
    expect(
        &["export", "missing", "--format", "gguf", "-o", "m.gguf"],
        1,
        &["nothing at missing"],
    );
    std::fs::write(tmp.path().join("old.gguf"), b"x").unwrap();
    expect(
        &["export", &llama, "--format", "gguf", "-o", "old.gguf"],
        2,
        &["--force"],
    );
}
