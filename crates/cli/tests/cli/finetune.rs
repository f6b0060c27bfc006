//! `muse finetune` and `muse align` end to end on the tiny GPT-2 fixture (a LoRA fine-tune that
//! `muse sample` reads back, then DPO on top of it), and bad inputs through `finetune`, `align`
//! and `sample`: an unsupported `model_type`, a folder without a tokenizer, a JSONL file with a
//! malformed line, preference rows without `chosen`. Each must fail with a non-zero exit code
//! and a message naming the problem and the fix, without a panic, and write nothing.

use std::path::{Path, PathBuf};

use crate::common::{muse, text};

/// The committed Hugging Face GPT-2 fixture (vocab.json + merges.txt tokenizer).
fn gpt2_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/hf/gpt2")
}

/// A copy of the GPT-2 fixture at `dir/name`.
fn copy_fixture(dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    std::fs::create_dir(&dst).unwrap();
    for entry in std::fs::read_dir(gpt2_fixture()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

fn write_lines(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// `n` alpaca rows.
fn instructions(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "instruction": format!("What is {} plus {}?", i % 5 + 1, i / 5 + 1),
                "output": format!("The answer is {}.", i % 5 + i / 5 + 2),
            })
            .to_string()
        })
        .collect()
}

/// `n` prompt/chosen/rejected rows.
fn preferences(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "prompt": format!("Can you add {} and {}?", i % 5 + 1, i / 5 + 1),
                "chosen": "Yes, gladly.",
                "rejected": "No.",
            })
            .to_string()
        })
        .collect()
}

/// `--set` flags for a quick run of `max_iters` steps (e.g. "max_iters=4") on small batches.
fn short_run(max_iters: &str) -> Vec<&str> {
    let mut flags = vec!["--set", max_iters];
    for kv in [
        "eval_interval=2",
        "eval_iters=1",
        "batch_size=4",
        "val_fraction=0.2",
    ] {
        flags.extend(["--set", kv]);
    }
    flags
}

/// `muse finetune MODEL --data sft.jsonl` with small LoRA adapters into `sft`, then `short`.
fn lora_finetune<'a>(model: &'a str, short: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "finetune",
        model,
        "--data",
        "sft.jsonl",
        "--lora",
        "r=4,alpha=8,dropout=0,targets=attn",
        "--out",
        "sft",
    ];
    args.extend_from_slice(short);
    args
}

/// Every path under `dir`, relative and sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Runs `muse ARGS` in `dir` and checks that it fails cleanly: exit code 1 or 2, every
/// `needle` in the message, no panic, and no file created or removed under `dir`.
fn fails_cleanly(dir: &Path, args: &[&str], needles: &[&str]) {
    let before = tree(dir);
    let out = muse(dir, args);
    let (stdout, stderr) = text(&out);
    let code = out.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "muse {args:?} exited with {code:?}\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "muse {args:?}: no '{n}' in\n{stderr}");
    }
    assert_eq!(tree(dir), before, "muse {args:?} left files behind");
}

#[test]
fn an_unsupported_model_type_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_fixture(tmp.path(), "bert-model");
    let config = model.join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"model_type\": \"gpt2\"", "\"model_type\": \"bert\"");
    assert!(text.contains("\"bert\""));
    std::fs::write(&config, text).unwrap();
    write_lines(&tmp.path().join("sft.jsonl"), &instructions(6));
    write_lines(&tmp.path().join("prefs.jsonl"), &preferences(6));

    let needles = ["model_type 'bert' is not supported", "gpt2", "llama"];
    fails_cleanly(
        tmp.path(),
        &[
            "finetune",
            "bert-model",
            "--data",
            "sft.jsonl",
            "--out",
            "o",
        ],
        &needles,
    );
    fails_cleanly(
        tmp.path(),
        &["align", "bert-model", "--dpo", "prefs.jsonl", "--out", "o"],
        &needles,
    );
    fails_cleanly(tmp.path(), &["sample", "bert-model"], &needles);
}

#[test]
fn a_model_folder_without_a_tokenizer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_fixture(tmp.path(), "no-tok");
    std::fs::remove_file(model.join("vocab.json")).unwrap();
    std::fs::remove_file(model.join("merges.txt")).unwrap();
    write_lines(&tmp.path().join("sft.jsonl"), &instructions(6));
    write_lines(&tmp.path().join("prefs.jsonl"), &preferences(6));

    let needles = ["no-tok has no tokenizer.json", "--tokenizer"];
    fails_cleanly(
        tmp.path(),
        &["finetune", "no-tok", "--data", "sft.jsonl", "--out", "o"],
        &needles,
    );
    fails_cleanly(
        tmp.path(),
        &["align", "no-tok", "--dpo", "prefs.jsonl", "--out", "o"],
        &needles,
    );
    fails_cleanly(
        tmp.path(),
        &["sample", "no-tok", "--prompt", "Hi", "--max-tokens", "2"],
        &needles,
    );
}

#[test]
fn a_malformed_jsonl_line_is_reported_with_its_number() {
    let tmp = tempfile::tempdir().unwrap();
    let model = gpt2_fixture();
    let model = model.to_str().unwrap();
    let mut rows = instructions(6);
    rows[2] = r#"{"instruction": "What is 1 plus 1?", "output": "#.into();
    write_lines(&tmp.path().join("sft.jsonl"), &rows);
    let mut prefs = preferences(6);
    prefs.insert(3, "not json at all".into());
    write_lines(&tmp.path().join("prefs.jsonl"), &prefs);

    let fix = "fix or remove that line";
    // Without --out the default run folder (runs/gpt2-sft) must not appear either.
    fails_cleanly(
        tmp.path(),
        &["finetune", model, "--data", "sft.jsonl"],
        &["sft.jsonl:3:", "not valid JSON", fix],
    );
    fails_cleanly(
        tmp.path(),
        &["align", model, "--dpo", "prefs.jsonl", "--out", "o"],
        &["prefs.jsonl:4:", "not valid JSON", fix],
    );
    // A line that is JSON but not a row of the format names its line too.
    let mut rows = instructions(4);
    rows[1] = r#"["a list", "not an object"]"#.into();
    write_lines(&tmp.path().join("list.jsonl"), &rows);
    fails_cleanly(
        tmp.path(),
        &["finetune", model, "--data", "list.jsonl", "--out", "o"],
        &["list.jsonl:2:", "expected a JSON object"],
    );
}

#[test]
fn preference_rows_without_chosen_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = gpt2_fixture();
    let mut prefs = preferences(4);
    prefs[1] =
        serde_json::json!({"prompt": "Hi", "answer": "Hello", "rejected": "Go away."}).to_string();
    write_lines(&tmp.path().join("prefs.jsonl"), &prefs);
    fails_cleanly(
        tmp.path(),
        &[
            "align",
            model.to_str().unwrap(),
            "--dpo",
            "prefs.jsonl",
            "--out",
            "o",
        ],
        &[
            "prefs.jsonl:2:",
            "no 'chosen' field",
            "needs 'chosen' and 'rejected'",
        ],
    );
}

#[test]
fn lora_finetune_samples_and_aligns() {
    let tmp = tempfile::tempdir().unwrap();
    let model = gpt2_fixture();
    let model = model.to_str().unwrap();
    write_lines(&tmp.path().join("sft.jsonl"), &instructions(20));
    write_lines(&tmp.path().join("prefs.jsonl"), &preferences(10));
    let short = short_run("max_iters=4");
    let args = lora_finetune(model, &short);
    let out = muse(tmp.path(), &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("held-out loss per response token"),
        "{stderr}"
    );
    assert!(stdout.contains("AI-generated"), "{stdout}");
    for f in [
        "adapter.safetensors",
        "adapter_config.json",
        "MODEL_CARD.md",
    ] {
        assert!(tmp.path().join("sft").join(f).is_file(), "{f} missing");
    }

    // The same --out again needs --resume or --force, and leaves the run as it was.
    fails_cleanly(tmp.path(), &args, &["already exists", "--force"]);

    let out = muse(
        tmp.path(),
        &[
            "sample",
            "sft",
            "--temperature",
            "0",
            "--max-tokens",
            "6",
            "--prompt",
            "User: What is 2 plus 3?\nAssistant:",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));

    let mut args = vec!["align", "sft", "--dpo", "prefs.jsonl", "--out", "dpo"];
    args.extend(&short);
    let out = muse(tmp.path(), &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("held-out preference accuracy"), "{stderr}");
    assert!(tmp.path().join("dpo/MODEL_CARD.md").is_file());
}

/// A GGUF file is a base like any other: LoRA over its weights widened to f32, with the
/// tokenizer, BOS rule, EOS and chat template of its metadata written into the run, which
/// `muse sample` and `muse align` then read back.
#[test]
fn lora_finetune_and_align_from_a_gguf_file() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures/gguf/tiny_llama_q4_1.gguf");
    write_lines(&tmp.path().join("sft.jsonl"), &instructions(20));
    write_lines(&tmp.path().join("prefs.jsonl"), &preferences(10));
    let short = short_run("max_iters=2");
    let args = lora_finetune(gguf.to_str().unwrap(), &short);
    let out = muse(tmp.path(), &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let run = tmp.path().join("sft");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    let tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert!(tok["add_bos_token"].is_boolean(), "{tok}");
    assert!(tok["chat_template"].is_string(), "{tok}");

    let out = muse(
        tmp.path(),
        &[
            "sample",
            "sft",
            "--temperature",
            "0",
            "--max-tokens",
            "4",
            "--prompt",
            "Hi",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));

    let mut args = vec!["align", "sft", "--dpo", "prefs.jsonl", "--out", "dpo"];
    args.extend(&short);
    let out = muse(tmp.path(), &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("held-out preference accuracy"), "{stderr}");
}
