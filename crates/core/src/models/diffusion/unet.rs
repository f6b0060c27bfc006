//! The DDPM noise-prediction U-Net (Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic
//! Models"), at the size of `shared/bench/pytorch/ddpm_unet28.py`, optionally class-conditional
//! for classifier-free guidance (Ho & Salimans 2022: a label embedding, with a "no label" row,
//! added to the time embedding).
//!
//! Tensor names follow the reference's module tree (`temb.0.weight`, `d0.1.c1.weight`,
//! `d2a.0.qkv.weight`, `u2.0.skip.weight`, `out_norm.bias`, ...), so a PyTorch `state_dict`
//! of that model loads as it is.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{TextPooling, UNetConfig};
use crate::nn::ops::WeightLayout;
use crate::nn::{
    Conv2d, Embedding, GroupNorm, Linear, SpatialCrossAttention, SpatialSelfAttention, TextContext,
    timestep_embedding, upsample_nearest2x,
};

/// What a forward pass is conditioned on.
#[derive(Clone, Copy, Debug)]
pub enum Condition<'a> {
    /// Nothing: an unconditional model, or "no label" for a class-conditional one.
    None,
    /// One class label per image (N) (the label `n_classes` means "no label").
    Labels(&'a Tensor),
    /// Text-token states per image (the empty prompt is the unconditional half of guidance).
    Text(&'a TextContext),
}

/// The text path of a text-conditioned U-Net: the pooled prompt joins the time embedding,
/// and the token states are attended to after every self-attention at quarter resolution.
#[derive(Clone, Debug)]
struct TextPath {
    pooled: Linear,
    d2x: Vec<SpatialCrossAttention>,
    mx: SpatialCrossAttention,
    u2x: Vec<SpatialCrossAttention>,
}

impl TextPath {
    fn new(cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        let (c2, d) = (cfg.channels[2], cfg.context_dim);
        let cross = |vb: VarBuilder| SpatialCrossAttention::new(c2, d, cfg.heads, cfg.groups, vb);
        let pair = |vb: VarBuilder| -> Result<Vec<SpatialCrossAttention>> {
            (0..2).map(|i| cross(vb.pp(i.to_string()))).collect()
        };
        Ok(Self {
            pooled: Linear::new(
                d,
                cfg.temb_dim,
                true,
                WeightLayout::OutIn,
                vb.pp("text_emb"),
            )?,
            d2x: pair(vb.pp("d2x"))?,
            mx: cross(vb.pp("mx"))?,
            u2x: pair(vb.pp("u2x"))?,
        })
    }
}

/// Weights are f32 throughout.
pub const DTYPE: DType = DType::F32;

/// A residual block: `skip(x) + c2(silu(n2(c1(silu(n1(x))) + t(silu(temb)))))`.
#[derive(Clone, Debug)]
pub struct ResBlock {
    n1: GroupNorm,
    c1: Conv2d,
    t: Linear,
    n2: GroupNorm,
    c2: Conv2d,
    /// A 1x1 convolution when the channel count changes.
    skip: Option<Conv2d>,
}

impl ResBlock {
    pub fn new(cin: usize, cout: usize, cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        let g = cfg.groups;
        Ok(Self {
            n1: GroupNorm::new(g, cin, vb.pp("n1"))?,
            c1: Conv2d::new(cin, cout, 3, 1, 1, vb.pp("c1"))?,
            t: Linear::new(cfg.temb_dim, cout, true, WeightLayout::OutIn, vb.pp("t"))?,
            n2: GroupNorm::new(g, cout, vb.pp("n2"))?,
            c2: Conv2d::new(cout, cout, 3, 1, 1, vb.pp("c2"))?,
            skip: if cin != cout {
                Some(Conv2d::new(cin, cout, 1, 1, 0, vb.pp("skip"))?)
            } else {
                None
            },
        })
    }

    /// # Shapes
    /// `x`: (N, cin, H, W), `temb_act`: silu of the time embedding (N, temb) -> (N, cout, H, W).
    pub fn forward(&self, x: &Tensor, temb_act: &Tensor) -> Result<Tensor> {
        let tproj = self.t.forward(temb_act)?; // (N, cout)
        let h = self.c1.forward_shifted(&self.n1.forward_silu(x)?, &tproj)?; // (N, cout, H, W)
        let h = self.c2.forward(&self.n2.forward_silu(&h)?)?;
        match &self.skip {
            Some(s) => s.forward(x)? + h,
            None => x + h,
        }
    }
}

/// The noise-prediction network `eps_theta(x_t, t[, label])`.
#[derive(Clone, Debug)]
pub struct UNet {
    cfg: UNetConfig,
    temb0: Linear,
    temb2: Linear,
    class_emb: Option<Embedding>,
    text: Option<TextPath>,
    inp: Conv2d,
    d0: Vec<ResBlock>,
    down0: Conv2d,
    d1: Vec<ResBlock>,
    down1: Conv2d,
    d2: Vec<ResBlock>,
    d2a: Vec<SpatialSelfAttention>,
    m1: ResBlock,
    ma: SpatialSelfAttention,
    m2: ResBlock,
    u2: Vec<ResBlock>,
    u2a: Vec<SpatialSelfAttention>,
    up2: Conv2d,
    u1: Vec<ResBlock>,
    up1: Conv2d,
    u0: Vec<ResBlock>,
    out_norm: GroupNorm,
    out: Conv2d,
}

impl UNet {
    pub fn new(cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let [c0, c1, c2] = cfg.channels;
        let (g, heads) = (cfg.groups, cfg.heads);
        let pair = |cin: usize, cout: usize, vb: VarBuilder| -> Result<Vec<ResBlock>> {
            Ok(vec![
                ResBlock::new(cin, cout, cfg, vb.pp("0"))?,
                ResBlock::new(cout, cout, cfg, vb.pp("1"))?,
            ])
        };
        let attn_pair = |vb: VarBuilder| -> Result<Vec<SpatialSelfAttention>> {
            (0..2)
                .map(|i| SpatialSelfAttention::new(c2, heads, g, vb.pp(i.to_string())))
                .collect()
        };
        let linear = |i, o, vb| Linear::new(i, o, true, WeightLayout::OutIn, vb);
        let ic = cfg.image_channels;
        Ok(Self {
            cfg: cfg.clone(),
            temb0: linear(cfg.time_dim, cfg.temb_dim, vb.pp("temb").pp("0"))?,
            temb2: linear(cfg.temb_dim, cfg.temb_dim, vb.pp("temb").pp("2"))?,
            class_emb: if cfg.conditional() {
                Some(Embedding::new(
                    cfg.n_classes + 1,
                    cfg.temb_dim,
                    vb.pp("class_emb"),
                )?)
            } else {
                None
            },
            text: if cfg.text_conditional() {
                Some(TextPath::new(cfg, vb.clone())?)
            } else {
                None
            },
            inp: Conv2d::new(ic, c0, 3, 1, 1, vb.pp("inp"))?,
            d0: pair(c0, c0, vb.pp("d0"))?,
            down0: Conv2d::new(c0, c0, 3, 2, 1, vb.pp("down0"))?,
            d1: pair(c0, c1, vb.pp("d1"))?,
            down1: Conv2d::new(c1, c1, 3, 2, 1, vb.pp("down1"))?,
            d2: pair(c1, c2, vb.pp("d2"))?,
            d2a: attn_pair(vb.pp("d2a"))?,
            m1: ResBlock::new(c2, c2, cfg, vb.pp("m1"))?,
            ma: SpatialSelfAttention::new(c2, heads, g, vb.pp("ma"))?,
            m2: ResBlock::new(c2, c2, cfg, vb.pp("m2"))?,
            u2: pair(2 * c2, c2, vb.pp("u2"))?,
            u2a: attn_pair(vb.pp("u2a"))?,
            up2: Conv2d::new(c2, c2, 3, 1, 1, vb.pp("up2"))?,
            u1: pair(c2 + c1, c1, vb.pp("u1"))?,
            up1: Conv2d::new(c1, c1, 3, 1, 1, vb.pp("up1"))?,
            u0: pair(c1 + c0, c0, vb.pp("u0"))?,
            out_norm: GroupNorm::new(g, c0, vb.pp("out_norm"))?,
            out: Conv2d::new(c0, ic, 3, 1, 1, vb.pp("out"))?,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// The time embedding plus the class or pooled-text embedding, before the blocks' SiLU.
    ///
    /// # Shapes
    /// `t`: (N) -> (N, temb_dim).
    pub fn embed(&self, t: &Tensor, cond: Condition) -> Result<Tensor> {
        let e = timestep_embedding(t, self.cfg.time_dim)?; // (N, time_dim)
        let e = self.temb2.forward(&self.temb0.forward(&e)?.silu()?)?; // (N, temb)
        match (cond, &self.class_emb, &self.text) {
            (Condition::Labels(l), Some(emb), _) => {
                let n = l.dim(0)?;
                let l = l.to_dtype(DType::U32)?.reshape((n, 1))?;
                e + emb.forward(&l)?.squeeze(1)?
            }
            (Condition::None, Some(emb), _) => {
                // No label: the "no label" row for every sample.
                let null = emb.weight.narrow(0, self.cfg.null_label(), 1)?; // (1, temb)
                e.broadcast_add(&null)
            }
            (Condition::Text(ctx), _, Some(text)) => {
                let pooled = match self.cfg.text_pooling.unwrap_or_default() {
                    TextPooling::Mean => ctx.pooled()?,
                    TextPooling::Unit => ctx.pooled_unit()?,
                };
                e + text.pooled.forward(&pooled)?
            }
            (Condition::None, None, None) => Ok(e),
            (Condition::None, None, Some(_)) => candle_core::bail!(
                "a text-conditioned U-Net needs text states (the empty prompt for none)"
            ),
            (Condition::Labels(_), None, _) => {
                candle_core::bail!("this U-Net takes no class labels")
            }
            (Condition::Text(_), _, None) => candle_core::bail!("this U-Net takes no text"),
        }
    }

    /// Predicts the noise in `x_t` at timesteps `t` (and, for a conditional model, for the
    /// labels; `None` or the label `n_classes` means "no label").
    ///
    /// # Shapes
    /// `x`: (N, C, S, S), `t`: (N) timesteps in [0, T) (any numeric dtype), `labels`: (N)
    /// -> (N, C, S, S).
    pub fn forward(&self, x: &Tensor, t: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let cond = labels.map_or(Condition::None, Condition::Labels);
        self.forward_with(x, t, cond)
    }

    /// [`UNet::forward`] for any [`Condition`].
    ///
    /// # Shapes
    /// `x`: (N, C, S, S), `t`: (N) -> (N, C, S, S).
    pub fn forward_with(&self, x: &Tensor, t: &Tensor, cond: Condition) -> Result<Tensor> {
        let e = self.embed(t, cond)?.silu()?; // (N, temb), the blocks' input
        let ctx = match cond {
            Condition::Text(ctx) => Some(ctx),
            _ => None,
        };
        // A cross-attention after a self-attention, when the model reads text.
        let read = |h: Tensor, layer: Option<&SpatialCrossAttention>| -> Result<Tensor> {
            match (layer, ctx) {
                (Some(layer), Some(ctx)) => layer.forward(&h, ctx),
                _ => Ok(h),
            }
        };
        let text = self.text.as_ref();
        let mut h = self.inp.forward(x)?; // (N, c0, S, S)
        for rb in &self.d0 {
            h = rb.forward(&h, &e)?;
        }
        let s0 = h.clone();
        h = self.down0.forward(&h)?; // (N, c0, S/2, S/2)
        for rb in &self.d1 {
            h = rb.forward(&h, &e)?;
        }
        let s1 = h.clone(); // (N, c1, S/2, S/2)
        h = self.down1.forward(&h)?; // (N, c1, S/4, S/4)
        for (i, (rb, at)) in self.d2.iter().zip(&self.d2a).enumerate() {
            h = read(at.forward(&rb.forward(&h, &e)?)?, text.map(|t| &t.d2x[i]))?;
        }
        let s2 = h.clone(); // (N, c2, S/4, S/4)
        h = self.m1.forward(&h, &e)?;
        h = read(self.ma.forward(&h)?, text.map(|t| &t.mx))?;
        h = self.m2.forward(&h, &e)?;
        h = Tensor::cat(&[&h, &s2], 1)?; // (N, 2 c2, S/4, S/4)
        for (i, (rb, at)) in self.u2.iter().zip(&self.u2a).enumerate() {
            h = read(at.forward(&rb.forward(&h, &e)?)?, text.map(|t| &t.u2x[i]))?;
        }
        h = self.up2.forward(&upsample_nearest2x(&h)?)?; // (N, c2, S/2, S/2)
        h = Tensor::cat(&[&h, &s1], 1)?; // (N, c2 + c1, S/2, S/2)
        for rb in &self.u1 {
            h = rb.forward(&h, &e)?;
        }
        h = self.up1.forward(&upsample_nearest2x(&h)?)?; // (N, c1, S, S)
        h = Tensor::cat(&[&h, &s0], 1)?; // (N, c1 + c0, S, S)
        for rb in &self.u0 {
            h = rb.forward(&h, &e)?;
        }
        self.out.forward(&self.out_norm.forward_silu(&h)?) // (N, C, S, S)
    }
}

/// Parameters of a U-Net of this shape.
pub fn parameter_count(cfg: &UNetConfig) -> Result<usize> {
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DTYPE, &candle_core::Device::Cpu);
    UNet::new(cfg, vb)?;
    Ok(varmap.all_vars().iter().map(|v| v.elem_count()).sum())
}

/// Choices in a fresh U-Net's initialisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UNetInit {
    /// Standard deviation of the class embedding (`nn.Embedding`'s is 1).
    pub class_std: f64,
    /// Start the layers through which the text enters (every cross-attention's output
    /// convolution and the pooled-prompt projection) at zero, so a text model starts as the
    /// unconditional one (latent diffusion's `zero_module`, Rombach et al. 2022; ControlNet).
    pub zero_text_outputs: bool,
}

impl Default for UNetInit {
    fn default() -> Self {
        Self {
            class_std: 1.0,
            zero_text_outputs: false,
        }
    }
}

/// The initialisation of a fresh U-Net: PyTorch's defaults (convolutions and linears
/// Uniform(1/sqrt(fan_in)), GroupNorm weight 1 and bias 0), as `ddpm_unet28.py` starts, with
/// the choices of [`UNetInit`]. For [`crate::nn::init_varmap`].
pub fn unet_init(
    varmap: &candle_nn::VarMap,
    init: UNetInit,
) -> impl Fn(&str, &[usize]) -> crate::nn::Init + use<> {
    use crate::nn::Init;
    let torch = crate::nn::conv::torch_default_init(varmap);
    move |name: &str, dims: &[usize]| {
        let parts: Vec<&str> = name.split('.').collect();
        let owner = parts.len().checked_sub(2).map_or("", |i| parts[i]);
        if ["n1", "n2", "norm", "out_norm"].contains(&owner) {
            return Init::Const(if name.ends_with("weight") { 1.0 } else { 0.0 });
        }
        if name.ends_with("class_emb.weight") {
            return Init::Normal(init.class_std);
        }
        if init.zero_text_outputs && is_text_output(&parts) {
            return Init::Const(0.0);
        }
        torch(name, dims)
    }
}

/// `text_emb.*` and the `out` of the cross-attentions (`d2x.i`, `mx`, `u2x.i`). (The `ema.`
/// copies need no rule: a fresh run's average starts as a copy of the weights.)
fn is_text_output(parts: &[&str]) -> bool {
    match parts {
        ["text_emb", _] => true,
        [block, .., "out", _] => ["d2x", "mx", "u2x"].contains(block),
        _ => false,
    }
}
