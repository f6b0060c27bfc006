//! `muse bench watermark`: how well the text watermark (Kirchenbauer et al. 2023) works on a
//! real model. For every prompt the model writes a reply twice with the same seed, with and
//! without the watermark; human-written texts of the same length are scored too. Every text
//! goes through the detector as `muse detect` sees it (decoded, then re-tokenized), and the
//! report gives the true-positive rate at the z threshold and at a 1% false-positive rate, the
//! false-positive rate on plain and human text, the perplexity cost (the unwatermarked model's
//! own probabilities of what was written), detection after random token replacement, and the
//! detection rate by reply length and by the model's entropy (where the watermark fails).

mod summary;
pub mod texts;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::sample::logits::{Sampler, SamplingParams};
use crate::sample::open::{TextModel, open_text_model};
use crate::sample::watermark::{MIN_SCORED_TOKENS, Retokenized, Watermark, retokenize};
use crate::train::progress::Progress;

/// What to measure.
pub struct WatermarkBenchOptions {
    /// A GGUF file, model folder or run.
    pub model: PathBuf,
    /// Prompts (replies written twice each).
    pub prompts: usize,
    /// Where the prompts come from: one request a line (`None`: the instruction data).
    pub prompts_file: Option<PathBuf>,
    /// Tokens per reply at most (a reply may end earlier at end-of-text).
    pub tokens: usize,
    pub watermark: Watermark,
    /// z above which a text counts as watermarked.
    pub threshold: f64,
    /// Sampling temperature of both replies (1: the model's own distribution).
    pub temperature: f32,
    /// Shakespeare passages scored as human text.
    pub human: usize,
    pub seed: u64,
    /// One JSON line per scored text, for inspection.
    pub rows: Option<PathBuf>,
    pub device: Device,
}

/// One reply with what the unwatermarked model thought of each of its tokens.
struct Reply {
    ids: Vec<u32>,
    /// Sum over tokens of -log p(token) under the model without the watermark.
    nll: f64,
    /// Sum over tokens of the model's entropy (nats) before the choice.
    entropy: f64,
}

impl Reply {
    fn ppl(&self) -> f64 {
        (self.nll / self.ids.len().max(1) as f64).exp()
    }
    fn mean_entropy(&self) -> f64 {
        self.entropy / self.ids.len().max(1) as f64
    }
}

/// One scored text: a row of the optional JSONL and the input of the summary.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `watermarked`, `plain`, `replaced-10`, `replaced-25`, `shakespeare`, `seed-answers`.
    pub kind: String,
    pub prompt: usize,
    pub tokens: usize,
    /// `None`: the detector cannot judge (too few tokens, or the text does not re-tokenize).
    pub z: Option<f64>,
    pub ppl: Option<f64>,
    pub entropy: Option<f64>,
}

/// Runs the benchmark and returns its JSON report.
pub fn bench_watermark(opts: &WatermarkBenchOptions) -> Result<Value> {
    opts.watermark.validate()?;
    if opts.prompts == 0 || opts.tokens == 0 {
        return Err(Error::usage("--prompts and --tokens must be at least 1"));
    }
    let start = Instant::now();
    let tm = open_text_model(&opts.model, &opts.device)?;
    let prompts = match &opts.prompts_file {
        Some(path) => texts::prompts_from_file(path, opts.prompts)?,
        None => texts::chat_prompts(opts.prompts, opts.seed)?,
    };
    let mut rows = Vec::new();
    let mut attack_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x00a7_7ac4);
    let mut skipped = 0;
    let progress = Progress::new("watermark", 0, prompts.len() as u64);
    for (i, request) in prompts.iter().enumerate() {
        let prompt = tm.encode_prompt(&texts::render(tm.chat_template.as_ref(), request)?)?;
        if prompt.len() + opts.tokens > tm.model.context_len() {
            skipped += 1;
            progress.set(i as u64 + 1);
            continue;
        }
        let seed = opts.seed.wrapping_add(i as u64);
        for marked in [false, true] {
            let reply = write_reply(&tm, &prompt, opts, marked, seed)?;
            let kind = if marked { "watermarked" } else { "plain" };
            rows.push(Row {
                kind: kind.into(),
                prompt: i,
                tokens: reply.ids.len(),
                z: score(&tm, opts, &reply.ids)?,
                ppl: Some(reply.ppl()),
                entropy: Some(reply.mean_entropy()),
            });
            if marked {
                for percent in [10, 25] {
                    let ids = texts::replace_random(
                        &tm.tokenizer,
                        &reply.ids,
                        percent as f64 / 100.0,
                        &mut attack_rng,
                    )?;
                    rows.push(Row {
                        kind: format!("replaced-{percent}"),
                        prompt: i,
                        tokens: ids.len(),
                        z: score(&tm, opts, &ids)?,
                        ppl: None,
                        entropy: Some(reply.mean_entropy()),
                    });
                }
            }
        }
        progress.set(i as u64 + 1);
    }
    progress.finish();
    if skipped == prompts.len() {
        return Err(Error::usage(format!(
            "no prompt plus {} new tokens fits the model's context of {}: lower --tokens",
            opts.tokens,
            tm.model.context_len()
        )));
    }
    let human = texts::human_texts(
        &tm.tokenizer,
        opts.human,
        opts.tokens,
        MIN_SCORED_TOKENS,
        opts.seed,
    )?;
    for (i, (source, text)) in human.iter().enumerate() {
        rows.push(Row {
            kind: source.to_string(),
            prompt: i,
            tokens: tm.tokenizer.encode(text)?.len(),
            z: score_text(&tm, opts, text)?,
            ppl: None,
            entropy: None,
        });
    }
    if let Some(path) = &opts.rows {
        write_rows(path, &rows)?;
    }
    let mut report = summary::summarize(&rows, opts.threshold);
    let extra = serde_json::json!({
        "bench": "watermark",
        "model": opts.model.display().to_string(),
        "gamma": opts.watermark.gamma,
        "delta": opts.watermark.delta,
        "scheme": opts.watermark.scheme,
        "threshold": opts.threshold,
        "skipped_prompts": skipped,
        "max_tokens": opts.tokens,
        "temperature": opts.temperature,
        "seconds": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "threads": crate::device::cpu_threads(),
    });
    if let (Value::Object(r), Value::Object(e)) = (&mut report, extra) {
        r.extend(e);
    }
    Ok(report)
}

/// Writes one reply of at most `opts.tokens` tokens, stopping at end-of-text (not kept).
fn write_reply(
    tm: &TextModel,
    prompt: &[u32],
    opts: &WatermarkBenchOptions,
    marked: bool,
    seed: u64,
) -> Result<Reply> {
    let params = SamplingParams {
        temperature: opts.temperature,
        ..SamplingParams::default()
    };
    let mut sampler =
        Sampler::new(params, seed).with_watermark(marked.then(|| opts.watermark.clone()));
    let model = tm.model.as_ref();
    let mut cache = model.new_cache(1)?;
    let mut context = prompt.to_vec();
    let mut pending = prompt.to_vec();
    let mut reply = Reply {
        ids: Vec::new(),
        nll: 0.0,
        entropy: 0.0,
    };
    while reply.ids.len() < opts.tokens {
        let input = Tensor::new(pending.as_slice(), model.device())?.unsqueeze(0)?; // (1, T_new)
        let logits: Vec<f32> = model
            .forward_cached(&input, &mut cache)?
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .to_vec1()?;
        let id = sampler.sample(&logits, &context);
        if tm.tokenizer.is_eos(id) {
            break;
        }
        let (log_p, entropy) = log_prob_and_entropy(&logits, id as usize);
        reply.nll -= log_p;
        reply.entropy += entropy;
        reply.ids.push(id);
        context.push(id);
        pending = vec![id];
    }
    Ok(reply)
}

/// `log softmax(logits)[id]` and the entropy of `softmax(logits)`, in nats.
fn log_prob_and_entropy(logits: &[f32], id: usize) -> (f64, f64) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_z = max + sum.ln();
    let entropy = logits
        .iter()
        .map(|&l| {
            let lp = l as f64 - log_z;
            -lp.exp() * lp
        })
        .sum();
    (logits[id] as f64 - log_z, entropy)
}

/// The detector's z for generated ids, seen as text (as `muse detect` sees it).
fn score(tm: &TextModel, opts: &WatermarkBenchOptions, ids: &[u32]) -> Result<Option<f64>> {
    score_text(tm, opts, &tm.tokenizer.decode(ids)?)
}

/// The detector's z for a text; `None` when it cannot judge.
fn score_text(tm: &TextModel, opts: &WatermarkBenchOptions, text: &str) -> Result<Option<f64>> {
    let Retokenized::Ids(ids) = retokenize(&tm.tokenizer, text) else {
        return Ok(None);
    };
    let d = opts.watermark.detect(&ids, true);
    Ok((d.scored_tokens >= MIN_SCORED_TOKENS).then_some(d.z))
}

fn write_rows(path: &std::path::Path, rows: &[Row]) -> Result<()> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, r).map_err(|e| Error::input(e.to_string()))?;
        out.write_all(b"\n").map_err(Error::io(path))?;
    }
    crate::io::write_atomic(path, &out)
}
