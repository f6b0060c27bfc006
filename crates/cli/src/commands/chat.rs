//! `muse chat RUN`: an interactive chat in the terminal. Each line you type is a user message;
//! the reply streams back token by token. `/reset` forgets the conversation, `/exit` quits.
//! The oldest messages are dropped when the conversation outgrows the model's context.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use muse_core::run::ChatRequest;
use muse_core::run::generation::{Sampler, SamplingParams};

use super::common::{DeviceArgs, WatermarkArgs};

/// Chat with a language model. Lines you type are user messages; replies are AI-generated and
/// marked `ai>`. Commands: /reset (forget the conversation), /exit (or end of input).
#[derive(clap::Args)]
pub struct Args {
    /// The run directory (`muse train --out`), a Hugging Face model folder (gpt2, llama), or a
    /// llama2.c checkpoint file (.bin, with --tokenizer).
    run: PathBuf,
    /// System prompt placed before the conversation (default: the template's, usually none).
    #[arg(long)]
    system: Option<String>,
    /// Chat template: plain, chatml, or a chat_template.json file (default: the folder's
    /// chat_template.json, a ChatML template in tokenizer_config.json, else plain).
    #[arg(long)]
    template: Option<String>,
    /// Longest reply in tokens [default: what the context leaves after the conversation].
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Softmax temperature: lower is more conservative; 0 always takes the likeliest token.
    #[arg(long, default_value_t = 0.7, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample only among the k likeliest tokens (0: no limit).
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// Sample only among the likeliest tokens whose probabilities add up to p (1: no limit).
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    top_p: f32,
    /// Penalise tokens already in the context (1: off).
    #[arg(long, default_value_t = 1.1, allow_negative_numbers = true)]
    repetition_penalty: f32,
    /// Seed of the sampling random stream.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Tokenizer to use instead of the folder's (tokenizer.json, tokenizer.model, llama2.c
    /// tokenizer.bin, or a folder holding one).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    watermark: WatermarkArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let req = ChatRequest {
        model: a.run.clone(),
        system: a.system,
        template: a.template,
        max_tokens: a.max_tokens,
        params: SamplingParams {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            repetition_penalty: a.repetition_penalty,
        },
        seed: a.seed,
        tokenizer: a.tokenizer,
        device: a.device.device()?,
    };
    let watermark = a.watermark.watermark()?;
    let mut s = muse_core::run::open_chat(&req)?;
    for note in &s.notes {
        eprintln!("note: {note}");
    }
    let mut sampler = Sampler::new(s.params.clone(), s.seed).with_watermark(watermark);
    eprintln!(
        "Muse chat: {} ({}, {} template, context {} tokens). Replies are {} and marked ai>.\n\
         Type a message and press Enter; /reset forgets the conversation, /exit quits.",
        a.run.display(),
        s.model.family,
        s.conversation.template.name(),
        s.model.model.context_len(),
        muse_core::AI_GENERATED_NOTICE
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("you> ");
        let Some(line) = lines.next() else { break };
        let line = line?;
        let msg = line.trim();
        match msg {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                s.conversation.reset();
                eprintln!("[conversation cleared]");
                continue;
            }
            cmd if cmd.starts_with('/') => {
                eprintln!("[unknown command {cmd}: use /reset or /exit]");
                continue;
            }
            _ => {}
        }
        let mut out = std::io::stdout().lock();
        let mut started = false;
        let result = s
            .conversation
            .reply(&s.model, msg, &s.options, &mut sampler, &mut |ev| {
                if muse_core::run::interrupt::stop_requested() {
                    return Err(muse_core::Error::Interrupted);
                }
                let io = muse_core::Error::io("stdout");
                // "ai> " once the reply starts; its leading space is not shown.
                let text = if started {
                    ev.text
                } else {
                    write!(out, "ai> ").map_err(muse_core::Error::io("stdout"))?;
                    ev.text.trim_start()
                };
                started = true;
                write!(out, "{text}").and_then(|()| out.flush()).map_err(io)
            });
        match result {
            Ok(reply) => {
                if !started {
                    write!(out, "ai> ")?;
                }
                writeln!(out)?;
                if reply.dropped > 0 {
                    eprintln!(
                        "[dropped the {} oldest messages to fit the context]",
                        reply.dropped
                    );
                }
            }
            Err(e) if e.is_usage() => eprintln!("[{e}]"),
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!();
    Ok(())
}
