//! The shape of the DDPM U-Net.

use serde::{Deserialize, Serialize};

/// U-Net shapes. Stored as the run's `config.json`.
///
/// ```text
/// inp 3x3 -> [2 res blocks @ c0, S] -> down -> [2 @ c1, S/2] -> down -> [2 (res + attn) @ c2, S/4]
///   -> middle res, attn, res -> [2 (res + attn) @ c2] -> up -> [2 @ c1] -> up -> [2 @ c0]
///   -> GroupNorm, SiLU, out 3x3        (skips: concat of each level's output on the way up)
/// time: sinusoidal(time_dim) -> Linear temb_dim -> SiLU -> Linear temb_dim (+ class embedding)
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Always `"ddpm_unet"`: tells readers of `config.json` which model this is.
    pub model_type: String,
    /// 1 (grey) or 3 (RGB), or the channels of a latent grid (latent diffusion).
    pub image_channels: usize,
    /// Side of the square images; a multiple of 4.
    pub image_size: usize,
    /// Channels at full, half and quarter resolution.
    pub channels: [usize; 3],
    /// Width of the sinusoidal timestep embedding (even).
    pub time_dim: usize,
    /// Width of the time (and class) embedding the residual blocks see.
    pub temb_dim: usize,
    /// GroupNorm groups; divides every channel count (and the concatenations).
    pub groups: usize,
    /// Attention heads at quarter resolution; divides `channels[2]`.
    pub heads: usize,
    /// Classes the model is conditioned on (a label embedding added to the time embedding,
    /// with one more row, index `n_classes`, for "no label"); 0 for an unconditional model.
    pub n_classes: usize,
    /// Width of the text-token states the model is conditioned on (cross-attention at quarter
    /// resolution, and the pooled text added to the time embedding); 0 for no text.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub context_dim: usize,
    /// How the pooled prompt joins the time embedding: set for text models (the t2i presets
    /// write it, so `--set model.text_pooling=unit` exists there), none for the others;
    /// text runs written before it existed read as [`TextPooling::Mean`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_pooling: Option<TextPooling>,
}

/// The prompt vector a text-conditioned U-Net adds (through a linear layer) to its time
/// embedding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextPooling {
    /// The masked mean of the token states (runs written before `text_pooling` existed).
    #[default]
    Mean,
    /// That mean scaled to norm sqrt(context_dim): prompts lie about three times as far apart
    /// (docs/diffusion.md).
    Unit,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl UNetConfig {
    /// The U-Net of `shared/bench/pytorch/ddpm_unet28.py`: 32/64/128 channels at 28/14/7,
    /// GroupNorm(8), 4 heads, time 32 -> 128, 28x28 grey images.
    pub fn ddpm28() -> Self {
        Self {
            model_type: "ddpm_unet".into(),
            image_channels: 1,
            image_size: 28,
            channels: [32, 64, 128],
            time_dim: 32,
            temb_dim: 128,
            groups: 8,
            heads: 4,
            n_classes: 0,
            context_dim: 0,
            text_pooling: None,
        }
    }

    /// The U-Net of latent diffusion on 4 x 8 x 8 latent grids (a 28x28 image padded to 32,
    /// at a quarter of the side): levels at 8, 4 and 2 with twice the channels of the pixel
    /// model (64/128/256), which still costs about a third of its multiply-adds per image.
    /// The input shape is taken from the VAE.
    pub fn latent8() -> Self {
        Self {
            image_channels: 4,
            image_size: 8,
            channels: [64, 128, 256],
            ..Self::ddpm28()
        }
    }

    /// The same, conditioned on `n_classes` labels (classifier-free guidance).
    pub fn ddpm28_cond(n_classes: usize) -> Self {
        Self {
            n_classes,
            ..Self::ddpm28()
        }
    }

    /// The same, conditioned on text states of width `context_dim`, for 28x28 RGB images.
    pub fn ddpm28_text(context_dim: usize) -> Self {
        Self {
            image_channels: 3,
            context_dim,
            text_pooling: Some(TextPooling::Mean),
            ..Self::ddpm28()
        }
    }

    /// True for a model conditioned on text.
    pub fn text_conditional(&self) -> bool {
        self.context_dim > 0
    }

    /// True for a class-conditional model.
    pub fn conditional(&self) -> bool {
        self.n_classes > 0
    }

    /// The label index meaning "no label" (the unconditional half of guidance).
    pub fn null_label(&self) -> usize {
        self.n_classes
    }

    /// Checks the shapes once, with a message naming the key to change.
    pub fn validate(&self) -> Result<(), String> {
        let [c0, c1, c2] = self.channels;
        let g = self.groups.max(1);
        let checks = [
            (
                self.model_type == "ddpm_unet",
                "model_type must be \"ddpm_unet\"",
            ),
            (
                (1..=16).contains(&self.image_channels),
                "image_channels must be 1 to 16",
            ),
            (
                self.image_size >= 4 && self.image_size.is_multiple_of(4),
                "image_size must be a multiple of 4",
            ),
            (self.groups > 0, "groups must be positive"),
            (
                c0 > 0 && c1 > 0 && c2 > 0 && [c0, c1, c2].iter().all(|c| c.is_multiple_of(g)),
                "channels must be positive multiples of groups",
            ),
            (
                self.heads > 0 && c2.is_multiple_of(self.heads),
                "heads must divide channels[2]",
            ),
            (
                self.time_dim >= 2 && self.time_dim.is_multiple_of(2),
                "time_dim must be even and at least 2",
            ),
            (self.temb_dim > 0, "temb_dim must be positive"),
            (self.n_classes <= 1000, "n_classes must be at most 1000"),
            (
                self.n_classes == 0 || self.context_dim == 0,
                "a model is conditioned on class labels (n_classes) or on text (context_dim), \
                 not both",
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg.to_string()),
            None => Ok(()),
        }
    }
}
