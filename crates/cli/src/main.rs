//! `muse`: the command-line front of Muse. It parses, calls one `muse-core` function, prints.
//!
//! Exit codes: 0 ok, 1 runtime error, 2 bad usage, 130 stopped by Ctrl-C (checkpoint saved).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
#[cfg(test)]
mod doc_commands;
#[cfg(test)]
mod docs_examples;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's option setter (`mimalloc.h`; the `mimalloc` crate declares it only with its
    /// `extended` feature). The C library is linked whole either way.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    /// Gives freed memory back to the system now (`mimalloc.h`).
    fn mi_collect(force: bool);
}

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h`.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps freed memory mapped for 10 s (mimalloc's default: 1 s) before giving it back to the
/// system. A training step frees its activations and allocates them again a step later; a step
/// of the diffusion U-Net takes over a second, so with the default every step got its memory
/// back as fresh zeroed pages: a third of its system time and about 7% of the step
/// (`perf stat`, `muse --threads 1 bench diffusion`).
/// `MIMALLOC_PURGE_DELAY` in the environment still wins, for experiments.
fn keep_freed_memory_for_reuse() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain store into mimalloc's option table, valid at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) }
    }
}

/// Gives the memory freed so far back to the system at once, for a process that is about to
/// sit idle: a server after loading its models. Loading frees its staging buffers, and the
/// purge delay above would keep them resident until the next allocation after 10 s, which an
/// idle server may never make (SmolLM2's Q4_1 server held 1.5x its file size).
pub(crate) fn return_freed_memory() {
    // SAFETY: mimalloc's own collection entry point, valid at any time on any thread.
    unsafe { mi_collect(true) }
}

/// Train, sample, evaluate and benchmark generative models. Everything Muse generates is
/// AI-generated and labelled as such.
#[derive(Parser)]
#[command(name = "muse", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// CPU threads for tensor kernels (default: all physical cores).
    #[arg(long, global = true, env = "MUSE_THREADS")]
    threads: Option<usize>,
    /// Log more (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List, locate and download datasets.
    Data(commands::data::Args),
    /// Train, inspect and apply tokenizers (HF tokenizer.json).
    Tokenizer(commands::tokenizer::Args),
    /// Train a model into a run directory.
    Train(commands::train::Args),
    /// Translate a sentence or a file with a translation run (greedy or beam search).
    Translate(commands::translate::Args),
    /// Generate from a trained run (text streams to stdout).
    Sample(Box<commands::sample::Args>),
    /// Evaluate a trained run (loss, perplexity, bits per character), or score translations
    /// against references (BLEU, chrF).
    Eval(commands::eval::Args),
    /// Measure training and sampling speed; prints one JSON line.
    Bench(commands::bench::Args),
    /// Score images with a VAE (negative ELBO per image, CSV; AUROC against --ood images).
    Score(commands::score::Args),
    /// Export a run or model for other tools (a Hugging Face transformers folder, a llama.cpp
    /// GGUF file).
    Export(commands::export::Args),
    /// Chat with a language model in the terminal (replies are AI-generated).
    Chat(commands::chat::Args),
    /// Fine-tune a language model on instructions (full or LoRA) into a new run.
    Finetune(commands::finetune::Args),
    /// Align a language model to preference pairs with DPO (full or LoRA) into a new run.
    Align(commands::align::Args),
    /// Sentence embeddings from a BERT sentence encoder (all-MiniLM-L6-v2 by default).
    Embed(commands::embed::Args),
    /// Serve models over HTTP in the OpenAI wire format (text, chat, embeddings, images).
    Serve(commands::serve::Args),
    /// Check whether a text carries the watermark of a key (`muse sample --watermark-key`).
    Detect(commands::detect::Args),
    /// Show what a PNG or text carries: AI-generated notice, digital source type, generation
    /// parameters; for a text the label line and (with --key) the watermark test.
    Inspect(commands::inspect::Args),
    /// Measure what a model copies from its training data (spans of text, nearest images).
    Audit(commands::audit::Args),
}

fn main() -> ExitCode {
    keep_freed_memory_for_reuse();
    let cli = Cli::parse();
    muse_core::device::set_cpu_threads(cli.threads);
    init_logging(cli.verbose);
    // The server stops on Ctrl-C itself, after the requests in flight.
    if !matches!(cli.command, Command::Serve(_)) {
        install_ctrl_c();
    }
    let result = match cli.command {
        // The server's engine thread runs its own models; the rest run on the kernel pool.
        Command::Serve(a) => commands::serve::run(a),
        command => muse_core::device::on_kernel_pool(|| run(command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Runs one command other than `serve`.
fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Data(a) => commands::data::run(a),
        Command::Tokenizer(a) => commands::tokenizer::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Translate(a) => commands::translate::run(a),
        Command::Sample(a) => commands::sample::run(*a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Score(a) => commands::score::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::Chat(a) => commands::chat::run(a),
        Command::Finetune(a) => commands::finetune::run(a),
        Command::Align(a) => commands::align::run(a),
        Command::Embed(a) => commands::embed::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Detect(a) => commands::detect::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Audit(a) => commands::audit::run(a),
    }
}

/// First Ctrl-C: ask the running loop to checkpoint and stop. Second: quit at once.
fn install_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if muse_core::run::interrupt::stop_requested() {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (Ctrl-C again to quit without saving)");
        muse_core::run::interrupt::request_stop();
    });
}

/// Prints the error chain and picks the exit code: 2 for usage errors, 130 after Ctrl-C,
/// 1 otherwise.
fn report(err: &anyhow::Error) -> ExitCode {
    let core = err
        .chain()
        .find_map(|c| c.downcast_ref::<muse_core::Error>());
    if matches!(core, Some(muse_core::Error::Interrupted)) {
        return ExitCode::from(130);
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    ExitCode::from(if core.is_some_and(|e| e.is_usage()) {
        2
    } else {
        1
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,muse=info,muse_core=info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .without_time()
        .with_writer(std::io::stderr)
        .init();
}
