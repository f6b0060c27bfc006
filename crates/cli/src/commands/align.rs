//! `muse align RUN --dpo prefs.jsonl --beta 0.1 [--lora SPEC]`: preference alignment with
//! Direct Preference Optimization into a new run directory.

use std::path::PathBuf;

use muse_core::run_dir::OnExisting;
use muse_core::train::dpo::{AlignConfig, AlignJob, align, stored_config, stored_data};

use super::common::DeviceArgs;
use super::finetune::{default_out, parse_lora, print_samples, reply_fn};

/// Align a language model to preference pairs with DPO (Rafailov et al. 2023) against a frozen
/// reference copy of it. Logs the loss, reward margins and held-out preference accuracy.
#[derive(clap::Args)]
pub struct Args {
    /// The model to align: a Muse run (often a `muse finetune` run), a Hugging Face gpt2/llama
    /// folder, or a llama2.c .bin checkpoint (with --tokenizer).
    run: PathBuf,
    /// Preference pairs: a JSONL file of {"prompt", "chosen", "rejected"} (the prompt goes
    /// through the chat template), of HH-RLHF {"chosen", "rejected"} dialogues (the shared
    /// beginning is the prompt; .jsonl.gz works), or `hh-rlhf`.
    #[arg(long, value_name = "FILE")]
    dpo: Option<String>,
    /// DPO's beta: how strongly the policy is held to the reference (smaller lets it move
    /// further).
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// Train LoRA adapters on the policy (the reference stays the frozen model), e.g.
    /// `r=8,alpha=16,dropout=0.05,targets=attn,mlp`.
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "")]
    lora: Option<String>,
    /// Chat template for pairs with a prompt: base (the model's own), plain, chatml, or a
    /// chat_template.json file.
    #[arg(long)]
    template: Option<String>,
    /// Use prompt + reply as raw text even when pairs have a prompt (no chat template).
    #[arg(long)]
    raw: bool,
    /// The run directory to write (default: runs/<model name>-dpo, or -dpo-lora).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A TOML file whose keys override the defaults (sections: train, data, lora).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one config key, e.g. `--set max_iters=100 --set lr=1e-4`
    /// (`--print-config` lists them all).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Continue the run in --out from its last checkpoint (its stored config, plus any --set).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete an existing --out folder and start over.
    #[arg(long)]
    force: bool,
    /// Print the resolved configuration as TOML and exit without training.
    #[arg(long)]
    print_config: bool,
    /// Tokenizer replacing the model's (required for a llama2.c .bin checkpoint).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let lora = parse_lora(a.lora.as_deref())?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&a.run, if lora.is_some() { "dpo-lora" } else { "dpo" }));
    let mut sets = a.sets.clone();
    if let Some(t) = &a.template {
        sets.push(format!("data.template={t}"));
    }
    if a.raw {
        sets.push("data.raw=true".into());
    }
    let (config, data) = if a.resume {
        let (stored, _) = stored_config(&out)?;
        let data = a.dpo.clone().map_or_else(|| stored_data(&out), Ok)?;
        (muse_core::config::resolve(&stored, None, &sets)?, data)
    } else {
        let Some(data) = a.dpo.clone() else {
            anyhow::bail!(muse_core::Error::usage(
                "--dpo is required: pass a JSONL file of prompt/chosen/rejected pairs, HH-RLHF \
                 dialogues, or hh-rlhf"
            ));
        };
        let mut preset = AlignConfig::preset(a.beta, lora);
        preset.beta = a.beta;
        (
            muse_core::config::resolve(&preset, a.config.as_deref(), &sets)?,
            data,
        )
    };
    if a.print_config {
        print!("{}", toml::to_string(&config)?);
        return Ok(());
    }
    config.validate()?;
    let on_existing = match (a.resume, a.force) {
        (true, _) => OnExisting::Resume,
        (_, true) => OnExisting::Overwrite,
        _ => OnExisting::Refuse,
    };
    eprintln!(
        "run: {}  base: {}  preferences: {data}  method: {}",
        out.display(),
        a.run.display(),
        config.preset_name()
    );
    eprintln!("{}", toml::to_string(&config)?);
    let job = AlignJob {
        base: a.run.clone(),
        tokenizer: a.tokenizer.clone(),
        data,
        config,
        out,
        on_existing,
        device: a.device.device()?,
    };
    let reply = reply_fn();
    let r = align(job, Some(&reply))?;
    eprintln!(
        "done: {} steps in {:.0} s | held-out preference accuracy {:.3} -> {:.3} | reward margin \
         {:+.4} -> {:+.4} | DPO loss {:.4} -> {:.4} | trained {} of {} parameters ({:.2}%) | {} \
         train / {} held-out pairs | run in {}",
        r.steps,
        r.train_seconds,
        r.start.accuracy,
        r.end.accuracy,
        r.start.margin,
        r.end.margin,
        r.start.loss,
        r.end.loss,
        r.trainable,
        r.params,
        100.0 * r.trainable as f64 / r.params.max(1) as f64,
        r.train_pairs,
        r.val_pairs,
        r.run_dir.display()
    );
    print_samples(&r.samples);
    eprintln!("next: muse chat {}", r.run_dir.display());
    Ok(())
}
