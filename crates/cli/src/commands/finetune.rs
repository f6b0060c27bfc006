//! `muse finetune RUN --data FILE --format alpaca|chat [--lora SPEC]`: supervised fine-tuning
//! of a pretrained language model into a new run directory.

use std::path::{Path, PathBuf};

use muse_core::data::instructions::InstructionFormat;
use muse_core::models::CausalLm;
use muse_core::nn::lora::LoraConfig;
use muse_core::run_dir::OnExisting;
use muse_core::sample::{GenerateOptions, Sampler, SamplingParams, generate};
use muse_core::tokenizer::TextTokenizer;
use muse_core::train::finetune::{FinetuneConfig, FinetuneJob, finetune, stored_config};

use super::common::DeviceArgs;

/// Fine-tune a language model on instructions (loss on the replies only). Writes a new run
/// folder with the chat template, metrics, loss plot and model card; `muse chat` talks to it.
#[derive(clap::Args)]
pub struct Args {
    /// The model to start from: a Muse run (`muse train --out`), a Hugging Face gpt2/llama
    /// folder, or a llama2.c .bin checkpoint (with --tokenizer).
    run: PathBuf,
    /// Instruction data: a JSONL file, a folder of .jsonl files, or `instructions` (the
    /// alpaca-libre rows with status "ok" and the Self-Instruct seed tasks).
    #[arg(long, default_value = "instructions")]
    data: String,
    /// Line format: alpaca ({"instruction", "input", "output"}; seed tasks' "instances" too)
    /// or chat (a list of {"role", "content"} messages, or {"messages": [...]}).
    #[arg(long, default_value = "alpaca")]
    format: String,
    /// Train LoRA adapters instead of every weight, e.g.
    /// `r=8,alpha=16,dropout=0.05,targets=attn,mlp` (targets: attn, mlp, all, or layer names
    /// such as c_attn, q_proj, attn.c_proj). Missing keys take those defaults.
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "")]
    lora: Option<String>,
    /// Chat template stored in the run: base (the model's own; plain if it has none), plain,
    /// chatml, or a chat_template.json file.
    #[arg(long)]
    template: Option<String>,
    /// The run directory to write (default: runs/<model name>-sft, or -sft-lora).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A TOML file whose keys override the defaults (sections: train, data, lora).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one config key, e.g. `--set max_iters=100 --set lr=3e-4 --set val_fraction=0.1`
    /// (`--print-config` lists them all).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Continue the run in --out from its last checkpoint (its stored config, plus any --set).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete an existing --out folder and start over.
    #[arg(long)]
    force: bool,
    /// Print the resolved configuration as TOML and exit without training.
    #[arg(long)]
    print_config: bool,
    /// Tokenizer replacing the model's: a tokenizer.json, SentencePiece tokenizer.model or
    /// llama2.c tokenizer.bin (required for a llama2.c .bin checkpoint).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let format: InstructionFormat = a.format.parse()?;
    let lora = parse_lora(a.lora.as_deref())?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&a.run, if lora.is_some() { "sft-lora" } else { "sft" }));
    let mut sets = a.sets.clone();
    if let Some(t) = &a.template {
        sets.push(format!("data.template={t}"));
    }
    let (config, data) = if a.resume {
        let (stored, data) = stored_config(&out)?;
        (muse_core::config::resolve(&stored, None, &sets)?, data)
    } else {
        let mut preset = FinetuneConfig::preset(format, lora);
        preset.data.format = format;
        (
            muse_core::config::resolve(&preset, a.config.as_deref(), &sets)?,
            a.data.clone(),
        )
    };
    if a.print_config {
        print!("{}", toml::to_string(&config)?);
        return Ok(());
    }
    config.validate()?;
    let on_existing = match (a.resume, a.force) {
        (true, _) => OnExisting::Resume,
        (_, true) => OnExisting::Overwrite,
        _ => OnExisting::Refuse,
    };
    eprintln!(
        "run: {}  base: {}  data: {data}  method: {}",
        out.display(),
        a.run.display(),
        config.preset_name()
    );
    eprintln!("{}", toml::to_string(&config)?);
    let job = FinetuneJob {
        base: a.run.clone(),
        tokenizer: a.tokenizer.clone(),
        data,
        config,
        out,
        on_existing,
        device: a.device.device()?,
    };
    let reply = reply_fn();
    let r = finetune(job, Some(&reply))?;
    eprintln!(
        "done: {} steps in {:.0} s | held-out loss per response token {:.4} -> {:.4} | trained \
         {} of {} parameters ({:.2}%) | {} train / {} held-out examples | run in {}",
        r.steps,
        r.train_seconds,
        r.val_loss_start,
        r.val_loss,
        r.trainable,
        r.params,
        100.0 * r.trainable as f64 / r.params.max(1) as f64,
        r.train_examples,
        r.val_examples,
        r.run_dir.display()
    );
    print_samples(&r.samples);
    eprintln!(
        "next: muse chat {0}   |   muse sample {0} --prompt \"...\"",
        r.run_dir.display()
    );
    Ok(())
}

/// `--lora` (bare: the defaults) as a config; usage errors name the bad key.
pub fn parse_lora(spec: Option<&str>) -> anyhow::Result<Option<LoraConfig>> {
    match spec {
        None => Ok(None),
        Some(s) => Ok(Some(LoraConfig::parse(s).map_err(muse_core::Error::usage)?)),
    }
}

/// `runs/<name of the model folder or file>-<suffix>`.
pub fn default_out(base: &Path, suffix: &str) -> PathBuf {
    let name = base
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .unwrap_or_else(|| "model".into());
    PathBuf::from("runs").join(format!("{name}-{suffix}"))
}

/// Prints replies to held-out prompts, labelled AI-generated.
pub fn print_samples(samples: &[(String, String)]) {
    if samples.is_empty() {
        return;
    }
    println!(
        "--- replies to held-out prompts ({}) ---",
        muse_core::AI_GENERATED_NOTICE
    );
    for (prompt, reply) in samples {
        println!(
            "{prompt}{}{reply}",
            if prompt.ends_with(' ') { "" } else { " " }
        );
        println!("---");
    }
}

/// How the loops write replies to held-out prompts: up to 64 tokens at temperature 0.7, top-k
/// 50, stopping at the template's stop strings or end-of-text.
pub fn reply_fn()
-> impl Fn(&dyn CausalLm, &TextTokenizer, &[u32], &[String], u64) -> muse_core::Result<String> {
    |model, tokenizer, ids, stop, seed| {
        let params = SamplingParams {
            temperature: 0.7,
            top_k: 50,
            ..Default::default()
        };
        let opts = GenerateOptions {
            max_tokens: 64,
            stop: stop.to_vec(),
            stop_at_eos: true,
            candidates: 0,
        };
        let mut sampler = Sampler::new(params, seed);
        let g = generate(model, tokenizer, ids, &opts, &mut sampler, &mut |_| Ok(()))?;
        Ok(g.text.trim().to_string())
    }
}
