//! `muse sample` for language models: text streamed to stdout token by token.

use std::io::Write;
use std::path::Path;

use muse_core::device::Device;

use muse_core::sample::open::open_text_model_adapted;
use muse_core::sample::{GenerateOptions, Sampler, SamplingParams, StopReason, generate};

/// Flags for text models.
#[derive(clap::Args)]
#[command(next_help_heading = "Text models (gpt, gpt2, llama)")]
pub struct TextArgs {
    /// Text to continue. Longer than the model's context: only its end is used.
    #[arg(long, short, default_value = "\n")]
    prompt: String,
    /// New tokens to generate (at most).
    #[arg(long, default_value_t = 500)]
    max_tokens: usize,
    /// Softmax temperature: lower is more conservative; 0 always takes the likeliest token.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Sample only among the k likeliest tokens (0: no limit).
    #[arg(long, default_value_t = 200)]
    top_k: usize,
    /// Sample only among the likeliest tokens whose probabilities add up to p (1: no limit).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Penalise tokens already in the context (1: off; 1.1-1.3 reduces loops).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Stop when the output contains this text (repeatable); the stop text is not printed.
    #[arg(long = "stop", value_name = "TEXT")]
    stop: Vec<String>,
    /// Independent samples to draw, one after another.
    #[arg(long, default_value_t = 1)]
    num_samples: usize,
    /// After each generated token, print the 5 likeliest candidates with their probabilities
    /// (softmax at the sampling temperature, before top-k/top-p), one token per line.
    #[arg(long)]
    show_probs: bool,
    /// Tokenizer to use instead of the folder's: a tokenizer.json, a SentencePiece
    /// tokenizer.model or a llama2.c tokenizer.bin (required for a llama2.c .bin checkpoint).
    #[arg(long)]
    tokenizer: Option<std::path::PathBuf>,
    /// A LoRA adapter folder (adapter_config.json + adapter.safetensors, as `muse finetune
    /// --lora` or PEFT write) to apply over the model; a run's own adapter is applied anyway.
    #[arg(long)]
    adapter: Option<std::path::PathBuf>,
}

/// Generates text from the model folder `run`.
pub fn run(run: &Path, a: TextArgs, seed: u64, device: &Device) -> anyhow::Result<()> {
    if a.max_tokens == 0 {
        anyhow::bail!(muse_core::Error::usage("--max-tokens must be at least 1"));
    }
    if a.num_samples == 0 {
        anyhow::bail!(muse_core::Error::usage("--num-samples must be at least 1"));
    }
    if a.temperature < 0.0
        || !(0.0..=1.0).contains(&a.top_p)
        || a.top_p == 0.0
        || a.repetition_penalty <= 0.0
    {
        anyhow::bail!(muse_core::Error::usage(
            "--temperature must be >= 0, --top-p in (0, 1], --repetition-penalty > 0"
        ));
    }
    let tm = open_text_model_adapted(run, a.tokenizer.as_deref(), a.adapter.as_deref(), device)?;
    let prompt_ids = tm.encode_prompt(&a.prompt)?;
    let params = SamplingParams {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
    };
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        stop: a.stop.clone(),
        stop_at_eos: true,
        candidates: if a.show_probs { 5 } else { 0 },
    };
    let mut sampler = Sampler::new(params, seed);
    let stdout = std::io::stdout();
    // The label goes to stdout too, so a saved or piped sample carries it.
    println!("[{}]", muse_core::AI_GENERATED_NOTICE);
    for i in 0..a.num_samples {
        if a.num_samples > 1 {
            println!("--- sample {} ---", i + 1);
        }
        let mut out = stdout.lock();
        if a.show_probs {
            writeln!(
                out,
                "prompt {:?}\nstep  chosen      <- 5 likeliest candidates",
                a.prompt
            )?;
        } else {
            write!(out, "{}", a.prompt)?;
        }
        let mut step = 0;
        let g = generate(
            tm.model.as_ref(),
            &tm.tokenizer,
            &prompt_ids,
            &opts,
            &mut sampler,
            &mut |ev| {
                if a.show_probs {
                    step += 1;
                    let chosen = format!("{:?}", tm.tokenizer.decode(&[ev.id])?);
                    let cands: Vec<String> = ev
                        .candidates
                        .iter()
                        .map(|(t, p)| format!("{t:?} {:.1}%", p * 100.0))
                        .collect();
                    writeln!(out, "{step:>4}  {chosen:<10}  <- {}", cands.join("  "))
                        .map_err(muse_core::Error::io("stdout"))?;
                } else {
                    write!(out, "{}", ev.text).map_err(muse_core::Error::io("stdout"))?;
                    out.flush().map_err(muse_core::Error::io("stdout"))?;
                }
                Ok(())
            },
        )?;
        writeln!(out)?;
        let why = match g.reason {
            StopReason::MaxTokens => "max tokens",
            StopReason::EndOfText => "end of text",
            StopReason::StopString => "stop string",
        };
        eprintln!(
            "[{} tokens in {:.2} s, {:.1} tokens/s, stopped at {why}]",
            g.ids.len(),
            g.seconds,
            g.ids.len() as f64 / g.seconds.max(1e-9)
        );
    }
    Ok(())
}
