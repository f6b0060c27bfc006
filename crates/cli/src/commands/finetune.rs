//! `muse finetune RUN --data FILE --format alpaca|chat [--lora SPEC]`: supervised fine-tuning
//! of a pretrained language model into a new run directory.

use std::path::PathBuf;

use muse_core::run::Method;

use super::common::print_outcome;
use super::tuning::TuneArgs;

/// Fine-tune a language model on instructions (loss on the replies only). Writes a new run
/// folder with the chat template, metrics, loss plot and model card; `muse chat` talks to it.
#[derive(clap::Args)]
pub struct Args {
    /// The model to start from: a Muse run (`muse train --out`), a Hugging Face gpt2/llama
    /// folder, a GGUF Llama file (widened to f32; its tokenizer and chat template come along),
    /// or a llama2.c .bin checkpoint (with --tokenizer).
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
    let method = Method::Sft {
        data: a.data,
        format: a.format.parse()?,
    };
    print_outcome(muse_core::run::tune(a.tune.request(a.run, method)?)?);
    Ok(())
}
