//! Flags and helpers several subcommands share.

use muse_core::models::gpt::Gpt;
use muse_core::sample::{SamplingParams, complete};
use muse_core::tokenizer::TextTokenizer;
use muse_core::train::gpt::SampleConfig;

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

/// The sampler a training run uses for the samples it writes.
pub fn gpt_sample_fn()
-> impl Fn(&Gpt, &TextTokenizer, &SampleConfig, u64) -> muse_core::Result<String> {
    |model, tokenizer, cfg, seed| {
        let params = SamplingParams {
            temperature: cfg.temperature,
            top_k: cfg.top_k,
            ..Default::default()
        };
        complete(model, tokenizer, &cfg.prompt, cfg.tokens, params, seed)
    }
}
