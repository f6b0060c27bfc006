//! `muse align RUN --dpo prefs.jsonl --beta 0.1 [--lora SPEC]`: preference alignment with
//! Direct Preference Optimization into a new run directory.

use std::path::PathBuf;

use muse_core::train::dpo::{AlignConfig, align, stored_config, stored_data};

use super::tuning::{TuneArgs, print_samples, reply_fn};

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
    /// Use prompt + reply as raw text even when pairs have a prompt (no chat template).
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    tune: TuneArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let lora = a.tune.lora()?;
    let out = a
        .tune
        .out(&a.run, if lora.is_some() { "dpo-lora" } else { "dpo" });
    let raw = if a.raw {
        vec!["data.raw=true".to_string()]
    } else {
        Vec::new()
    };
    let sets = a.tune.sets(&raw);
    let (config, data) = if a.tune.resume {
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
        let preset = AlignConfig::preset(a.beta, lora);
        let file = a.tune.config.as_deref();
        (muse_core::config::resolve(&preset, file, &sets)?, data)
    };
    if a.tune.print_config {
        print!("{}", toml::to_string(&config)?);
        return Ok(());
    }
    config.validate()?;
    let method = config.preset_name();
    let job = a
        .tune
        .job(&a.run, ("preferences", data), method, config, out)?;
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
