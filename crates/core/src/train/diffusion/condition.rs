//! What each training image is conditioned on, drawn per step: nothing, its class label, or a
//! caption of its class and tint in a random training wording; dropped to "no label" or the
//! empty prompt with the configured probability, for classifier-free guidance.

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::captions::{CaptionSet, Wording, WordingSplit, caption};
use crate::data::images::ImageDataset;
use crate::embed::SentenceEncoder;
use crate::error::Result;
use crate::models::diffusion::Condition;
use crate::nn::TextContext;

/// How a run conditions its images.
pub enum Conditioner {
    None,
    Labels {
        null: u32,
        dropout: f64,
    },
    Text {
        encoder: Box<SentenceEncoder>,
        set: CaptionSet,
        /// The palette index of each training image.
        colours: Vec<u8>,
        dropout: f64,
    },
}

/// One batch's condition as tensors.
pub enum CondBatch {
    None,
    Labels(Tensor),
    Text(TextContext),
}

impl CondBatch {
    pub fn condition(&self) -> Condition<'_> {
        match self {
            Self::None => Condition::None,
            Self::Labels(l) => Condition::Labels(l),
            Self::Text(t) => Condition::Text(t),
        }
    }
}

impl Conditioner {
    /// The condition of the images `idx` of `data`, with the draws of `rng`.
    pub fn batch(
        &self,
        data: &ImageDataset,
        idx: &[usize],
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<CondBatch> {
        match self {
            Self::None => Ok(CondBatch::None),
            Self::Labels { null, dropout } => {
                let l: Vec<u32> = match data.labels_at(idx, device)? {
                    Some(l) => l.to_vec1::<u32>()?,
                    None => vec![*null; idx.len()],
                };
                let l: Vec<u32> = l
                    .into_iter()
                    .map(|v| {
                        if rng.random::<f64>() < *dropout {
                            *null
                        } else {
                            v
                        }
                    })
                    .collect();
                Ok(CondBatch::Labels(Tensor::from_vec(l, idx.len(), device)?))
            }
            Self::Text {
                encoder,
                set,
                colours,
                dropout,
            } => {
                let labels = data.labels.as_deref().unwrap_or_default();
                let captions: Vec<String> = idx
                    .iter()
                    .map(|&i| {
                        let wording = Wording::draw(WordingSplit::Train, rng);
                        if rng.random::<f64>() < *dropout {
                            return String::new();
                        }
                        let class = labels.get(i).copied().unwrap_or(0) as usize;
                        caption(*set, class, colours[i] as usize, wording)
                    })
                    .collect();
                Ok(CondBatch::Text(encode(encoder, &captions)?))
            }
        }
    }

    /// The unconditional input for `n` images (the test loss is measured without a condition).
    pub fn null(&self, n: usize) -> Result<CondBatch> {
        match self {
            Self::Text { encoder, .. } => Ok(CondBatch::Text(encode(encoder, &vec![""; n])?)),
            _ => Ok(CondBatch::None),
        }
    }
}

/// Token states of `texts`, frozen (no gradient reaches the encoder).
fn encode<S: AsRef<str>>(encoder: &SentenceEncoder, texts: &[S]) -> Result<TextContext> {
    let ts = encoder.token_states(texts)?;
    Ok(TextContext {
        states: ts.states.detach(),
        mask: ts.mask,
    })
}

impl Conditioner {
    /// The conditioner of a run whose model config is final (classes set from the data):
    /// opens the frozen text encoder of a text-to-image run. `colours` are the training
    /// images' tints (text-to-image only).
    pub fn new(cfg: &super::DiffusionRunConfig, colours: Vec<u8>, device: &Device) -> Result<Self> {
        if let Some(text) = &cfg.text {
            let set = CaptionSet::for_dataset(&cfg.data.dataset).ok_or_else(|| {
                crate::Error::usage(format!(
                    "text-to-image captions exist for mnist and fashion-mnist, not '{}'",
                    cfg.data.dataset
                ))
            })?;
            let encoder =
                SentenceEncoder::open(&crate::embed::encoder_dir(&text.encoder)?, device)?;
            return Ok(Self::Text {
                encoder: Box::new(encoder),
                set,
                colours,
                dropout: text.prompt_dropout,
            });
        }
        if cfg.model.conditional() {
            return Ok(Self::Labels {
                null: cfg.model.null_label() as u32,
                dropout: cfg.label_dropout,
            });
        }
        Ok(Self::None)
    }
}
