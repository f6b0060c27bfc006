//! `muse export RUN --format hf -o DIR`: write a run or model folder in another tool's format.

use std::path::PathBuf;

use muse_core::run::export_hf;

/// Export a model for other tools. `--format hf` writes a Hugging Face folder (config.json,
/// model.safetensors, tokenizer.json, tokenizer_config.json with the chat template) that
/// `transformers.AutoModelForCausalLM.from_pretrained` and `AutoTokenizer` load.
#[derive(clap::Args)]
pub struct Args {
    /// The run directory (`muse train --out`), a Hugging Face model folder (gpt2, llama), or a
    /// llama2.c checkpoint file (.bin, with --tokenizer).
    run: PathBuf,
    /// Output format: hf (a Hugging Face transformers folder).
    #[arg(long, value_enum, default_value_t = Format::Hf)]
    format: Format,
    /// The folder to write (created; must be empty unless --force).
    #[arg(short, long)]
    out: PathBuf,
    /// Tokenizer to export instead of the source's: a tokenizer.json, SentencePiece
    /// tokenizer.model or llama2.c tokenizer.bin (required for a .bin checkpoint).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Write into --out even when it already holds files (they are replaced).
    #[arg(long)]
    force: bool,
    /// Fold the run's LoRA adapter (adapter.safetensors) into the exported weights.
    #[arg(long)]
    merge_lora: bool,
}

/// Export formats.
#[derive(clap::ValueEnum, Clone, Copy)]
enum Format {
    /// Hugging Face transformers folder.
    Hf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let Format::Hf = a.format;
    let report = export_hf(
        &a.run,
        a.tokenizer.as_deref(),
        &a.out,
        a.force,
        a.merge_lora,
    )?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    println!(
        "exported {} ({}) to {}: {}",
        a.run.display(),
        report.model_type,
        report.out.display(),
        report.files.join(", ")
    );
    eprintln!(
        "next: AutoModelForCausalLM.from_pretrained(\"{0}\") and AutoTokenizer.from_pretrained(\"{0}\") \
         in Python, or muse sample {0}",
        report.out.display()
    );
    Ok(())
}
