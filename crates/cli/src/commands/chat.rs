//! `muse chat RUN`: an interactive chat in the terminal. Each line you type is a user message;
//! the reply streams back token by token. `/reset` forgets the conversation, `/exit` quits.
//! The oldest messages are dropped when the conversation outgrows the model's context.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use muse_core::sample::chat::Conversation;
use muse_core::sample::open::open_text_model_with;
use muse_core::sample::{GenerateOptions, Sampler, SamplingParams};
use muse_core::tokenizer::chat::ChatTemplate;

use super::common::DeviceArgs;

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
    /// Longest reply in tokens; this much of the context is kept free for it.
    #[arg(long, default_value_t = 200)]
    max_tokens: usize,
    /// Softmax temperature: lower is more conservative; 0 always takes the likeliest token.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Sample only among the k likeliest tokens (0: no limit).
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// Sample only among the likeliest tokens whose probabilities add up to p (1: no limit).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Penalise tokens already in the context (1: off).
    #[arg(long, default_value_t = 1.1)]
    repetition_penalty: f32,
    /// Seed of the sampling random stream.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Tokenizer to use instead of the folder's (tokenizer.json, tokenizer.model or llama2.c
    /// tokenizer.bin).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.max_tokens == 0 {
        anyhow::bail!(muse_core::Error::usage("--max-tokens must be at least 1"));
    }
    if a.temperature < 0.0 || !(0.0..=1.0).contains(&a.top_p) || a.top_p == 0.0 {
        anyhow::bail!(muse_core::Error::usage(
            "--temperature must be >= 0 and --top-p in (0, 1]"
        ));
    }
    let tm = open_text_model_with(&a.run, a.tokenizer.as_deref(), &a.device.device()?)?;
    let template = template(&a.run, a.template.as_deref())?;
    if a.max_tokens >= tm.model.context_len() {
        anyhow::bail!(muse_core::Error::usage(format!(
            "--max-tokens {} leaves no room for the conversation in a context of {}",
            a.max_tokens,
            tm.model.context_len()
        )));
    }
    let mut convo = Conversation::new(template, a.system.clone());
    let mut sampler = Sampler::new(
        SamplingParams {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            repetition_penalty: a.repetition_penalty,
        },
        a.seed,
    );
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        ..Default::default()
    };
    eprintln!(
        "Muse chat: {} ({}, {} template, context {} tokens). Replies are {} and marked ai>.\n\
         Type a message and press Enter; /reset forgets the conversation, /exit quits.",
        a.run.display(),
        tm.family,
        convo.template.name,
        tm.model.context_len(),
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
                convo.reset();
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
        write!(out, "ai> ")?;
        out.flush()?;
        let mut started = false;
        let result = convo.reply(&tm, msg, &opts, &mut sampler, &mut |ev| {
            if muse_core::train::interrupt::stop_requested() {
                return Err(muse_core::Error::Interrupted);
            }
            // The reply starts after "Assistant:"; its leading space is not shown.
            let text = if started {
                ev.text
            } else {
                ev.text.trim_start()
            };
            started |= !text.is_empty();
            write!(out, "{text}").map_err(muse_core::Error::io("stdout"))?;
            out.flush().map_err(muse_core::Error::io("stdout"))
        });
        writeln!(out)?;
        match result {
            Ok(reply) if reply.dropped > 0 => eprintln!(
                "[dropped the {} oldest messages to fit the context]",
                reply.dropped
            ),
            Ok(_) => {}
            Err(e) if e.is_usage() => eprintln!("[{e}]"),
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!();
    Ok(())
}

/// The chat template: `--template` (a name or a file), else the folder's own.
fn template(run: &Path, flag: Option<&str>) -> anyhow::Result<ChatTemplate> {
    Ok(match flag {
        Some("plain") => ChatTemplate::plain(),
        Some("chatml") => ChatTemplate::chatml(),
        Some(path) => {
            let path = Path::new(path);
            if !path.is_file() {
                anyhow::bail!(muse_core::Error::usage(format!(
                    "--template {}: use plain, chatml or a chat_template.json file",
                    path.display()
                )));
            }
            let t: ChatTemplate = muse_core::io::read_json(path)?;
            t.validate()
                .map_err(|e| muse_core::Error::input(format!("{}: {e}", path.display())))?;
            t
        }
        None if run.is_dir() => {
            let (t, unknown) = ChatTemplate::for_model_dir(run)?;
            if unknown {
                eprintln!(
                    "note: the folder's Jinja chat template is not one Muse understands; using \
                     the plain User:/Assistant: template (pass --template to choose)"
                );
            }
            t
        }
        None => ChatTemplate::plain(),
    })
}
