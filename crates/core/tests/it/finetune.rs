//! Supervised fine-tuning (`train::finetune`): instruction rows become ids with the loss on the
//! replies only, padded batches mask their padding, and a short run on the tiny GPT-2 fixture
//! lowers the held-out loss per response token (full and LoRA).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use muse_core::data::instructions::{
    InstructionFormat, TokenizedExample, read_instructions, tokenize_conversation,
};
use muse_core::models::pretrained::{TextLm, load_pretrained, load_tensors};
use muse_core::nn::Dropout;
use muse_core::nn::lora::{self, LoraConfig};
use muse_core::nn::ops::IGNORE_INDEX;
use muse_core::run_dir::OnExisting;
use muse_core::sample::open_text_model;
use muse_core::tokenizer::TextTokenizer;
use muse_core::tokenizer::chat::{ChatMessage, ChatTemplate, Role};
use muse_core::train::finetune::{FinetuneConfig, FinetuneJob, finetune, prepare_sft};
use muse_core::train::tuning::report::response_loss;
use muse_core::train::tuning::{example_io, pad_batch};

use crate::common::fixture;

/// The GPT-2 fixture's byte-level BPE (vocab.json + merges.txt, `<|endoftext|>` special).
fn gpt2_tokenizer() -> TextTokenizer {
    muse_core::tokenizer::files::find_in_dir(&fixture("hf/gpt2"))
        .unwrap()
        .unwrap()
}

fn msg(role: Role, text: &str) -> ChatMessage {
    ChatMessage::new(role, text)
}

/// The maximal runs of trainable ids, decoded.
fn trainable_runs(tok: &TextTokenizer, ex: &TokenizedExample) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    for (&id, &t) in ex.ids.iter().zip(&ex.trainable) {
        if t {
            current.push(id);
        } else if !current.is_empty() {
            runs.push(tok.decode(&std::mem::take(&mut current)).unwrap());
        }
    }
    if !current.is_empty() {
        runs.push(tok.decode(&current).unwrap());
    }
    runs
}

#[test]
fn only_reply_tokens_are_trainable() {
    let tok = gpt2_tokenizer();
    let eos = tok.eos_id();
    assert!(eos.is_some(), "the fixture has <|endoftext|>");
    let t = ChatTemplate::plain();
    let convo = [
        msg(Role::User, "Add 2 and 3."),
        msg(Role::Assistant, "The sum is 5."),
    ];
    let ex = tokenize_conversation(&tok, &t, &convo, None, eos).unwrap();
    assert_eq!(ex.ids.len(), ex.trainable.len());
    assert_eq!(
        tok.decode(&ex.ids).unwrap(),
        "User: Add 2 and 3.\nAssistant: The sum is 5.\n<|endoftext|>"
    );
    // The prompt (user turn and "Assistant:") is never trainable; the reply, the end of the
    // turn and end-of-text are. The space after "Assistant:" belongs to the reply, as at chat
    // time the prompt ends with "Assistant:".
    let first = ex.trainable.iter().position(|&x| x).unwrap();
    assert!(ex.trainable[first..].iter().all(|&x| x));
    assert_eq!(
        tok.decode(&ex.ids[..first]).unwrap(),
        t.render(&convo[..1], true)
    );
    assert_eq!(trainable_runs(&tok, &ex), [" The sum is 5.\n<|endoftext|>"]);

    // Several turns: both replies train, the system prompt and the second question do not.
    let convo = [
        msg(Role::System, "Be brief."),
        msg(Role::User, "Hi"),
        msg(Role::Assistant, "Hello."),
        msg(Role::User, "Bye"),
        msg(Role::Assistant, "Goodbye."),
    ];
    let ex = tokenize_conversation(&tok, &t, &convo, None, eos).unwrap();
    assert_eq!(
        trainable_runs(&tok, &ex),
        [" Hello.\n", " Goodbye.\n<|endoftext|>"]
    );
    let prompt_ids: Vec<u32> = ex
        .ids
        .iter()
        .zip(&ex.trainable)
        .filter(|(_, t)| !**t)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        tok.decode(&prompt_ids).unwrap(),
        "Be brief.\n\nUser: Hi\nAssistant:User: Bye\nAssistant:"
    );

    // ChatML: the turn's end marker is learnt, the role headers are not. A conversation that
    // ends with a user turn gets no end-of-text.
    let ex = tokenize_conversation(&tok, &ChatTemplate::chatml(), &convo[1..4], None, eos).unwrap();
    assert_eq!(trainable_runs(&tok, &ex), ["Hello.<|im_end|>\n"]);
    assert_ne!(ex.ids.last().copied(), eos);
}

#[test]
fn llama_examples_start_with_an_untrained_bos() {
    let dir = fixture("hf/llama_gqa");
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let convo = [msg(Role::User, "Hi there"), msg(Role::Assistant, "Hello")];
    let ex = tokenize_conversation(&tok, &ChatTemplate::plain(), &convo, Some(1), Some(2)).unwrap();
    assert_eq!((ex.ids[0], ex.trainable[0]), (1, false));
    assert_eq!(
        (*ex.ids.last().unwrap(), *ex.trainable.last().unwrap()),
        (2, true)
    );
    let first = ex.trainable.iter().position(|&x| x).unwrap();
    assert!(ex.trainable[first..].iter().all(|&x| x));
    let reply = tok.decode(&ex.ids[first..ex.ids.len() - 1]).unwrap();
    assert_eq!(reply.trim(), "Hello");
}

#[test]
fn targets_and_padding_are_masked() {
    // ids 10..15 with the last three trainable: inputs are ids[..5]; a target is the next id
    // where that id is trainable, else ignored.
    let long = TokenizedExample {
        ids: vec![10, 11, 12, 13, 14, 15],
        trainable: vec![false, false, false, true, true, true],
    };
    let (inputs, targets) = example_io(&long);
    assert_eq!(inputs, [10, 11, 12, 13, 14]);
    let x = IGNORE_INDEX;
    assert_eq!(targets, [x, x, 13, 14, 15]);

    let short = TokenizedExample {
        ids: vec![20, 21, 22],
        trainable: vec![false, true, true],
    };
    let b = pad_batch(&[&long, &short], 7, &Device::Cpu).unwrap();
    assert_eq!(b.inputs.dims(), [2, 5]);
    let inputs: Vec<Vec<u32>> = b.inputs.to_vec2().unwrap();
    let targets: Vec<Vec<u32>> = b.targets.to_vec2().unwrap();
    assert_eq!(inputs, [vec![10, 11, 12, 13, 14], vec![20, 21, 7, 7, 7]]);
    assert_eq!(targets, [vec![x, x, 13, 14, 15], vec![21, 22, x, x, x]]);
    assert_eq!((b.n_targets, b.n_tokens), (5, 7));
}

/// Mean negative log-likelihood of the trainable ids of `examples`, each run alone (no
/// padding) through `model`, computed from its logits by hand.
fn reply_nll_by_hand(model: &TextLm, examples: &[TokenizedExample]) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for ex in examples {
        let len = ex.ids.len() - 1;
        let x = Tensor::from_vec(ex.ids[..len].to_vec(), (1, len), &Device::Cpu).unwrap();
        let logits = model.forward(&x, &mut Dropout::eval()).unwrap(); // (T, V)
        let logp: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, D::Minus1)
            .unwrap()
            .to_vec2()
            .unwrap();
        for i in 0..len {
            if ex.trainable[i + 1] {
                sum -= logp[i][ex.ids[i + 1] as usize] as f64;
                n += 1;
            }
        }
    }
    sum / n as f64
}

#[test]
fn padded_batch_loss_counts_reply_tokens_only() {
    let tok = gpt2_tokenizer();
    let eos = tok.eos_id();
    let t = ChatTemplate::plain();
    let examples: Vec<TokenizedExample> = [
        ("Say hi.", "Hi!"),
        (
            "Name three colours, please.",
            "Red, green and a rather long blue.",
        ),
        ("Count to two.", "One, two."),
    ]
    .iter()
    .map(|(q, a)| {
        let convo = [msg(Role::User, q), msg(Role::Assistant, a)];
        tokenize_conversation(&tok, &t, &convo, None, eos).unwrap()
    })
    .collect();
    let model = load_pretrained(&fixture("hf/gpt2"), &Device::Cpu).unwrap();
    let want = reply_nll_by_hand(&model, &examples);

    let refs: Vec<&TokenizedExample> = examples.iter().collect();
    for pad in [0, 17, 300] {
        let b = pad_batch(&refs, pad, &Device::Cpu).unwrap();
        let loss: f32 = model
            .loss(&b.inputs, &b.targets, &mut Dropout::eval())
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(
            (loss as f64 - want).abs() < 1e-4 * want,
            "pad {pad}: batch loss {loss}, by hand {want}"
        );
    }
    let evaluated = response_loss(&model, &examples, 2, 10, 0, &Device::Cpu).unwrap();
    assert!(
        (evaluated - want).abs() < 1e-4 * want,
        "{evaluated} vs {want}"
    );
}

/// `n` alpaca rows whose replies share a pattern a small model learns quickly.
fn write_alpaca(path: &Path, n: usize) {
    let mut text = String::new();
    for i in 0..n {
        let (a, b) = (i % 7 + 1, i / 7 + 2);
        let row = serde_json::json!({
            "instruction": format!("What is {a} plus {b}?"),
            "input": "",
            "output": format!("The answer is {}.", a + b),
        });
        text.push_str(&row.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn job(data: &Path, out: &Path, lora: Option<LoraConfig>) -> FinetuneJob {
    let mut config = FinetuneConfig::preset(InstructionFormat::Alpaca, lora);
    let t = &mut config.train;
    t.max_iters = 30;
    t.batch_size = 8;
    t.warmup_iters = 2;
    t.lr_decay_iters = 30;
    t.lr = if config.lora.is_some() { 1e-2 } else { 3e-3 };
    t.min_lr = t.lr / 10.0;
    t.eval_interval = 30;
    t.eval_iters = 4;
    t.log_interval = 100;
    config.data.val_fraction = 0.2;
    FinetuneJob {
        base: fixture("hf/gpt2"),
        tokenizer: None,
        data: data.display().to_string(),
        config,
        out: out.to_path_buf(),
        on_existing: OnExisting::Refuse,
        device: Device::Cpu,
    }
}

#[test]
fn held_out_examples_are_split_off_and_masked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train.jsonl");
    write_alpaca(&data, 40);
    let set = read_instructions(data.to_str().unwrap(), InstructionFormat::Alpaca).unwrap();
    assert_eq!(set.conversations.len(), 40);
    let base = muse_core::train::tuning::Base::load(&fixture("hf/gpt2"), None, true, &Device::Cpu)
        .unwrap();
    let sft = prepare_sft(&set, &base, &ChatTemplate::plain(), 65, 0.2).unwrap();
    assert_eq!((sft.train.len(), sft.val.len()), (32, 8));
    assert_eq!((sft.truncated, sft.dropped.total()), (0, 0));
    for ex in sft.train.iter().chain(&sft.val) {
        let runs = trainable_runs(&base.tokenizer, ex);
        assert_eq!(runs.len(), 1);
        assert!(
            runs[0].starts_with(" The answer is ") && runs[0].ends_with(".\n<|endoftext|>"),
            "{runs:?}"
        );
    }
    // Held-out prompts end where a reply starts.
    for p in &sft.val_prompts {
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].role, Role::User);
    }
}

#[test]
fn full_finetuning_lowers_held_out_reply_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train.jsonl");
    write_alpaca(&data, 40);
    let out = tmp.path().join("run");
    let r = finetune(job(&data, &out, None), false).unwrap();
    assert_eq!(r.steps, 30);
    assert_eq!((r.train_examples, r.val_examples), (32, 8));
    assert_eq!(
        r.trainable, r.params,
        "full fine-tuning trains every weight"
    );
    assert!(
        r.val_loss < 0.7 * r.val_loss_start,
        "held-out loss per reply token {} -> {}",
        r.val_loss_start,
        r.val_loss
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.json",
        "training.json",
        "state.json",
        "metrics.jsonl",
        "MODEL_CARD.md",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join(lora::ADAPTER_FILE).exists());
    // The run folder is a model folder: it reloads with the trained weights.
    let reloaded = load_pretrained(&out, &Device::Cpu).unwrap();
    let examples = {
        let tok = gpt2_tokenizer();
        let convo = [
            msg(Role::User, "What is 3 plus 9?"),
            msg(Role::Assistant, "The answer is 12."),
        ];
        vec![
            tokenize_conversation(&tok, &ChatTemplate::plain(), &convo, None, tok.eos_id())
                .unwrap(),
        ]
    };
    let base = load_pretrained(&fixture("hf/gpt2"), &Device::Cpu).unwrap();
    assert!(reply_nll_by_hand(&reloaded, &examples) < reply_nll_by_hand(&base, &examples));
    // `muse sample` opens it as a Muse GPT run with the same weights.
    let opened = open_text_model(&out, &Device::Cpu).unwrap();
    assert_eq!(opened.family, "gpt");
    let ids = &examples[0].ids;
    let x = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut cache = opened.model.new_cache(1).unwrap();
    let last = opened.model.forward_cached(&x, &mut cache).unwrap(); // (1, V)
    let full = reloaded.forward(&x, &mut Dropout::eval()).unwrap(); // (T, V)
    let full_last = full.narrow(0, ids.len() - 1, 1).unwrap();
    let diff: f32 = (last - full_last)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn lora_finetuning_trains_adapters_and_keeps_the_base() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train.jsonl");
    write_alpaca(&data, 40);
    let out = tmp.path().join("run");
    let lcfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["attn".into(), "mlp".into()],
    };
    let r = finetune(job(&data, &out, Some(lcfg)), false).unwrap();
    // 2 blocks x r (in + out): c_attn 4 (32 + 96), c_proj 4 (32 + 32), c_fc 4 (32 + 128),
    // mlp.c_proj 4 (128 + 32).
    assert_eq!(r.trainable, 2 * 4 * (128 + 64 + 160 + 160));
    assert!(
        r.val_loss < 0.8 * r.val_loss_start,
        "held-out loss per reply token {} -> {}",
        r.val_loss_start,
        r.val_loss
    );

    // model.safetensors is the base, bit for bit; the adapter moved.
    let (_, base) = load_tensors(&fixture("hf/gpt2"), &Device::Cpu).unwrap();
    let stored: HashMap<String, Tensor> =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(stored.len(), base.len());
    for (k, v) in &base {
        let diff: f32 = (v - &stored[k])
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(diff, 0.0, "{k} changed");
    }
    let adapter =
        candle_core::safetensors::load(out.join(lora::ADAPTER_FILE), &Device::Cpu).unwrap();
    assert_eq!(adapter.len(), 16);
    let b = &adapter["base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight"];
    assert_eq!(b.dims(), [32, 4]);
    let moved: f32 = b.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert!(moved > 0.0);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(lora::ADAPTER_CONFIG_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (config["r"].as_u64(), config["fan_in_fan_out"].as_bool()),
        (Some(4), Some(true))
    );

    // Sampling opens the run with its adapter merged: it scores the replies better than the
    // base does.
    let opened = open_text_model(&out, &Device::Cpu).unwrap();
    let tok = &opened.tokenizer;
    let ids = tok
        .encode("User: What is 3 plus 9?\nAssistant: The answer is")
        .unwrap();
    let next_logits = |m: &dyn muse_core::models::CausalLm| -> Vec<f32> {
        let mut cache = m.new_cache(1).unwrap();
        let x = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        m.forward_cached(&x, &mut cache)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let base_model = load_pretrained(&fixture("hf/gpt2"), &Device::Cpu).unwrap();
    let (a, b) = (next_logits(opened.model.as_ref()), next_logits(&base_model));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff > 1e-3, "the adapter is applied at sampling time");
}

#[test]
fn the_registered_instruction_data_reads_as_conversations() {
    // `--data instructions`: the alpaca-libre rows with status "ok" and a non-empty output
    // (1173 of 2375; 1202 are "ok", 29 of those have no output) and one example per instance
    // of the 175 Self-Instruct seed tasks (one instance each).
    let set = read_instructions("instructions", InstructionFormat::Alpaca).unwrap();
    assert_eq!(set.conversations.len(), 1173 + 175);
    assert_eq!(set.skipped, 2375 - 1173);
    for c in &set.conversations {
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].role, c[1].role), (Role::User, Role::Assistant));
        assert!(!c[1].content.trim().is_empty());
    }
}

/// Stopping after 6 steps and resuming to 12 gives the adapters of 12 uninterrupted steps
/// (adapter dropout on, so its seeding is part of what must line up).
#[test]
fn a_resumed_lora_run_equals_the_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train.jsonl");
    write_alpaca(&data, 24);
    let lcfg = LoraConfig {
        r: 2,
        alpha: 4.0,
        dropout: 0.1,
        targets: vec!["attn".into()],
    };
    let run = |out: &Path, iters: usize, on_existing: OnExisting| {
        let mut j = job(&data, out, Some(lcfg.clone()));
        j.config.train.max_iters = iters;
        j.config.train.eval_interval = 4;
        j.on_existing = on_existing;
        finetune(j, false).unwrap()
    };
    let whole = tmp.path().join("whole");
    run(&whole, 12, OnExisting::Refuse);
    let parts = tmp.path().join("parts");
    run(&parts, 6, OnExisting::Refuse);
    let r = run(&parts, 12, OnExisting::Resume);
    assert_eq!(r.steps, 12);
    let load = |dir: &Path| {
        candle_core::safetensors::load(dir.join(lora::ADAPTER_FILE), &Device::Cpu).unwrap()
    };
    let (a, b) = (load(&whole), load(&parts));
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        let x: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = b[k].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(x, y, "{k} differs after resume");
    }
}

#[test]
fn chat_rows_read_as_conversations_and_bad_rows_name_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let chat = tmp.path().join("chat.jsonl");
    let rows = [
        r#"[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]"#,
        "",
        r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}]}"#,
    ];
    std::fs::write(&chat, rows.join("\n")).unwrap();
    let set = read_instructions(chat.to_str().unwrap(), InstructionFormat::Chat).unwrap();
    assert_eq!(set.conversations.len(), 2);
    assert_eq!(set.conversations[1][0], msg(Role::System, "Be brief."));
    assert_eq!(set.conversations[1][2], msg(Role::Assistant, "Goodbye."));

    let bad = |name: &str, text: &str, format: InstructionFormat| -> String {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        let e = read_instructions(path.to_str().unwrap(), format).unwrap_err();
        assert!(!e.is_usage(), "bad data is an input error: {e}");
        e.to_string()
    };
    // Line numbers count blank lines too: the bad row is line 3.
    let no_reply = format!(
        "{}\n\n{}\n",
        rows[0], r#"[{"role": "user", "content": "Anyone?"}]"#
    );
    let e = bad("no_reply.jsonl", &no_reply, InstructionFormat::Chat);
    assert!(
        e.contains("no_reply.jsonl:3:") && e.contains("no assistant message"),
        "{e}"
    );
    let e = bad(
        "role.jsonl",
        r#"[{"role": "bot", "content": "x"}]"#,
        InstructionFormat::Chat,
    );
    assert!(
        e.contains("role.jsonl:1:") && e.contains("role 'bot'"),
        "{e}"
    );
    let e = bad(
        "alpaca.jsonl",
        "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"c\"}\n",
        InstructionFormat::Alpaca,
    );
    assert!(
        e.contains("alpaca.jsonl:2:") && e.contains("no 'output' field"),
        "{e}"
    );
    let e = bad(
        "chat_as_alpaca.jsonl",
        r#"[{"role": "user", "content": "Hi"}]"#,
        InstructionFormat::Alpaca,
    );
    assert!(
        e.contains("chat_as_alpaca.jsonl:1:") && e.contains("expected a JSON object"),
        "{e}"
    );
    let e = bad("empty.jsonl", "\n\n", InstructionFormat::Alpaca);
    assert!(e.contains("empty.jsonl is empty"), "{e}");
}
