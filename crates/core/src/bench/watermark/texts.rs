//! The texts the watermark benchmark judges: chat prompts from the instruction data, and text
//! no model wrote (Tiny Shakespeare passages, the human-written Self-Instruct seed answers),
//! cut to the same token budget as the generations.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::instructions::{InstructionFormat, read_file, read_instructions};
use crate::error::{Error, Result};
use crate::tokenizer::TextTokenizer;
use crate::tokenizer::chat::{ChatMessage, Role};

/// Up to `n` user requests from the registered `instructions` data (alpaca-libre rows that
/// passed their filter, and the seed tasks), shuffled by `seed`.
pub fn chat_prompts(n: usize, seed: u64) -> Result<Vec<String>> {
    let set = read_instructions("instructions", InstructionFormat::Alpaca)?;
    let mut prompts: Vec<String> = set
        .conversations
        .iter()
        .filter_map(|c| c.iter().find(|m| m.role == Role::User))
        .map(|m| m.content.clone())
        .collect();
    prompts.sort();
    prompts.dedup();
    prompts.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    prompts.truncate(n);
    Ok(prompts)
}

/// The first `n` non-empty lines of a file, one request each.
pub fn prompts_from_file(path: &Path, n: usize) -> Result<Vec<String>> {
    if path.is_dir() {
        return Err(Error::usage(format!(
            "--prompts-file {} is a folder: give a text file with one request a line",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let prompts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .map(String::from)
        .collect();
    if prompts.is_empty() {
        return Err(Error::usage(format!(
            "--prompts-file {} has no non-empty line",
            path.display()
        )));
    }
    Ok(prompts)
}

/// The prompt as the model is asked it: through its chat template when it has one.
pub fn render(
    template: Option<&crate::tokenizer::jinja::JinjaTemplate>,
    request: &str,
) -> Result<String> {
    match template {
        Some(t) => t.render(&[ChatMessage::new(Role::User, request)], true),
        None => Ok(request.to_string()),
    }
}

/// The kinds of human text [`human_texts`] returns.
pub const HUMAN_KINDS: [&str; 2] = ["shakespeare", "seed-answers"];

/// Human-written texts of about `tokens` tokens each, by source: `n` passages of Tiny
/// Shakespeare starting at random line starts, and the Self-Instruct seed answers that are at
/// least `min_tokens` long (cut to `tokens`).
pub fn human_texts(
    tokenizer: &TextTokenizer,
    n: usize,
    tokens: usize,
    min_tokens: usize,
    seed: u64,
) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    let dir = crate::data::dataset_dir("tinyshakespeare")?;
    let play = crate::data::read_text(&dir.join("input.txt"))?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(play.match_indices('\n').map(|(i, _)| i + 1))
        .filter(|&i| i + 4000 < play.len())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    for _ in 0..n {
        let at = line_starts[rng.random_range(0..line_starts.len())];
        let text = first_tokens(tokenizer, &play[at..at + 4000], tokens)?;
        out.push(("shakespeare", text));
    }
    let seeds = crate::data::dataset_dir("instructions")?.join("seed_tasks.jsonl");
    let (conversations, _) = read_file(Path::new(&seeds), InstructionFormat::Alpaca)?;
    for c in conversations {
        let Some(answer) = c.iter().find(|m| m.role == Role::Assistant) else {
            continue;
        };
        if tokenizer.encode(&answer.content)?.len() >= min_tokens {
            out.push((
                "seed-answers",
                first_tokens(tokenizer, &answer.content, tokens)?,
            ));
        }
    }
    Ok(out)
}

/// The text of the first `tokens` tokens of `text`.
fn first_tokens(tokenizer: &TextTokenizer, text: &str, tokens: usize) -> Result<String> {
    let ids = tokenizer.encode(text)?;
    tokenizer.decode(&ids[..ids.len().min(tokens)])
}

/// `ids` with a share `fraction` of the positions replaced by random ordinary tokens (ones
/// that decode to text which encodes back to themselves), as an editor who rewrites words
/// at random would: the paper's substitution attack without the paraphrasing model.
pub fn replace_random(
    tokenizer: &TextTokenizer,
    ids: &[u32],
    fraction: f64,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<u32>> {
    let vocab = tokenizer.vocab_size() as u32;
    if vocab == 0 {
        return Err(Error::input("the tokenizer has an empty vocabulary"));
    }
    let mut positions: Vec<usize> = (0..ids.len()).collect();
    positions.shuffle(rng);
    positions.truncate((ids.len() as f64 * fraction).round() as usize);
    let mut out = ids.to_vec();
    for p in positions {
        out[p] = ordinary_token(tokenizer, vocab, rng)?;
    }
    Ok(out)
}

fn ordinary_token(tokenizer: &TextTokenizer, vocab: u32, rng: &mut ChaCha8Rng) -> Result<u32> {
    for _ in 0..10_000 {
        let id = rng.random_range(0..vocab);
        let piece = tokenizer.decode(&[id])?;
        if !piece.is_empty() && tokenizer.encode(&piece)? == [id] {
            return Ok(id);
        }
    }
    Err(Error::input(
        "no token of this vocabulary decodes to text that encodes back to itself",
    ))
}
