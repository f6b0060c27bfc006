//! Sentence embeddings with a BERT encoder, as sentence-transformers computes them
//! ("Sentence-BERT", Reimers & Gurevych 2019): tokenize (WordPiece `tokenizer.json`, truncated
//! to `max_seq_length`, padded per batch), run the encoder, pool the token states (mean over
//! real tokens, or `[CLS]`), L2-normalise.
//!
//! [`SentenceEncoder`] is what `muse embed`, the server's `/v1/embeddings` and text-to-image
//! conditioning (through [`SentenceEncoder::token_states`]) call.

mod modules;

use std::path::{Path, PathBuf};

use candle_core::{D, Device, Tensor};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::{Error, Result};
use crate::models::bert::{BertModel, load_bert};
use crate::models::pretrained::without_backtrace;

pub use modules::{Pipeline, Pooling, read_pipeline};

/// The registered name (and `$MUSE_DATA_DIR` folder) of the default encoder.
pub const DEFAULT_MODEL: &str = "all-minilm-l6-v2";

/// Texts per forward pass in [`SentenceEncoder::encode`] (sentence-transformers' default).
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// The folder of the default encoder, all-MiniLM-L6-v2: `$MUSE_DATA_DIR/all-minilm-l6-v2`,
/// else the user cache, else downloaded there (see [`crate::data::dataset_dir`]).
pub fn default_model_dir() -> Result<PathBuf> {
    crate::data::dataset_dir(DEFAULT_MODEL)
}

/// The folder of an encoder named in a run's config: a folder path as it is, else a
/// registered name found like a dataset (`all-minilm-l6-v2`).
pub fn encoder_dir(name_or_path: &str) -> Result<PathBuf> {
    let path = Path::new(name_or_path);
    if path.exists() || crate::data::spec(name_or_path).is_none() {
        return Ok(path.to_path_buf());
    }
    crate::data::dataset_dir(name_or_path)
}

/// The encoder's view of a batch of texts: one state per token, and which tokens are real.
#[derive(Clone, Debug)]
pub struct TokenStates {
    /// The last layer's states. (B, T, H) f32.
    pub states: Tensor,
    /// 1 for real tokens (`[CLS]`, word pieces, `[SEP]`), 0 for padding. (B, T) f32.
    pub mask: Tensor,
    /// Real tokens per text, `[CLS]` and `[SEP]` included.
    pub lengths: Vec<usize>,
}

/// A BERT sentence encoder loaded from a sentence-transformers (or plain BERT) folder.
#[derive(Clone, Debug)]
pub struct SentenceEncoder {
    model: BertModel,
    /// Truncates to `max_seq_length` and pads to the longest text of a batch.
    tokenizer: Tokenizer,
    /// The same without truncation or padding, to count tokens.
    counter: Tokenizer,
    pipeline: Pipeline,
    max_seq_length: usize,
    dir: PathBuf,
}

impl SentenceEncoder {
    /// Opens the encoder in `dir` on `device`.
    ///
    /// The folder needs `config.json` (`model_type: bert`), `model.safetensors` and
    /// `tokenizer.json`; `modules.json`, `1_Pooling/config.json` and
    /// `sentence_bert_config.json` choose pooling, normalisation and the longest input.
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.exists() {
            return Err(Error::input(format!(
                "no text encoder at {}: pass a sentence-transformers folder such as \
                 all-MiniLM-L6-v2 (`muse data fetch {DEFAULT_MODEL}` downloads it)",
                dir.display()
            )));
        }
        if !dir.is_dir() {
            return Err(Error::input(format!(
                "{} is a file, not a folder: pass the folder of a sentence-transformers \
                 encoder (config.json, model.safetensors, tokenizer.json)",
                dir.display()
            )));
        }
        let pipeline = read_pipeline(dir)?;
        let tdir = &pipeline.transformer_dir;
        let config = tdir.join("config.json");
        if !config.is_file() {
            return Err(Error::input(format!(
                "{} has no config.json: not a model folder. Expected a BERT sentence encoder \
                 (config.json with model_type 'bert', model.safetensors, tokenizer.json)",
                tdir.display()
            )));
        }
        let tokenizer_path = tdir.join("tokenizer.json");
        // The config first: a GPT-2 or Llama folder is named as the wrong kind before its
        // missing files are.
        crate::models::bert::BertConfig::read(&config)
            .map_err(|e| Error::input(without_backtrace(e).to_string()))?;
        if !tokenizer_path.is_file() {
            return Err(Error::input(format!(
                "{} has no tokenizer.json: Muse reads the Hugging Face tokenizers format; \
                 save it with `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`",
                tdir.display()
            )));
        }
        let model =
            load_bert(tdir, device).map_err(|e| Error::input(without_backtrace(e).to_string()))?;
        let limit = model.config().max_position_embeddings;
        let max_seq_length = pipeline.max_seq_length.unwrap_or(limit).min(limit);
        let tokenizer =
            load_tokenizer(&tokenizer_path, max_seq_length, model.config().pad_token_id)?;
        let mut counter = tokenizer.clone();
        counter.with_padding(None);
        counter
            .with_truncation(None)
            .map_err(|e| Error::input(format!("{}: {e}", tokenizer_path.display())))?;
        Ok(Self {
            model,
            tokenizer,
            counter,
            pipeline,
            max_seq_length,
            dir: dir.to_path_buf(),
        })
    }

    /// The folder it was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Length of an embedding (the encoder's width).
    pub fn dim(&self) -> usize {
        self.model.hidden_size()
    }

    /// Longest input in tokens, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    pub fn pooling(&self) -> Pooling {
        self.pipeline.pooling
    }

    /// Whether embeddings are L2-normalised (unit length).
    pub fn normalizes(&self) -> bool {
        self.pipeline.normalize
    }

    /// The BERT encoder underneath.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// Token ids of `text` as the encoder sees them (`[CLS] ... [SEP]`, truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(self.prepare(text).as_ref(), true)
            .map_err(|e| Error::input(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokens in `text` before truncation, `[CLS]` and `[SEP]` included: above
    /// [`Self::max_seq_length`], only the first `max_seq_length` are embedded.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        let enc = self
            .counter
            .encode(self.prepare(text).as_ref(), true)
            .map_err(|e| Error::input(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.len())
    }

    /// One embedding per text, in order, computed in batches of [`DEFAULT_BATCH_SIZE`].
    /// Texts of similar length share a batch (as sentence-transformers sorts them), so little
    /// padding is computed; the result does not depend on the batching.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        self.encode_batched(texts, DEFAULT_BATCH_SIZE)
    }

    /// [`Self::encode`] with `batch_size` texts per forward pass.
    pub fn encode_batched<S: AsRef<str>>(
        &self,
        texts: &[S],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let batch_size = batch_size.max(1);
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].as_ref().len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(batch_size) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_ref()).collect();
            let emb = self.embed_batch(&batch)?.to_vec2::<f32>()?;
            for (&i, e) in chunk.iter().zip(emb) {
                out[i] = e;
            }
        }
        Ok(out)
    }

    /// Embeddings of `texts` in one padded forward pass.
    ///
    /// # Shapes
    /// `texts`: B strings -> (B, H) f32.
    pub fn embed_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Tensor> {
        let ts = self.token_states(texts)?;
        let pooled = match self.pipeline.pooling {
            Pooling::Mean => mean_pool(&ts.states, &ts.mask)?, // (B, H)
            Pooling::Cls => ts.states.narrow(1, 0, 1)?.squeeze(1)?, // (B, H)
        };
        Ok(if self.pipeline.normalize {
            l2_normalize(&pooled)?
        } else {
            pooled
        })
    }

    /// The last layer's token states of `texts` in one padded batch: what cross-attention
    /// conditions on.
    ///
    /// # Shapes
    /// `texts`: B strings -> states (B, T, H), mask (B, T); T is the longest text's tokens.
    pub fn token_states<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenStates> {
        if texts.is_empty() {
            return Err(Error::usage("no texts to encode"));
        }
        let prepared: Vec<String> = texts
            .iter()
            .map(|t| self.prepare(t.as_ref()).into_owned())
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(prepared, true)
            .map_err(|e| Error::input(format!("cannot tokenize the texts: {e}")))?;
        let b = encodings.len();
        let t = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(b * t);
        let mut types = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(b * t);
        let mut lengths = Vec::with_capacity(b);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend(e.get_attention_mask().iter().map(|&m| m as f32));
            lengths.push(e.get_attention_mask().iter().filter(|&&m| m != 0).count());
        }
        let dev = self.model.device();
        let ids = Tensor::from_vec(ids, (b, t), dev)?; // (B, T)
        let types = Tensor::from_vec(types, (b, t), dev)?; // (B, T)
        let mask = Tensor::from_vec(mask, (b, t), dev)?; // (B, T)
        let states = self.model.forward(&ids, Some(&types), Some(&mask))?; // (B, T, H)
        Ok(TokenStates {
            states,
            mask,
            lengths,
        })
    }

    fn prepare<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        if self.pipeline.do_lower_case {
            text.to_lowercase().into()
        } else {
            text.into()
        }
    }
}

/// Loads `tokenizer.json` and sets truncation to `max_len` tokens and padding to the longest
/// text of each batch (the file's own settings, often a fixed 128, are replaced, as
/// sentence-transformers does).
fn load_tokenizer(path: &Path, max_len: usize, pad_id: u32) -> Result<Tokenizer> {
    let mut tok = Tokenizer::from_file(path).map_err(|e| {
        Error::input(format!(
            "{} is not a valid Hugging Face tokenizer.json: {e}",
            path.display()
        ))
    })?;
    let pad_token = tok
        .id_to_token(pad_id)
        .unwrap_or_else(|| "[PAD]".to_string());
    tok.with_truncation(Some(TruncationParams {
        max_length: max_len,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
        direction: TruncationDirection::Right,
    }))
    .map_err(|e| {
        Error::input(format!(
            "{}: cannot truncate to {max_len}: {e}",
            path.display()
        ))
    })?;
    tok.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        direction: PaddingDirection::Right,
        pad_to_multiple_of: None,
        pad_id,
        pad_type_id: 0,
        pad_token,
    }));
    Ok(tok)
}

/// The mean of the token states where `mask` is 1.
///
/// # Shapes
/// `states`: (B, T, H); `mask`: (B, T) of 0 and 1 -> (B, H).
pub fn mean_pool(states: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(states.dtype())?.unsqueeze(D::Minus1)?; // (B, T, 1)
    let sum = states.broadcast_mul(&m)?.sum(1)?; // (B, H)
    let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?; // (B, 1)
    sum.broadcast_div(&count)
}

/// Each row divided by its Euclidean length (at least 1e-12, as `torch.nn.functional.normalize`).
///
/// # Shapes
/// `x`: (B, H) -> (B, H).
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?; // (B, 1)
    x.broadcast_div(&norm)
}

/// Cosine similarity of two vectors (their dot product when both are unit length).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}
