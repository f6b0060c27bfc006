//! `muse tokenizer`: train a tokenizer into an HF `tokenizer.json`, encode text to ids, decode
//! ids to text, and describe a tokenizer.
//!
//! ```text
//! muse tokenizer train --kind bpe --vocab-size 1024 corpus.txt -o tokenizer.json
//! muse tokenizer encode --tokenizer tokenizer.json "Hello there"      # prints ids
//! muse tokenizer decode --tokenizer tokenizer.json 15496 612          # prints text
//! muse tokenizer info --tokenizer gpt2
//! ```

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use muse_core::Error;
use muse_core::tokenizer::{TextTokenizer, TokenizerKind};

/// Train, apply and inspect tokenizers (Hugging Face tokenizer.json).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Train a tokenizer on a UTF-8 text file and write tokenizer.json.
    Train(TrainArgs),
    /// Print the token ids of a text (space separated, one line).
    Encode(EncodeArgs),
    /// Print the text of token ids.
    Decode(DecodeArgs),
    /// Print a tokenizer's kind, vocabulary size and special tokens.
    Info(InfoArgs),
}

/// Tokenizer families `train` can build.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Kind {
    /// GPT-2 style byte-level BPE with <|endoftext|>: round-trips any UTF-8 text.
    Bpe,
    /// BERT style (cased) WordPiece with [UNK] [CLS] [SEP] [PAD] [MASK].
    Wordpiece,
    /// nanoGPT character vocabulary: the sorted distinct characters of the corpus.
    Char,
}

impl From<Kind> for TokenizerKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Bpe => TokenizerKind::Bpe,
            Kind::Wordpiece => TokenizerKind::WordPiece,
            Kind::Char => TokenizerKind::Char,
        }
    }
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Training text (UTF-8).
    corpus: PathBuf,
    /// Tokenizer family.
    #[arg(long, value_enum, default_value_t = Kind::Bpe)]
    kind: Kind,
    /// Vocabulary size including special tokens (ignored by --kind char). BPE needs >= 257.
    #[arg(long, default_value_t = 1024)]
    vocab_size: usize,
    /// Where to write the tokenizer.json.
    #[arg(short, long, default_value = "tokenizer.json")]
    output: PathBuf,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
}

/// Which tokenizer to use: a tokenizer.json path, or `gpt2` for GPT-2's files in the data dir.
#[derive(clap::Args)]
struct TokenizerArg {
    /// tokenizer.json to use, or `gpt2` for GPT-2's BPE (dataset gpt2-bpe, see `muse data`).
    #[arg(short, long, value_name = "FILE|gpt2")]
    tokenizer: PathBuf,
}

#[derive(clap::Args)]
struct EncodeArgs {
    #[command(flatten)]
    tokenizer: TokenizerArg,
    /// Text to encode (default: read --file, else standard input).
    #[arg(conflicts_with = "file")]
    text: Option<String>,
    /// Encode this UTF-8 file's content instead of TEXT.
    #[arg(short, long)]
    file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DecodeArgs {
    #[command(flatten)]
    tokenizer: TokenizerArg,
    /// Token ids, separated by spaces or commas (default: read them from standard input).
    ids: Vec<String>,
}

#[derive(clap::Args)]
struct InfoArgs {
    /// tokenizer.json to describe, or `gpt2` (same as --tokenizer).
    #[arg(value_name = "FILE|gpt2", required_unless_present = "tokenizer")]
    file: Option<PathBuf>,
    /// tokenizer.json to describe, or `gpt2` for GPT-2's BPE.
    #[arg(short, long, value_name = "FILE|gpt2", conflicts_with = "file")]
    tokenizer: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Train(a) => train(a),
        Command::Encode(a) => encode(a),
        Command::Decode(a) => decode(a),
        Command::Info(a) => info(a),
    }
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    check_output(&args.output, args.force)?;
    let corpus = read_utf8(&args.corpus, "corpus")?;
    let kind = TokenizerKind::from(args.kind);
    let start = Instant::now();
    let tokenizer = TextTokenizer::train(kind, &corpus, args.vocab_size)
        .with_context(|| format!("training a {kind} tokenizer on {}", args.corpus.display()))?;
    tokenizer.save(&args.output)?;
    println!(
        "trained a {kind} tokenizer with {} ids on {} ({:.1} KB) in {:.2} s -> {}",
        tokenizer.vocab_size(),
        args.corpus.display(),
        corpus.len() as f64 / 1024.0,
        start.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(())
}

fn encode(args: EncodeArgs) -> anyhow::Result<()> {
    let tokenizer = load(&args.tokenizer)?;
    let text = match (args.text, &args.file) {
        (Some(text), _) => text,
        (None, Some(file)) => read_utf8(file, "input")?,
        (None, None) => read_stdin()?,
    };
    let ids = tokenizer.encode(&text)?;
    let mut line = String::with_capacity(ids.len() * 6);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&id.to_string());
    }
    line.push('\n');
    write_stdout(&line)
}

fn decode(args: DecodeArgs) -> anyhow::Result<()> {
    let tokenizer = load(&args.tokenizer)?;
    let words = if args.ids.is_empty() {
        read_stdin()?
    } else {
        args.ids.join(" ")
    };
    let ids = parse_ids(&words)?;
    let mut text = tokenizer.decode(&ids)?;
    // Exact bytes into pipes and files; a final newline only for people at a terminal.
    if std::io::stdout().is_terminal() && !text.ends_with('\n') {
        text.push('\n');
    }
    write_stdout(&text)
}

fn info(args: InfoArgs) -> anyhow::Result<()> {
    let arg = TokenizerArg {
        tokenizer: args
            .file
            .or(args.tokenizer)
            .expect("clap requires one of them"),
    };
    let tokenizer = load(&arg)?;
    let kind = tokenizer.kind().map_or("other", TokenizerKind::name);
    let mut specials: Vec<(u32, String)> = tokenizer
        .inner()
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, t)| t.special)
        .map(|(id, t)| (id, t.content))
        .collect();
    specials.sort();
    let specials: Vec<String> = specials.iter().map(|(id, t)| format!("{t}={id}")).collect();
    println!("tokenizer: {}", arg.tokenizer.display());
    println!("kind: {kind}");
    println!("vocab size: {}", tokenizer.vocab_size());
    println!(
        "eos id: {}",
        tokenizer
            .eos_id()
            .map_or("none".into(), |id| id.to_string())
    );
    println!("special tokens: {}", specials.join(" "));
    Ok(())
}

/// Loads `--tokenizer`: a file, or GPT-2's release files (dataset `gpt2-bpe`) for `gpt2`.
fn load(arg: &TokenizerArg) -> anyhow::Result<TextTokenizer> {
    let path = &arg.tokenizer;
    if path.as_os_str() == "gpt2" && !path.exists() {
        // $MUSE_DATA_DIR/gpt2-bpe, the cache dir, else a verified download.
        let dir = muse_core::run::data::dataset_dir("gpt2-bpe")?;
        return Ok(TextTokenizer::gpt2(
            &dir.join("encoder.json"),
            &dir.join("vocab.bpe"),
        )?);
    }
    Ok(TextTokenizer::from_file(path)?)
}

/// Refuses to clobber an existing file or write into a missing folder.
fn check_output(output: &Path, force: bool) -> anyhow::Result<()> {
    if output.exists() && !force {
        return Err(Error::usage(format!(
            "{} already exists: pass --force to overwrite it, or choose another -o",
            output.display()
        ))
        .into());
    }
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(Error::input(format!(
            "output folder {} does not exist: create it first",
            dir.display()
        ))
        .into());
    }
    Ok(())
}

/// Reads a UTF-8 text file; a non-UTF-8 file is named with the offset of the first bad byte.
fn read_utf8(path: &Path, what: &str) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::input(format!(
            "{what} {} is not UTF-8 text: invalid byte 0x{:02X} at byte offset {offset} \
             (line {line}); convert it to UTF-8 first (e.g. iconv -t UTF-8)",
            path.display(),
            e.as_bytes()[offset]
        ))
        .into()
    })
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read standard input as UTF-8 text")?;
    Ok(text)
}

/// Parses ids separated by whitespace and/or commas, optionally inside `[...]`.
fn parse_ids(text: &str) -> anyhow::Result<Vec<u32>> {
    let ids = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.parse::<u32>().map_err(|_| {
                Error::usage(format!(
                    "'{w}' is not a token id: give non-negative integers, e.g. 15496 11 995"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to standard output"),
    }
}
