//! Language-model evaluation: loss, perplexity and bits per character / byte over a whole
//! text (the run's validation split by default), in consecutive windows.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::data::text_splits::prepare_text;
use crate::data::windows::windows_at;
use crate::error::{Error, Result};
use crate::models::gpt::{Gpt, load_gpt};
use crate::nn::Dropout;
use crate::nn::ops::cross_entropy;
use crate::run_dir::RunDir;
use crate::tokenizer::TextTokenizer;
use crate::train::gpt::GptRunConfig;
use crate::train::progress::Progress;

/// Figures for one evaluated text.
#[derive(Clone, Debug, Serialize)]
pub struct TextEval {
    /// What was evaluated: "validation split of NAME" or a file path.
    pub source: String,
    /// Tokens predicted (every token but the first).
    pub tokens: usize,
    /// Mean cross-entropy, nats per token.
    pub loss: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Total bits over the characters of the predicted text.
    pub bits_per_char: f64,
    /// Total bits over the UTF-8 bytes of the predicted text.
    pub bits_per_byte: f64,
}

/// Evaluates the run at `dir` on `data` (a text file or dataset name), or on its validation
/// split when `data` is `None`.
pub fn eval_text(
    dir: &Path,
    data: Option<&str>,
    batch: usize,
    device: &Device,
) -> Result<TextEval> {
    let run = RunDir::open(dir)?;
    let model = load_gpt(dir, device).map_err(Error::model_load)?;
    // A run's tokenizer.json, or a Hugging Face folder's vocab.json + merges.txt.
    let tokenizer = crate::tokenizer::files::find_in_dir(dir)?.ok_or_else(|| {
        Error::input(format!(
            "{} has no tokenizer (tokenizer.json, or vocab.json + merges.txt)",
            dir.display()
        ))
    })?;
    let (ids, source) = match data {
        Some(d) => {
            let src = crate::data::resolve_text_corpus(d)?;
            let text = crate::data::read_text(&src.path)?;
            (tokenizer.encode(&text)?, src.path.display().to_string())
        }
        None => {
            let record = run.read_training()?;
            let cfg: GptRunConfig = serde_json::from_value(record.config)
                .map_err(|e| Error::input(format!("{}: {e}", run.training().display())))?;
            let splits = prepare_text(&record.dataset.path, &cfg.data, Some(tokenizer.clone()))?;
            (
                splits.val,
                format!("validation split of {}", record.dataset.name),
            )
        }
    };
    evaluate_ids(&model, &tokenizer, &ids, batch, device, source)
}

/// Positions per window when evaluating a GGUF model: llama.cpp's `llama-perplexity` default
/// context (a model's full context, 8192 for SmolLM2, would need gigabytes of attention).
pub const GGUF_EVAL_WINDOW: usize = 512;

/// Evaluates the GGUF file at `path` on `data` (a text file or dataset name), in windows of
/// [`GGUF_EVAL_WINDOW`] positions (or the model's context, if shorter). The tokenizer's BOS
/// rule is not applied: every window is scored as the text's own ids, as for other models.
pub fn eval_gguf_text(path: &Path, data: &str, batch: usize, device: &Device) -> Result<TextEval> {
    let src = crate::data::resolve_text_corpus(data)?;
    let text = crate::data::read_text(&src.path)?;
    let g = match crate::sample::gguf::load_gguf_lm(path, device)? {
        crate::sample::gguf::GgufLm::Llama(g) => g,
        crate::sample::gguf::GgufLm::Gpt2 { model, tokenizer } => {
            let ids = tokenizer.encode(&text)?;
            let window = GGUF_EVAL_WINDOW.min(model.config().n_positions);
            return evaluate_windows(
                &|x: &Tensor| model.forward(x, &mut Dropout::eval()),
                window,
                &tokenizer,
                &ids,
                batch,
                device,
                src.path.display().to_string(),
            );
        }
    };
    let ids = g.tokenizer.encode(&text)?;
    let window = GGUF_EVAL_WINDOW.min(g.model.config().max_position_embeddings);
    let model = &g.model;
    evaluate_windows(
        &|x: &Tensor| model.forward(x),
        window,
        &g.tokenizer,
        &ids,
        batch,
        device,
        src.path.display().to_string(),
    )
}

/// Mean loss over consecutive windows covering `ids`; every token after the first is
/// predicted once, from the start of its window.
pub fn evaluate_ids(
    model: &Gpt,
    tokenizer: &TextTokenizer,
    ids: &[u32],
    batch: usize,
    device: &Device,
    source: String,
) -> Result<TextEval> {
    let forward = |x: &Tensor| model.forward(x, &mut Dropout::eval());
    let block = model.config().n_positions;
    evaluate_windows(&forward, block, tokenizer, ids, batch, device, source)
}

/// [`evaluate_ids`] for any model: `forward` maps (B, T) ids to (B * T, vocab) logits, and
/// windows hold `block` positions.
pub fn evaluate_windows(
    forward: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    block: usize,
    tokenizer: &TextTokenizer,
    ids: &[u32],
    batch: usize,
    device: &Device,
    source: String,
) -> Result<TextEval> {
    if ids.len() < 2 {
        return Err(Error::input(format!(
            "{source} has fewer than two tokens: nothing to evaluate"
        )));
    }
    let n_full = (ids.len() - 1) / block;
    let starts: Vec<usize> = (0..n_full).map(|i| i * block).collect();
    let progress = Progress::new("eval", 0, starts.len().div_ceil(batch) as u64 + 1);
    let mut nats = 0.0;
    for (i, chunk) in starts.chunks(batch.max(1)).enumerate() {
        let b = windows_at(ids, block, chunk, device)?;
        nats += summed_loss(forward, &b.inputs, &b.targets)?;
        progress.set(i as u64 + 1);
    }
    // The tail shorter than a window.
    let tail_start = n_full * block;
    let tail = ids.len() - 1 - tail_start;
    if tail > 0 {
        let b = windows_at(ids, tail, &[tail_start], device)?;
        nats += summed_loss(forward, &b.inputs, &b.targets)?;
    }
    progress.finish();
    let tokens = ids.len() - 1;
    let predicted = tokenizer.decode(&ids[1..])?;
    let bits = nats / std::f64::consts::LN_2;
    let loss = nats / tokens as f64;
    Ok(TextEval {
        source,
        tokens,
        loss,
        perplexity: loss.exp(),
        bits_per_char: bits / predicted.chars().count().max(1) as f64,
        bits_per_byte: bits / predicted.len().max(1) as f64,
    })
}

/// Sum (not mean) of the token losses of one batch, in nats.
fn summed_loss(
    forward: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    inputs: &Tensor,
    targets: &Tensor,
) -> Result<f64> {
    let n = targets.elem_count() as f64;
    let logits = forward(inputs)?;
    let mean = cross_entropy(&logits, &targets.flatten_all()?)?;
    Ok(mean.to_dtype(DType::F64)?.to_scalar::<f64>()? * n)
}
