//! A DPO experiment with a preference we can measure: "fewer made-up words".
//!
//! The judge scores a reply by the share of its words that occur in the training split of Tiny
//! Shakespeare (the words the model was taught to spell). The experiment has three steps:
//!
//! ```text
//! # 1. the model writes two replies per prompt; the judge picks the better one
//! cargo run --release -p muse-core --example dpo_spelling -- pairs runs/shakespeare prefs.jsonl
//! # 2. DPO on those pairs, prompt + reply as raw text
//! muse align runs/shakespeare --dpo prefs.jsonl --raw --out runs/shakespeare-dpo
//! # 3. win rate of the aligned model against the starting one on held-out prompts
//! cargo run --release -p muse-core --example dpo_spelling -- winrate runs/shakespeare runs/shakespeare-dpo
//! ```
//!
//! Prompts are whole lines of the validation split (the last 10% of the text, which neither
//! the model nor the judge's word list saw); step 1 takes the even-numbered ones, step 3 the
//! odd-numbered ones. Replies are 64 tokens sampled at temperature 1. The win rate counts a
//! tie as half a win; the starting model against itself with other seeds is the 50% baseline.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use candle_core::Device;
use muse_core::data::{read_text, resolve_text_corpus};
use muse_core::sample::open::{TextModel, open_text_model};
use muse_core::sample::{GenerateOptions, Sampler, SamplingParams, generate};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Replies shorter than this many whole words score 0 (an empty reply is not well spelled).
const MIN_WORDS: usize = 3;
/// Tokens per reply.
const REPLY_TOKENS: usize = 64;

/// The judge: which words are real, and how well a reply does.
struct Judge {
    known: HashSet<String>,
}

impl Judge {
    fn new(train_text: &str) -> Self {
        Self {
            known: words(train_text).map(str::to_lowercase).collect(),
        }
    }

    /// Share of the reply's whole words that are known; a word cut off by the token limit
    /// (the reply ends inside it) is left out.
    fn score(&self, reply: &str) -> f64 {
        let cut = reply.ends_with(|c: char| c.is_alphabetic() || c == '\'');
        let mut all: Vec<&str> = words(reply).collect();
        if cut {
            all.pop();
        }
        if all.len() < MIN_WORDS {
            return 0.0;
        }
        let known = all
            .iter()
            .filter(|w| self.known.contains(&w.to_lowercase()))
            .count();
        known as f64 / all.len() as f64
    }
}

/// Runs of letters and apostrophes.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphabetic() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
}

/// Tiny Shakespeare split as the GPT presets split it: the first 90% of the characters train.
fn corpus() -> anyhow::Result<(String, String)> {
    let text = read_text(&resolve_text_corpus("tinyshakespeare")?.path)?;
    let chars: Vec<char> = text.chars().collect();
    let cut = chars.len() * 9 / 10;
    Ok((chars[..cut].iter().collect(), chars[cut..].iter().collect()))
}

/// Validation lines long enough to prompt with, shuffled by a fixed seed; `parity` 0 or 1 picks
/// the even or odd ones.
fn prompts(val: &str, parity: usize, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = val
        .lines()
        .skip(1) // the first line may start mid-line
        .filter(|l| l.trim().len() >= 12)
        .map(|l| format!("{l}\n"))
        .collect();
    lines.shuffle(&mut ChaCha8Rng::seed_from_u64(7));
    lines.into_iter().skip(parity).step_by(2).take(n).collect()
}

fn reply(tm: &TextModel, prompt: &str, seed: u64) -> anyhow::Result<String> {
    let ids = tm.encode_prompt(prompt)?;
    let params = SamplingParams {
        temperature: 1.0,
        ..Default::default()
    };
    let opts = GenerateOptions {
        max_tokens: REPLY_TOKENS,
        ..Default::default()
    };
    let mut sampler = Sampler::new(params, seed);
    let g = generate(
        &*tm.model,
        &tm.tokenizer,
        &ids,
        &opts,
        &mut sampler,
        &mut |_| Ok(()),
    )?;
    Ok(g.text)
}

/// Step 1: `n` prompts, two replies each, written as preference pairs (ties are skipped).
fn make_pairs(run: &Path, out: &Path, n: usize) -> anyhow::Result<()> {
    let (train, val) = corpus()?;
    let judge = Judge::new(&train);
    let tm = open_text_model(run, &Device::Cpu)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let (mut written, mut ties, mut chosen_score, mut rejected_score) = (0, 0, 0.0, 0.0);
    for (i, prompt) in prompts(&val, 0, n).iter().enumerate() {
        let a = reply(&tm, prompt, 2 * i as u64)?;
        let b = reply(&tm, prompt, 2 * i as u64 + 1)?;
        let (sa, sb) = (judge.score(&a), judge.score(&b));
        if sa == sb {
            ties += 1;
            continue;
        }
        let ((chosen, sc), (rejected, sr)) = if sa > sb {
            ((a, sa), (b, sb))
        } else {
            ((b, sb), (a, sa))
        };
        let line = serde_json::json!({"prompt": prompt, "chosen": chosen, "rejected": rejected});
        writeln!(file, "{line}")?;
        (written, chosen_score, rejected_score) =
            (written + 1, chosen_score + sc, rejected_score + sr);
    }
    file.flush()?;
    let w = written.max(1) as f64;
    println!(
        "{written} pairs in {} ({ties} ties skipped); mean judge score chosen {:.3}, rejected {:.3}",
        out.display(),
        chosen_score / w,
        rejected_score / w
    );
    Ok(())
}

/// Step 3: win rate of `aligned` against `base` on `n` held-out prompts, same seed per prompt.
fn win_rate(base: &Path, aligned: &Path, n: usize) -> anyhow::Result<()> {
    let (train, val) = corpus()?;
    let judge = Judge::new(&train);
    let (tb, ta) = (
        open_text_model(base, &Device::Cpu)?,
        open_text_model(aligned, &Device::Cpu)?,
    );
    let prompts = prompts(&val, 1, n);
    let (mut self_wins, mut wins) = (0.0, 0.0);
    let (mut base_score, mut aligned_score) = (0.0, 0.0);
    for (i, prompt) in prompts.iter().enumerate() {
        let seed = 1_000_000 + i as u64;
        let b = judge.score(&reply(&tb, prompt, seed)?);
        let b2 = judge.score(&reply(&tb, prompt, seed + 500_000)?);
        let a = judge.score(&reply(&ta, prompt, seed)?);
        self_wins += duel(b2, b);
        wins += duel(a, b);
        base_score += b;
        aligned_score += a;
    }
    let k = prompts.len().max(1) as f64;
    println!(
        "{} held-out prompts | judge score: start {:.3}, aligned {:.3} | win rate vs start: \
         start (other seed) {:.1}%, aligned {:.1}%",
        prompts.len(),
        base_score / k,
        aligned_score / k,
        100.0 * self_wins / k,
        100.0 * wins / k
    );
    Ok(())
}

/// 1 for a win, 0.5 for a tie, 0 for a loss.
fn duel(a: f64, b: f64) -> f64 {
    if a > b {
        1.0
    } else if a == b {
        0.5
    } else {
        0.0
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let count = |i: usize, default: usize| -> anyhow::Result<usize> {
        Ok(arg(i).map(str::parse).transpose()?.unwrap_or(default))
    };
    match (arg(0), arg(1), arg(2)) {
        (Some("pairs"), Some(run), Some(out)) => {
            make_pairs(Path::new(run), Path::new(out), count(3, 800)?)
        }
        (Some("winrate"), Some(base), Some(aligned)) => {
            win_rate(Path::new(base), Path::new(aligned), count(3, 300)?)
        }
        _ => anyhow::bail!(
            "usage: dpo_spelling pairs RUN OUT.jsonl [N=800] | dpo_spelling winrate BASE ALIGNED [N=300]"
        ),
    }
}
