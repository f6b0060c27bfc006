//! `muse align RUN --dpo prefs.jsonl --beta 0.1 [--lora SPEC]`: preference alignment with
//! Direct Preference Optimization into a new run directory.

use std::path::PathBuf;

use muse_core::run::Method;

use super::common::print_outcome;
use super::tuning::TuneArgs;

/// Align a language model to preference pairs with DPO (Rafailov et al. 2023) against a frozen
/// reference copy of it. Logs the loss, reward margins and held-out preference accuracy.
#[derive(clap::Args)]
pub struct Args {
    /// The model to align: a Muse run (often a `muse finetune` run), a Hugging Face gpt2/llama
    /// folder, a GGUF Llama file (widened to f32), or a llama2.c .bin checkpoint (with
    /// --tokenizer).
    run: PathBuf,
    /// Preference pairs: a JSONL file of {"prompt", "chosen", "rejected"} (the prompt goes
    /// through the chat template), of HH-RLHF {"chosen", "rejected"} dialogues (the shared
    /// beginning is the prompt; .jsonl.gz works), or `hh-rlhf`.
    #[arg(long, value_name = "FILE")]
    dpo: Option<String>,
    /// DPO's beta: how strongly the policy is held to the reference (smaller lets it move
    /// further).
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// Use prompt + reply as raw text even when pairs have a prompt (no chat template).
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    tune: TuneArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let method = Method::Dpo {
        data: a.dpo,
        beta: a.beta,
        raw: a.raw,
    };
    print_outcome(muse_core::run::tune(a.tune.request(a.run, method)?)?);
    Ok(())
}
