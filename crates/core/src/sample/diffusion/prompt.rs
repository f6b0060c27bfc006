//! What the reverse chain is conditioned on: nothing, class labels, or prompts read by a
//! frozen sentence encoder. For guidance each conditioned row has an unconditional twin: the
//! "no label" row, or the empty prompt (as Stable Diffusion guides with the empty string).

use candle_core::{Device, Tensor};

use crate::embed::SentenceEncoder;
use crate::error::{Error, Result};
use crate::models::diffusion::UNetConfig;
use crate::nn::TextContext;

/// The condition of each image of a batch.
#[derive(Clone, Debug, Default)]
pub enum Conditioning {
    /// Unconditional (or "no label" / the empty prompt for a conditional model).
    #[default]
    None,
    /// One class label per image.
    Labels(Vec<u32>),
    /// One prompt per image, encoded.
    Text(PromptStates),
}

impl Conditioning {
    /// Labels when there are some.
    pub fn labels(labels: Option<Vec<u32>>) -> Self {
        labels.map_or(Self::None, Self::Labels)
    }
}

/// Prompts and their token states, with the empty prompt's states after them.
#[derive(Clone, Debug)]
pub struct PromptStates {
    pub prompts: Vec<String>,
    /// Rows `[prompts; empty prompt x N]`, padded to one length. (2N, L, D).
    pub both: TextContext,
}

impl PromptStates {
    /// Encodes `prompts` (one per image) and as many empty prompts with `encoder`.
    pub fn encode(encoder: &SentenceEncoder, prompts: &[String]) -> Result<Self> {
        if prompts.is_empty() {
            return Err(Error::usage("no prompts to encode"));
        }
        let texts: Vec<&str> = prompts
            .iter()
            .map(String::as_str)
            .chain(std::iter::repeat_n("", prompts.len()))
            .collect();
        let ts = encoder.token_states(&texts)?;
        Ok(Self {
            prompts: prompts.to_vec(),
            both: TextContext {
                states: ts.states,
                mask: ts.mask,
            },
        })
    }

    /// Images conditioned.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// The prompts' rows alone (no guidance).
    pub fn prompted(&self) -> Result<TextContext> {
        let n = self.len();
        Ok(TextContext {
            states: self.both.states.narrow(0, 0, n)?,
            mask: self.both.mask.narrow(0, 0, n)?,
        })
    }
}

/// The condition as tensors, checked against the model.
pub(super) enum Ready {
    None,
    Labels(Tensor),
    Text {
        prompted: TextContext,
        both: TextContext,
    },
}

impl Ready {
    pub(super) fn new(
        cfg: &UNetConfig,
        cond: &Conditioning,
        n: usize,
        device: &Device,
    ) -> Result<Self> {
        match cond {
            Conditioning::None if cfg.text_conditional() => Err(Error::usage(
                "this model draws what a prompt describes: pass --prompt \"...\"",
            )),
            Conditioning::None => Ok(Self::None),
            Conditioning::Labels(labels) => {
                if !cfg.conditional() {
                    return Err(Error::usage(if cfg.text_conditional() {
                        "this model is conditioned on text: describe the image with --prompt \
                         instead of --label"
                    } else {
                        "this model is unconditional: it takes no --label (train a -cond preset \
                         for class-conditional samples)"
                    }));
                }
                if labels.len() != n {
                    return Err(Error::usage(format!(
                        "{} labels for {n} images",
                        labels.len()
                    )));
                }
                if let Some(bad) = labels.iter().find(|&&l| l as usize >= cfg.n_classes) {
                    return Err(Error::usage(format!(
                        "unknown label {bad}: the model knows labels 0..={}",
                        cfg.n_classes - 1
                    )));
                }
                Ok(Self::Labels(Tensor::from_vec(labels.clone(), n, device)?))
            }
            Conditioning::Text(p) => {
                if !cfg.text_conditional() {
                    return Err(Error::usage(
                        "--prompt: this model was not trained on text; train a text-to-image \
                         preset (t2i-fashion, t2i-mnist)",
                    ));
                }
                if p.len() != n {
                    return Err(Error::usage(format!("{} prompts for {n} images", p.len())));
                }
                let width = p.both.states.dim(2)?;
                if width != cfg.context_dim {
                    return Err(Error::input(format!(
                        "the text encoder gives states of width {width} but the model was \
                         trained on width {}: use the encoder it was trained with",
                        cfg.context_dim
                    )));
                }
                Ok(Self::Text {
                    prompted: p.prompted()?,
                    both: p.both.clone(),
                })
            }
        }
    }
}
