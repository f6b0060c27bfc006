//! `muse detect`: parse, call `run::detect`, print the counts and the verdict.

use std::io::Read;
use std::path::PathBuf;

use muse_core::run::generation::Scheme;
use muse_core::run::{DetectReport, DetectRequest, Verdict};

use super::common::DetectorArgs;

/// Check whether a text carries Muse's watermark (`muse sample --watermark-key`): counts the
/// tokens on the key's green lists and tests them against chance. Needs the key and the
/// tokenizer of the model that wrote the text, not its weights.
#[derive(clap::Args)]
pub struct Args {
    /// The text file to check, or - for standard input.
    file: PathBuf,
    /// The secret key the text was generated with.
    #[arg(long, env = "MUSE_WATERMARK_KEY", hide_env_values = true)]
    key: String,
    /// The generating model's tokenizer: a tokenizer.json, a run or model folder, a GGUF file,
    /// or gpt2.
    #[arg(long, visible_alias = "model")]
    tokenizer: PathBuf,
    #[command(flatten)]
    detector: DetectorArgs,
    /// Score a repeated (context, token) pair every time it occurs (by default once, so a
    /// repeated phrase cannot inflate the count).
    #[arg(long)]
    count_repeats: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let text = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        read_text(&a.file)?
    };
    let report = muse_core::run::detect_watermark(&DetectRequest {
        text,
        key: a.key,
        tokenizer: a.tokenizer,
        gamma: a.detector.gamma,
        scheme: Scheme::parse(&a.detector.scheme)?,
        threshold: a.detector.threshold,
        count_repeats: a.count_repeats,
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    print_report(&report, a.detector.gamma);
    Ok(())
}

/// The counts, the statistics and the verdict, one per line (also `muse inspect --key`).
pub fn print_report(report: &DetectReport, gamma: f64) {
    let d = &report.detection;
    println!("tokens      {} ({} scored)", report.tokens, d.scored_tokens);
    println!(
        "green       {} ({:.1}%, expected {:.1}% without the watermark)",
        d.green_tokens,
        d.green_share * 100.0,
        gamma * 100.0
    );
    println!("z-score     {:.2}", d.z);
    println!("p-value     {:.3e}", d.p_value);
    match &report.verdict {
        Verdict::Watermarked => println!(
            "verdict     watermarked (z > {}): generated with this key",
            report.threshold
        ),
        Verdict::NotWatermarked => println!(
            "verdict     not watermarked with this key (z <= {}); a text from a model with \
             another tokenizer cannot be judged with this one",
            report.threshold
        ),
        Verdict::CannotJudge(why) => println!("verdict     cannot judge: {why}"),
    }
}

fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    if path.is_dir() {
        anyhow::bail!(
            "{} is a folder: give the text file to check",
            path.display()
        );
    }
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))
}
