//! `muse embed`: sentence embeddings from a BERT sentence encoder (all-MiniLM-L6-v2 by
//! default), as sentence-transformers computes them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use muse_core::Error;
use muse_core::run::embed::{
    DEFAULT_BATCH_SIZE, SentenceEncoder, cosine, default_model_dir, encoder_dir,
};

use super::common::DeviceArgs;

/// Embed sentences with a sentence encoder (mean pooling, L2 normalisation, as
/// sentence-transformers). Prints each text's dimension count and first values, or with
/// --json one JSON object per line: {"index": 0, "text": "...", "embedding": [...]}.
#[derive(clap::Args)]
pub struct Args {
    /// Texts to embed (each one sentence or paragraph; longer than the model's max_seq_length
    /// tokens, 256 for all-MiniLM-L6-v2, is truncated).
    texts: Vec<String>,
    /// Sentence-encoder folder (config.json, model.safetensors, tokenizer.json, modules.json),
    /// or a registered name (`muse data list`) found like a dataset
    /// [default: all-minilm-l6-v2 from $MUSE_DATA_DIR or the cache, downloaded if missing].
    #[arg(long, value_name = "DIR|NAME")]
    model: Option<PathBuf>,
    /// Also embed every non-blank line of this file (`-` reads stdin), after the texts.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// One JSON object per line (JSON Lines) with the full vector, instead of a summary.
    #[arg(long, conflicts_with = "similarity")]
    json: bool,
    /// After the embeddings, print the cosine similarity of every pair of texts.
    #[arg(long)]
    similarity: bool,
    /// Texts per forward pass.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

/// One line of `--json` output (fields in this order; f32 values in their shortest form).
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    index: usize,
    text: &'a str,
    embedding: &'a [f32],
}

/// Values of each vector shown in the summary.
const SHOWN: usize = 6;

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.batch_size == 0 {
        anyhow::bail!(Error::usage("--batch-size must be at least 1"));
    }
    let mut texts = a.texts;
    if let Some(file) = &a.file {
        texts.extend(read_lines(file)?);
    }
    if texts.is_empty() {
        anyhow::bail!(Error::usage(
            "nothing to embed: give texts (`muse embed \"a red sneaker\"`) or --file F with one \
             sentence a line"
        ));
    }
    let dir = match a.model {
        Some(dir) => encoder_dir(&dir.to_string_lossy())?,
        None => default_model_dir()?,
    };
    let device = a.device.device()?;
    let encoder = SentenceEncoder::open(&dir, &device)?;
    tracing::info!(
        "{}: {}-d, {} pooling{}, up to {} tokens",
        dir.display(),
        encoder.dim(),
        encoder.pooling().name(),
        if encoder.normalizes() {
            ", L2-normalised"
        } else {
            ""
        },
        encoder.max_seq_length()
    );
    for (i, t) in texts.iter().enumerate() {
        let n = encoder.token_count(t)?;
        if n > encoder.max_seq_length() {
            tracing::warn!(
                "text {i} has {n} tokens: only the first {} are embedded",
                encoder.max_seq_length()
            );
        }
    }
    let vectors = encoder.encode_batched(&texts, a.batch_size)?;

    let mut out = std::io::stdout().lock();
    for (i, (text, v)) in texts.iter().zip(&vectors).enumerate() {
        if a.json {
            let line = JsonLine {
                index: i,
                text,
                embedding: v,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        } else {
            let head: Vec<String> = v.iter().take(SHOWN).map(|x| format!("{x:+.4}")).collect();
            let more = if v.len() > SHOWN { " ..." } else { "" };
            writeln!(
                out,
                "[{i}] {} values: {}{more}  {}",
                v.len(),
                head.join(" "),
                quoted(text)
            )?;
        }
    }
    if a.similarity && texts.len() > 1 {
        writeln!(out, "cosine similarity:")?;
        for i in 0..texts.len() {
            for j in i + 1..texts.len() {
                let s = cosine(&vectors[i], &vectors[j]);
                writeln!(out, "  [{i}] [{j}] {s:+.4}")?;
            }
        }
    }
    Ok(())
}

/// The non-blank lines of `path` (`-`: stdin), trimmed of their line ends.
fn read_lines(path: &Path) -> muse_core::Result<Vec<String>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(Error::io("stdin"))?
    } else {
        std::fs::read_to_string(path).map_err(Error::io(path))?
    };
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        return Err(Error::input(format!(
            "{} has no sentences: expected one sentence a line (blank lines are skipped)",
            path.display()
        )));
    }
    Ok(lines)
}

/// `text` in quotes, shortened to 60 characters.
fn quoted(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        s.push_str("...");
    }
    format!("{s:?}")
}
