//! Translating with an encoder-decoder transformer: sources are tokenized, closed with EOS,
//! sorted by length into batches, encoded once, and decoded with greedy or beam search
//! ([`super::beam`]) over the model's self-attention cache.

use candle_core::{D, Tensor};

use super::beam::{SearchOptions, StepDecoder, search};
use crate::error::{Error, Result};
use crate::models::seq2seq::{EncoderMemory, Seq2Seq};
use crate::nn::KvCache;
use crate::tokenizer::TextTokenizer;

/// How to translate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TranslateOptions {
    /// Hypotheses kept per sentence (1: greedy).
    pub beam: usize,
    /// GNMT length-penalty exponent (see [`super::beam`]).
    pub length_penalty: f64,
    /// Sentences decoded together.
    pub batch_size: usize,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self {
            beam: 1,
            length_penalty: 0.6,
            batch_size: 64,
        }
    }
}

/// The model as a [`StepDecoder`]: encoder memory and self-attention cache of the live rows.
pub struct ModelDecoder<'a> {
    model: &'a Seq2Seq,
    memory: EncoderMemory,
    cache: KvCache,
}

impl<'a> ModelDecoder<'a> {
    /// Encodes `sources` (right-padded ids, one row per sentence) for outputs of up to
    /// `max_len` tokens.
    ///
    /// # Shapes
    /// `sources`: (B, Ts) u32.
    pub fn new(model: &'a Seq2Seq, sources: &Tensor, max_len: usize) -> Result<Self> {
        let memory = model.encode(sources)?;
        let cache = model.new_cache(sources.dim(0)?, max_len)?;
        Ok(Self {
            model,
            memory,
            cache,
        })
    }
}

impl StepDecoder for ModelDecoder<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let ids = Tensor::from_slice(tokens, (tokens.len(), 1), self.model.device())?;
        let logits = self
            .model
            .decode_step(&ids, &self.memory, &mut self.cache)?; // (N, V)
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let mut lp = lp.flatten_all()?.to_vec1::<f32>()?;
        // Padding and BOS are never outputs.
        let cfg = self.model.config();
        let vocab = cfg.vocab_size;
        for row in lp.chunks_mut(vocab) {
            row[cfg.pad_token_id as usize] = f32::NEG_INFINITY;
            row[cfg.bos_token_id as usize] = f32::NEG_INFINITY;
        }
        Ok(lp)
    }

    fn keep_rows(&mut self, rows: &[usize]) -> Result<()> {
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_vec(idx, rows.len(), self.model.device())?;
        self.memory = self.memory.select(&idx)?;
        self.cache.select_rows(&idx)?;
        Ok(())
    }
}

/// The source ids of `text`: its tokens, cut to fit, then EOS.
pub fn source_ids(model: &Seq2Seq, tokenizer: &TextTokenizer, text: &str) -> Result<Vec<u32>> {
    let cfg = model.config();
    let mut ids = tokenizer.encode(text)?;
    ids.truncate(cfg.max_position_embeddings - 1);
    ids.push(cfg.eos_token_id);
    Ok(ids)
}

/// Right-pads `rows` with `pad` into one (B, T) tensor.
pub fn pad_batch(rows: &[&[u32]], pad: u32, device: &candle_core::Device) -> Result<Tensor> {
    let t = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
    let mut flat = Vec::with_capacity(rows.len() * t);
    for r in rows {
        flat.extend_from_slice(r);
        flat.extend(std::iter::repeat_n(pad, t - r.len()));
    }
    Ok(Tensor::from_vec(flat, (rows.len(), t), device)?)
}

/// Translates one batch of source id sequences (each ending in EOS); returns the output ids
/// without BOS and EOS, in order.
pub fn translate_batch(
    model: &Seq2Seq,
    sources: &[&[u32]],
    opts: &TranslateOptions,
) -> Result<Vec<Vec<u32>>> {
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let cfg = model.config();
    let longest = sources.iter().map(|s| s.len()).max().unwrap_or(1);
    // Room for an output about twice the source, within the model's positions.
    let max_len = (2 * longest + 10).min(cfg.max_position_embeddings);
    let src = pad_batch(sources, cfg.pad_token_id, model.device())?;
    let mut dec = ModelDecoder::new(model, &src, max_len)?;
    let search_opts = SearchOptions {
        beam: opts.beam,
        length_penalty: opts.length_penalty,
        max_len,
        bos: cfg.bos_token_id,
        eos: cfg.eos_token_id,
    };
    search(&mut dec, sources.len(), &search_opts)
}

/// Translates `texts`, batched by length; calls `done(n)` after each batch of `n` sentences.
pub fn translate_texts(
    model: &Seq2Seq,
    tokenizer: &TextTokenizer,
    texts: &[String],
    opts: &TranslateOptions,
    done: &mut dyn FnMut(usize),
) -> Result<Vec<String>> {
    if opts.batch_size == 0 {
        return Err(Error::usage("the batch size must be at least 1"));
    }
    if opts.beam == 0 {
        return Err(Error::usage(
            "--beam must be at least 1 (1 is greedy search; 4 or 5 is usual for beam search)",
        ));
    }
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| source_ids(model, tokenizer, t))
        .collect::<Result<_>>()?;
    // Longest first, so batches hold sentences of similar length and the first batch shows
    // the worst case of memory and time.
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let mut out = vec![String::new(); texts.len()];
    for chunk in order.chunks(opts.batch_size) {
        let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
        let outputs = translate_batch(model, &batch, opts)?;
        for (&i, o) in chunk.iter().zip(outputs) {
            out[i] = tokenizer.decode(&o)?;
        }
        done(chunk.len());
    }
    Ok(out)
}
