//! `muse export RUN --format hf|gguf -o OUT`: write a run or model in another tool's format.

use std::path::PathBuf;

use muse_core::run::export::GgufQuant;
use muse_core::run::{export_gguf, export_hf};

/// Export a model for other tools. `--format hf` writes a Hugging Face folder (config.json,
/// model.safetensors, tokenizer.json, tokenizer_config.json with the chat template) that
/// `transformers.AutoModelForCausalLM.from_pretrained` and `AutoTokenizer` load. `--format gguf`
/// writes one GGUF file that llama.cpp and Ollama load (llama architecture: Muse llama runs,
/// Hugging Face llama folders, llama2.c checkpoints; gpt2 architecture: Muse GPT runs with a
/// BPE tokenizer, Hugging Face gpt2 folders; GGUF files, re-quantised), with the tokenizer,
/// special tokens and chat template.
#[derive(clap::Args)]
pub struct Args {
    /// The run directory (`muse train --out`), a Hugging Face model folder (gpt2, llama), a
    /// llama2.c checkpoint file (.bin, with --tokenizer), or a GGUF file (--format gguf).
    run: PathBuf,
    /// Output format: hf (a Hugging Face transformers folder) or gguf (a llama.cpp file).
    #[arg(long, value_enum, default_value_t = Format::Hf)]
    format: Format,
    /// What to write: the folder for hf (created; must be empty unless --force), the file for
    /// gguf (e.g. model.gguf; must not exist unless --force).
    #[arg(short, long)]
    out: PathBuf,
    /// GGUF type of the weight matrices: f32, f16 (default), q8_0, q4_0 or q4_1 (norms stay
    /// f32; a matrix whose rows do not split into blocks of 32 is written as f16).
    #[arg(long)]
    quant: Option<String>,
    /// Tokenizer to export instead of the source's: a tokenizer.json, SentencePiece
    /// tokenizer.model or llama2.c tokenizer.bin (required for a .bin checkpoint).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Write over --out even when it already holds files (they are replaced).
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
    /// One GGUF file for llama.cpp (llama or gpt2 architecture).
    Gguf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.format {
        Format::Hf => hf(a),
        Format::Gguf => gguf(a),
    }
}

fn hf(a: Args) -> anyhow::Result<()> {
    if a.quant.is_some() {
        return Err(muse_core::Error::usage(
            "--quant applies to --format gguf; a Hugging Face folder holds f32 weights",
        )
        .into());
    }
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

fn gguf(a: Args) -> anyhow::Result<()> {
    let quant: GgufQuant = a.quant.as_deref().unwrap_or("f16").parse()?;
    if a.out.as_os_str().is_empty() {
        return Err(muse_core::Error::usage(
            "-o is empty: pass the file to write, such as model.gguf",
        )
        .into());
    }
    let report = export_gguf(
        &a.run,
        a.tokenizer.as_deref(),
        &a.out,
        quant,
        a.force,
        a.merge_lora,
    )?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    println!(
        "exported {} ({}, {}) to {}: {} tensors, {:.1} MB",
        a.run.display(),
        report.architecture,
        report.quant.name(),
        report.out.display(),
        report.tensors,
        report.bytes as f64 / 1e6
    );
    eprintln!(
        "next: llama-cli -m {0} (llama.cpp), or muse sample {0}",
        report.out.display()
    );
    Ok(())
}
