//! What `muse finetune` and `muse align` share: the flags for the run folder, config, LoRA and
//! tokenizer, how they become a resolved config, and how held-out replies are written and shown.

use std::path::{Path, PathBuf};

use muse_core::models::CausalLm;
use muse_core::nn::lora::LoraConfig;
use muse_core::run_dir::OnExisting;
use muse_core::sample::{GenerateOptions, Sampler, SamplingParams, generate};
use muse_core::tokenizer::TextTokenizer;
use muse_core::train::finetune::TuneJob;
use serde::Serialize;

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
    /// Continue the run in --out from its last checkpoint (its stored config, plus any --set).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Delete an existing --out folder and start over.
    #[arg(long)]
    pub force: bool,
    /// Print the resolved configuration as TOML and exit without training.
    #[arg(long)]
    pub print_config: bool,
    /// Tokenizer replacing the model's: a tokenizer.json, SentencePiece tokenizer.model or
    /// llama2.c tokenizer.bin (required for a llama2.c .bin checkpoint).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl TuneArgs {
    /// `--lora` (bare: the defaults) as a config; usage errors name the bad key.
    pub fn lora(&self) -> anyhow::Result<Option<LoraConfig>> {
        match self.lora.as_deref() {
            None => Ok(None),
            Some(s) => Ok(Some(LoraConfig::parse(s).map_err(muse_core::Error::usage)?)),
        }
    }

    /// `--out`, or `runs/<name of the model folder or file>-<method>`.
    pub fn out(&self, base: &Path, method: &str) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let name = base
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty() && n != "." && n != "..")
                .unwrap_or_else(|| "model".into());
            PathBuf::from("runs").join(format!("{name}-{method}"))
        })
    }

    /// The `--set` overrides, with `--template` and `extra` as overrides too.
    pub fn sets(&self, extra: &[String]) -> Vec<String> {
        let mut sets = self.sets.clone();
        if let Some(t) = &self.template {
            sets.push(format!("data.template={t}"));
        }
        sets.extend_from_slice(extra);
        sets
    }

    /// What to do with an existing --out folder.
    pub fn on_existing(&self) -> OnExisting {
        match (self.resume, self.force) {
            (true, _) => OnExisting::Resume,
            (_, true) => OnExisting::Overwrite,
            _ => OnExisting::Refuse,
        }
    }

    /// Prints the run, base, data and resolved config to stderr, and the job that trains it.
    /// `data_label` names the data in that line (`data`, `preferences`).
    pub fn job<C: Serialize>(
        &self,
        base: &Path,
        (data_label, data): (&str, String),
        method: &str,
        config: C,
        out: PathBuf,
    ) -> anyhow::Result<TuneJob<C>> {
        eprintln!(
            "run: {}  base: {}  {data_label}: {data}  method: {method}",
            out.display(),
            base.display(),
        );
        eprintln!("{}", toml::to_string(&config)?);
        Ok(TuneJob {
            base: base.to_path_buf(),
            tokenizer: self.tokenizer.clone(),
            data,
            config,
            out,
            on_existing: self.on_existing(),
            device: self.device.device()?,
        })
    }
}

/// Prints replies to held-out prompts, labelled AI-generated.
pub fn print_samples(samples: &[(String, String)]) {
    if samples.is_empty() {
        return;
    }
    println!(
        "--- replies to held-out prompts ({}) ---",
        muse_core::AI_GENERATED_NOTICE
    );
    for (prompt, reply) in samples {
        println!(
            "{prompt}{}{reply}",
            if prompt.ends_with(' ') { "" } else { " " }
        );
        println!("---");
    }
}

/// How the loops write replies to held-out prompts: up to 64 tokens at temperature 0.7, top-k
/// 50, stopping at the template's stop strings or end-of-text.
pub fn reply_fn()
-> impl Fn(&dyn CausalLm, &TextTokenizer, &[u32], &[String], u64) -> muse_core::Result<String> {
    |model, tokenizer, ids, stop, seed| {
        let params = SamplingParams {
            temperature: 0.7,
            top_k: 50,
            ..Default::default()
        };
        let opts = GenerateOptions {
            max_tokens: 64,
            stop: stop.to_vec(),
            stop_at_eos: true,
            candidates: 0,
        };
        let mut sampler = Sampler::new(params, seed);
        let g = generate(model, tokenizer, ids, &opts, &mut sampler, &mut |_| Ok(()))?;
        Ok(g.text.trim().to_string())
    }
}
