//! `muse finetune RUN --data FILE --format alpaca|chat [--lora SPEC]`: supervised fine-tuning
//! of a pretrained language model into a new run directory.

use std::path::PathBuf;

use muse_core::data::instructions::InstructionFormat;
use muse_core::train::finetune::{FinetuneConfig, finetune, stored_config};

use super::tuning::{TuneArgs, print_samples, reply_fn};

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
    #[command(flatten)]
    tune: TuneArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let format: InstructionFormat = a.format.parse()?;
    let lora = a.tune.lora()?;
    let out = a
        .tune
        .out(&a.run, if lora.is_some() { "sft-lora" } else { "sft" });
    let sets = a.tune.sets(&[]);
    let (config, data) = if a.tune.resume {
        let (stored, data) = stored_config(&out)?;
        (muse_core::config::resolve(&stored, None, &sets)?, data)
    } else {
        let mut preset = FinetuneConfig::preset(format, lora);
        preset.data.format = format;
        let file = a.tune.config.as_deref();
        (
            muse_core::config::resolve(&preset, file, &sets)?,
            a.data.clone(),
        )
    };
    if a.tune.print_config {
        print!("{}", toml::to_string(&config)?);
        return Ok(());
    }
    config.validate()?;
    let method = config.preset_name();
    let job = a.tune.job(&a.run, ("data", data), method, config, out)?;
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
