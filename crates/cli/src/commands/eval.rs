//! `muse eval RUN`: loss, perplexity and bits per character of a trained language model.

use std::path::PathBuf;

use muse_core::eval::eval_text;

use super::common::DeviceArgs;

/// Evaluate a run on its validation split (default) or on a given text.
#[derive(clap::Args)]
pub struct Args {
    /// The run directory to evaluate.
    run: PathBuf,
    /// Evaluate on this text (a UTF-8 file or dataset name) instead of the validation split.
    #[arg(long)]
    data: Option<String>,
    /// Windows per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    image: super::eval_image::ImageEvalArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if super::eval_image::run(
        &a.run,
        a.data.as_deref(),
        a.json,
        &a.image,
        &a.device.device()?,
    )? {
        return Ok(());
    }
    if a.batch_size == 0 {
        anyhow::bail!(muse_core::Error::usage("--batch-size must be at least 1"));
    }
    let r = eval_text(&a.run, a.data.as_deref(), a.batch_size, &a.device.device()?)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}: {} tokens", r.source, r.tokens);
        println!("loss        {:.4} nats/token", r.loss);
        println!("perplexity  {:.3}", r.perplexity);
        println!("bits/char   {:.4}", r.bits_per_char);
        println!("bits/byte   {:.4}", r.bits_per_byte);
    }
    Ok(())
}
