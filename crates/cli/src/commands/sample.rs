//! `muse sample RUN`: generate from a trained run. Text models stream text to stdout.

use std::path::PathBuf;

use muse_core::run_dir::RunDir;

use super::common::DeviceArgs;
use super::sample_text::{self, TextArgs};

/// Generate from a trained run or a Hugging Face model folder. Text streams to stdout; every
/// output is labelled as AI-generated.
#[derive(clap::Args)]
pub struct Args {
    /// The run directory (`muse train --out`), a Hugging Face model folder (gpt2, llama), or a
    /// llama2.c checkpoint file (.bin, with --tokenizer).
    run: PathBuf,
    /// Seed of the sampling random stream (same seed, same output).
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    text: TextArgs,
    #[command(flatten)]
    image: super::sample_image::ImageArgs,
    #[command(flatten)]
    diffusion: super::diffusion::SampleArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    // A file is a llama2.c checkpoint; a folder says its family.
    let family = if a.run.is_file() {
        "llama2c".to_string()
    } else {
        RunDir::open(&a.run)?.family()?
    };
    let device = a.device.device()?;
    match family.as_str() {
        "vae" => super::sample_image::run_vae(&a.run, a.image, a.seed, &device),
        "gan" => super::gan::sample(&a.run, a.image, a.seed, &device),
        "diffusion" => super::diffusion::sample_run(&a.run, a.image, a.diffusion, a.seed, &device),
        _ => sample_text::run(&a.run, a.text, a.seed, &device),
    }
}
