//! `muse eval MODEL`: parse, call `run::eval`, print the figures (or one JSON object).
//! `muse eval --hyp FILE --ref FILE`: BLEU and chrF of two text files (`run::eval_files`).

use std::path::PathBuf;

use muse_core::run::{ClassifierChoice, EvalReport, EvalRequest};

use super::common::DeviceArgs;

/// Evaluate a model as its family is judged: a language model's loss, perplexity and bits per
/// character on its validation split (or --data); a VAE's test loss and importance-sampled
/// NLL; FID and class coverage of generated images through the reference classifier. With
/// --hyp and --ref instead of a model: corpus BLEU and chrF of any translation (sacreBLEU's
/// defaults and signatures).
#[derive(clap::Args)]
pub struct Args {
    /// The run directory or model folder to evaluate (not with --hyp/--ref).
    #[arg(required_unless_present = "hyp", conflicts_with = "hyp")]
    run: Option<PathBuf>,
    /// Translations to score, one sentence a line (with --ref): prints corpus BLEU (13a
    /// tokens, exponential smoothing) and chrF (character order 6, beta 2) as sacreBLEU does.
    #[arg(
        long,
        value_name = "FILE",
        requires = "reference",
        help_heading = "Translations"
    )]
    hyp: Option<PathBuf>,
    /// The reference translations, line by line with --hyp (one reference per line).
    #[arg(
        long = "ref",
        value_name = "FILE",
        requires = "hyp",
        help_heading = "Translations"
    )]
    reference: Option<PathBuf>,
    /// Text: a UTF-8 file or dataset name instead of the validation split (needed for a
    /// Hugging Face folder). Images: NAME[:split] or a folder instead of the run's test split.
    /// Translation: a pair file (TSV / JSONL) whose fixed split's test part is translated.
    #[arg(long)]
    data: Option<String>,
    /// Text: windows per batch. Translation: sentences translated together.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
    /// Images: the reference classifier run for FID and class coverage
    /// [default: runs/classifier-<the run's dataset>, skipped with a note when missing].
    #[arg(long, conflicts_with = "no_classifier", help_heading = "Image models")]
    classifier: Option<PathBuf>,
    /// Images: skip FID and class coverage (no classifier needed).
    #[arg(long, help_heading = "Image models")]
    no_classifier: bool,
    /// Images: generated images for FID and coverage, compared with the whole test split
    /// [default: 10000]; as many real training images give the FID floor printed beside it.
    /// Text-to-image: samples per prompt split [default: 400]. A classifier run: training
    /// images in its FID sanity figure [default: as many as the test split].
    #[arg(long, help_heading = "Image models")]
    samples: Option<usize>,
    /// Diffusion: DDIM steps per sample [default: 50].
    #[arg(long, help_heading = "Image models")]
    steps: Option<usize>,
    /// Diffusion: classifier-free guidance weight [default: 3 for class labels, 4 for
    /// prompts].
    #[arg(long, help_heading = "Image models")]
    guidance: Option<f64>,
    /// VAE: importance samples per test image for the NLL estimate (0: skip it).
    #[arg(long, default_value_t = 500, help_heading = "Image models")]
    iwae_k: usize,
    /// VAE: test images for the NLL estimate (0: all).
    #[arg(long, default_value_t = 0, help_heading = "Image models")]
    iwae_images: usize,
    /// Translation: translate only the first N sentences of the test split.
    #[arg(long, value_name = "N", help_heading = "Translation models")]
    limit: Option<usize>,
    /// Translation: beam size of the second pass after greedy search (1: greedy only).
    #[arg(long, default_value_t = 4, help_heading = "Translation models")]
    beam: usize,
    /// Seed of the generated samples and the evaluation noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if let (Some(hyp), Some(reference)) = (&a.hyp, &a.reference) {
        let report = muse_core::run::eval_files(hyp, reference)?;
        print(&report, a.json);
        return Ok(());
    }
    let Some(model) = a.run else {
        anyhow::bail!("give a run directory to evaluate, or --hyp FILE --ref FILE");
    };
    let req = EvalRequest {
        model,
        data: a.data,
        batch_size: a.batch_size,
        classifier: match (a.classifier, a.no_classifier) {
            (_, true) => ClassifierChoice::Off,
            (Some(dir), _) => ClassifierChoice::At(dir),
            _ => ClassifierChoice::Default,
        },
        samples: a.samples,
        steps: a.steps,
        guidance: a.guidance,
        iwae_k: a.iwae_k,
        iwae_images: a.iwae_images,
        limit: a.limit,
        beam: a.beam,
        seed: a.seed,
        device: a.device.device()?,
    };
    let report = muse_core::run::eval(&req)?;
    print(&report, a.json);
    Ok(())
}

fn print(report: &EvalReport, json: bool) {
    if json {
        println!("{}", report.json);
    } else {
        for line in &report.lines {
            println!("{line}");
        }
    }
}
