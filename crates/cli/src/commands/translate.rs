//! `muse translate RUN`: parse, call `run::translate`, print the translations.

use std::path::PathBuf;

use muse_core::run::{TranslateInput, TranslateOptions, TranslateRequest};

use super::common::DeviceArgs;

/// Translate with an encoder-decoder run (`muse train seq2seq`): one sentence given on the
/// command line, or a file of one sentence a line. Greedy search by default; --beam N keeps
/// N hypotheses and ranks finished ones by log-probability divided by GNMT's length penalty
/// ((5 + length) / 6)^alpha. Translations are AI-generated.
#[derive(clap::Args)]
pub struct Args {
    /// The translation run directory.
    run: PathBuf,
    /// The sentence to translate (not with --file).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    text: Option<String>,
    /// Translate every line of this UTF-8 file (empty lines stay empty).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Write the translations here, one a line, instead of printing them.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Draw the cross-attention of the translation (one sentence only): a PNG heat map, or an
    /// SVG with the tokens along its axes when FILE ends in .svg. Rows are output tokens,
    /// columns source tokens; darker is more attention (last decoder layer, mean of heads).
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    attention: Option<PathBuf>,
    /// Beam size: 1 is greedy search.
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// GNMT length-penalty exponent alpha of beam search (0: rank by log-probability alone;
    /// larger values favour longer translations).
    #[arg(long, default_value_t = 0.6)]
    length_penalty: f64,
    /// Sentences translated together.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let input = match (a.text, a.file) {
        (Some(t), _) => TranslateInput::Text(t),
        (None, Some(f)) => TranslateInput::File(f),
        (None, None) => anyhow::bail!("give a sentence to translate or --file FILE"),
    };
    let req = TranslateRequest {
        model: a.run,
        input,
        output: a.output,
        attention: a.attention,
        options: TranslateOptions {
            beam: a.beam,
            length_penalty: a.length_penalty,
            batch_size: a.batch_size,
        },
        device: a.device.device()?,
    };
    let report = muse_core::run::translate(&req)?;
    if let Some((path, map)) = &report.attention {
        eprintln!(
            "cross-attention written to {}: rows {:?}, columns {:?}",
            path.display(),
            map.output,
            map.source
        );
    }
    match &report.written {
        Some(path) => eprintln!(
            "{} translations in {:.1} s written to {} ({})",
            report.translations.len(),
            report.seconds,
            path.display(),
            muse_core::AI_GENERATED_NOTICE
        ),
        None => {
            for t in &report.translations {
                println!("{t}");
            }
        }
    }
    Ok(())
}
