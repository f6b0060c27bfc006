//! Flags and printing several subcommands share.

use muse_core::run::TrainOutcome;

/// `--device`.
#[derive(clap::Args, Clone)]
pub struct DeviceArgs {
    /// Where to run: cpu, cuda, cuda:N, or auto (CUDA when built with it and present).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl DeviceArgs {
    pub fn device(&self) -> muse_core::Result<muse_core::device::Device> {
        muse_core::device::parse_device(&self.device)
    }
}

/// Prints what a training command did: the config for `--print-config`; else the summary to
/// stderr, the result (a sample, a figure) to stdout, and what to run next.
pub fn print_outcome(outcome: TrainOutcome) {
    match outcome {
        TrainOutcome::Config(toml) => print!("{toml}"),
        TrainOutcome::Trained(s) => {
            eprintln!("{}", s.done);
            for line in &s.output {
                println!("{line}");
            }
            eprintln!("next: {}", s.next);
        }
    }
}

/// `--watermark-*`: bias generation towards a keyed green list that `muse detect` can find.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Watermark (Kirchenbauer et al. 2023)")]
pub struct WatermarkArgs {
    /// Secret key of the text watermark: with one, every generated token leans towards a
    /// green list that `muse detect --key` finds again (off without a key).
    #[arg(long, env = "MUSE_WATERMARK_KEY", hide_env_values = true)]
    pub watermark_key: Option<String>,
    /// Share of the vocabulary that is green at each step.
    #[arg(long, default_value_t = 0.25)]
    pub watermark_gamma: f64,
    /// Logit bias added to green tokens (higher: easier to detect, further from the model).
    #[arg(long, default_value_t = 2.0)]
    pub watermark_delta: f32,
    /// Seeding of the green list: prev-token (the previous token) or self-hash (the previous
    /// four tokens and the token itself; survives more edits).
    #[arg(long, default_value = "prev-token")]
    pub watermark_scheme: String,
}

impl WatermarkArgs {
    /// The watermark to apply, `None` without a key.
    pub fn watermark(&self) -> muse_core::Result<Option<muse_core::run::generation::Watermark>> {
        use muse_core::run::generation::{Scheme, Watermark};
        let Some(key) = &self.watermark_key else {
            return Ok(None);
        };
        let w = Watermark {
            key: key.clone(),
            gamma: self.watermark_gamma,
            delta: self.watermark_delta,
            scheme: Scheme::parse(&self.watermark_scheme)?,
        };
        w.validate()?;
        Ok(Some(w))
    }
}

/// How a text was watermarked and when to call it so (`muse detect`, `muse inspect --key`).
#[derive(clap::Args)]
pub struct DetectorArgs {
    /// Green share the text was generated with (--watermark-gamma).
    #[arg(long, default_value_t = 0.25)]
    pub gamma: f64,
    /// Seeding the text was generated with: prev-token or self-hash (--watermark-scheme).
    #[arg(long, default_value = "prev-token")]
    pub scheme: String,
    /// z-score above which the text counts as watermarked (4: a false alarm about once in
    /// 30,000 texts).
    #[arg(long, default_value_t = 4.0)]
    pub threshold: f64,
}
