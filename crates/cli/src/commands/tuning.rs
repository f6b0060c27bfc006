//! The flags `muse finetune` and `muse align` share, and how they become a [`TuneRequest`].

use std::path::PathBuf;

use muse_core::run::{ConfigRequest, Method, StartMode, TuneRequest};

use super::common::DeviceArgs;

/// The flags of both tuning commands.
#[derive(clap::Args)]
pub struct TuneArgs {
    /// Train LoRA adapters instead of every weight, e.g.
    /// `r=8,alpha=16,dropout=0.05,targets=attn,mlp` (targets: attn, mlp, all, or layer names
    /// such as c_attn, q_proj, attn.c_proj). Missing keys take those defaults; a bare `--lora`
    /// takes them all.
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "")]
    pub lora: Option<String>,
    /// Chat template (stored in the run): base (the model's own; plain if it has none),
    /// plain, chatml, or a chat_template.json file.
    #[arg(long)]
    pub template: Option<String>,
    /// The run directory to write (default: runs/<model name>-<method>, e.g.
    /// runs/shakespeare-sft or runs/shakespeare-dpo-lora).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A TOML file whose keys override the defaults (sections: train, data, lora).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set max_iters=100 --set lr=1e-4`
    /// (`--print-config` lists them all).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Seed of data order, dropout and samples (same as `--set train.seed=N`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train exactly N optimizer steps (same as `--set train.max_iters=N`).
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,
    /// Continue the run in --out from its last checkpoint: repeat the command that started it
    /// and add --resume.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Delete an existing --out folder and start over.
    #[arg(long)]
    pub force: bool,
    /// Print the resolved configuration as TOML and exit without training.
    #[arg(long)]
    pub print_config: bool,
    /// Tokenizer replacing the model's: a tokenizer.json, SentencePiece tokenizer.model,
    /// llama2.c tokenizer.bin, or a folder holding one (required for a llama2.c checkpoint).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl TuneArgs {
    /// The request for tuning `base` with `method`.
    pub fn request(self, base: PathBuf, method: Method) -> anyhow::Result<TuneRequest> {
        Ok(TuneRequest {
            base,
            method,
            lora: self.lora,
            template: self.template,
            config: ConfigRequest {
                preset: None,
                file: self.config,
                flags: Vec::new(),
                sets: self.sets,
            },
            seed: self.seed,
            max_steps: self.max_steps,
            out: self.out,
            mode: match (self.resume, self.force) {
                (true, _) => StartMode::Resume,
                (_, true) => StartMode::Force,
                _ => StartMode::New,
            },
            print_config: self.print_config,
            tokenizer: self.tokenizer,
            device: self.device.device()?,
        })
    }
}
