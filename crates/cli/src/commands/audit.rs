//! `muse audit RUN`: parse, call `run::audit`, print the figures (or one JSON object).

use std::path::PathBuf;

use muse_core::run::AuditRequest;

use super::common::DeviceArgs;

/// Measure what a model gives back verbatim from its training data. Text models: the share of
/// generated spans found in the training text, next to the same share for held-out validation
/// text. Image models: each sample's nearest training image, next to the nearest-training
/// distances of held-out test images. The figures go into the run's MODEL_CARD.md.
#[derive(clap::Args)]
pub struct Args {
    /// The run directory to audit (`muse train --out`).
    run: PathBuf,
    /// Texts or images to generate [default: 20 texts, 1000 images].
    #[arg(long)]
    samples: Option<usize>,
    /// Text: length in characters of the spans looked up in the training text.
    #[arg(long, default_value_t = 50)]
    span: usize,
    /// Text: tokens per generated text [default: 500].
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Text: sampling temperature [default: 0.8].
    #[arg(long)]
    temperature: Option<f32>,
    /// Text: the training text to search (a UTF-8 file or dataset name) instead of the one the
    /// run's training.json names; needed for a model folder without training.json.
    #[arg(long)]
    data: Option<String>,
    /// Images: a classifier run trained on the same data; adds distances between the
    /// classifier's features to the pixel distances.
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Diffusion: DDIM steps per sample [default: 50].
    #[arg(long)]
    steps: Option<usize>,
    /// Seed of the generated samples.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Print the figures without writing them into MODEL_CARD.md.
    #[arg(long)]
    no_card: bool,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let report = muse_core::run::audit(&AuditRequest {
        model: a.run,
        samples: a.samples,
        span: a.span,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        data: a.data,
        classifier: a.classifier,
        steps: a.steps,
        seed: a.seed,
        write_card: !a.no_card,
        device: a.device.device()?,
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&report.json)?);
    } else {
        for line in &report.lines {
            println!("{line}");
        }
    }
    if let Some(card) = &report.card_path {
        eprintln!("wrote the figures into {}", card.display());
    }
    Ok(())
}
