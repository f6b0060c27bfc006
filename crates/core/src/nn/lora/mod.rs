//! LoRA: low-rank adapters on linear layers ("LoRA: Low-Rank Adaptation of Large Language
//! Models", Hu et al. 2021), stored the way Hugging Face PEFT stores them.
//!
//! An adapted layer computes `y = x W + b + (dropout(x) A^T B^T) * alpha / r` with `A` of shape
//! (r, in) and `B` of shape (out, r), as one fused op ([`super::ops::lora_linear`]) on the CPU.
//! `B` starts at zero, so a fresh adapter leaves the model unchanged; only `A` and `B` are
//! trained while `W` stays frozen.
//!
//! Models need no change: build one inside [`with_lora`] and every [`super::Linear`] whose
//! module path matches a target gets an adapter (created under the VarBuilder given to
//! `with_lora`, named `base_model.model.<module path>.lora_A.weight` / `lora_B.weight` as in
//! PEFT). On disk an adapter is `adapter.safetensors` (those names) plus `adapter_config.json`
//! (PEFT's `LoraConfig` fields); [`Adapter::merge_into`] folds one into the base weights.
mod adapter;
mod scope;

use std::sync::{Arc, Mutex};

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::Dropout;
use super::dropout::KeepMask;
use super::init::Init;
use super::ops::{self, WeightLayout};

pub use adapter::{Adapter, AdapterConfig, save_adapter};
pub(crate) use scope::attach;
pub use scope::{Attached, LoraReport, with_lora};

/// The adapter weights file in a run folder.
pub const ADAPTER_FILE: &str = "adapter.safetensors";
/// The adapter weights file PEFT writes (`save_pretrained`); read as well.
pub const PEFT_ADAPTER_FILE: &str = "adapter_model.safetensors";
/// The adapter config file (PEFT's).
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// The prefix PEFT gives every adapter tensor of a wrapped model.
pub const PEFT_PREFIX: &str = "base_model.model";

/// What to adapt and how: `--lora r=8,alpha=16,dropout=0.05,targets=attn,mlp`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the update.
    pub r: usize,
    /// Scale numerator: the update is multiplied by `alpha / r`.
    pub alpha: f64,
    /// Dropout on the adapter's input while training.
    pub dropout: f32,
    /// Which linear layers get adapters: `attn` (attention projections), `mlp`, `all`, or module
    /// names / path suffixes such as `c_attn`, `q_proj`, `attn.c_proj`, `lm_head`.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: vec!["attn".into(), "mlp".into()],
        }
    }
}

/// The keys a `--lora` spec accepts.
pub const SPEC_KEYS: &[&str] = &["r", "alpha", "dropout", "targets"];

impl LoraConfig {
    /// Parses `r=8,alpha=16,dropout=0.05,targets=attn,mlp` (every key optional, defaults as
    /// [`LoraConfig::default`]; the values after `targets=` run to the next `key=`).
    pub fn parse(spec: &str) -> std::result::Result<Self, String> {
        let mut cfg = Self::default();
        let mut targets: Option<Vec<String>> = None;
        let mut in_targets = false;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                if in_targets {
                    targets.get_or_insert_with(Vec::new).push(part.to_string());
                    continue;
                }
                return Err(format!(
                    "--lora: '{part}' is not key=value (keys: {})",
                    SPEC_KEYS.join(", ")
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            in_targets = key == "targets";
            let bad = |what: &str| format!("--lora {key}={value}: {what}");
            match key {
                "r" => {
                    cfg.r = value
                        .parse()
                        .map_err(|_| bad("r must be a positive integer"))?
                }
                "alpha" => {
                    cfg.alpha = value
                        .parse()
                        .map_err(|_| bad("alpha must be a positive number"))?
                }
                "dropout" => {
                    cfg.dropout = value
                        .parse()
                        .map_err(|_| bad("dropout must be a number in [0, 1)"))?
                }
                "targets" => {
                    let t = targets.get_or_insert_with(Vec::new);
                    t.clear();
                    if !value.is_empty() {
                        t.push(value.to_string());
                    }
                }
                other => {
                    return Err(format!(
                        "--lora: unknown key '{other}' (keys: {})",
                        SPEC_KEYS.join(", ")
                    ));
                }
            }
        }
        if let Some(t) = targets {
            cfg.targets = t;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values, with a message naming the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.r == 0 {
            return Err("--lora r must be at least 1".into());
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err("--lora alpha must be a positive number".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err("--lora dropout must be in [0, 1)".into());
        }
        if self.targets.is_empty() {
            return Err("--lora targets is empty: name at least one, e.g. targets=attn,mlp".into());
        }
        Ok(())
    }

    /// `alpha / r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.r as f64
    }
}

/// True when the linear layer at `path` (e.g. `transformer.h.0.attn.c_attn`) is a `target`:
/// `attn` means the attention block (`attn` or `self_attn`), `all` means attention and MLP,
/// anything else names a module or a dotted path suffix.
pub fn target_matches(target: &str, path: &str) -> bool {
    let hit = |t: &str| {
        path == t
            || path.ends_with(&format!(".{t}"))
            || path.starts_with(&format!("{t}."))
            || path.contains(&format!(".{t}."))
    };
    match target {
        "attn" => hit("attn") || hit("self_attn"),
        "all" => hit("attn") || hit("self_attn") || hit("mlp"),
        t => hit(t),
    }
}

/// The adapters' shared input dropout: set to training (seeded per micro-batch, as the
/// model's own dropout) or evaluation by the loop. Evaluation (identity) by default.
#[derive(Clone, Default)]
pub struct LoraDropout(Arc<Mutex<Option<Dropout>>>);

impl LoraDropout {
    /// Active dropout with probability `p`, masks from a stream seeded by `seed`.
    pub fn train(&self, p: f32, seed: u64) {
        *self.0.lock().expect("dropout lock is never poisoned") = Some(Dropout::train(p, seed));
    }

    /// Identity.
    pub fn eval(&self) {
        *self.0.lock().expect("dropout lock is never poisoned") = None;
    }

    /// The mask of the next `n` input elements, drawn from the stream as [`Dropout::apply`]
    /// draws it; `None` in evaluation.
    fn draw_mask(&self, n: usize) -> Option<KeepMask> {
        self.0
            .lock()
            .expect("dropout lock is never poisoned")
            .as_mut()
            .and_then(|d| d.draw_mask(n))
    }
}

impl std::fmt::Debug for LoraDropout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoraDropout")
    }
}

/// The adapter of one linear layer.
#[derive(Clone, Debug)]
pub struct Lora {
    /// (r, in)
    pub a: Tensor,
    /// (out, r)
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
    pub dropout: LoraDropout,
}

impl Lora {
    /// The adapted layer's output, `x W (+ b)` plus the update, as one fused op
    /// ([`ops::lora_linear`]) where it applies, so the layer keeps little more than a plain
    /// one for backward. Draws the adapter's dropout mask.
    ///
    /// # Shapes
    /// `x`: (N, in), `w`: the layer's weight in `layout`, `bias`: (out) -> (N, out).
    pub fn forward_adapted(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        layout: WeightLayout,
    ) -> Result<Tensor> {
        let mask = self.dropout.draw_mask(x.elem_count());
        ops::lora_linear(x, w, bias, layout, self.update(), mask)
    }

    /// The update alone, composed from tensor ops (draws the dropout mask like
    /// [`Lora::forward_adapted`]).
    ///
    /// # Shapes
    /// `x`: (N, in) -> (N, out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match self.dropout.draw_mask(x.elem_count()) {
            Some(mask) => x.mul(&mask.to_tensor(x)?)?,
            None => x.clone(),
        };
        let h = ops::linear(&x, &self.a, None, WeightLayout::OutIn)?; // (N, r)
        let y = ops::linear(&h, &self.b, None, WeightLayout::OutIn)?; // (N, out)
        y * self.scale
    }

    /// `A`, `B` and the scale, as the fused op takes them.
    pub fn update(&self) -> ops::LoraUpdate<'_> {
        ops::LoraUpdate {
            a: &self.a,
            b: &self.b,
            scale: self.scale,
        }
    }

    /// The weight update `scale * B A` in the layer's storage order.
    ///
    /// # Shapes
    /// -> (out, in) for [`WeightLayout::OutIn`], (in, out) for [`WeightLayout::InOut`].
    pub fn delta(&self, layout: WeightLayout) -> Result<Tensor> {
        delta(&self.a, &self.b, self.scale, layout)
    }
}

fn delta(a: &Tensor, b: &Tensor, scale: f64, layout: WeightLayout) -> Result<Tensor> {
    let d = (b.matmul(a)? * scale)?; // (out, in)
    match layout {
        WeightLayout::OutIn => Ok(d),
        WeightLayout::InOut => d.t()?.contiguous(), // (in, out)
    }
}
/// Initialisation of fresh adapters, for [`super::init_varmap`]: PEFT's default, `A` from
/// Kaiming-uniform (a = sqrt 5), i.e. U(-1/sqrt(in), 1/sqrt(in)), and `B` zero.
pub fn init_rule(name: &str, dims: &[usize]) -> Init {
    if name.ends_with("lora_A.weight") && dims.len() == 2 {
        Init::Uniform(1.0 / (dims[1] as f64).sqrt())
    } else {
        Init::Const(0.0)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_targets_to_the_next_key() {
        let c = LoraConfig::parse("r=4,targets=attn,mlp,alpha=8").unwrap();
        assert_eq!(c.r, 4);
        assert_eq!(c.alpha, 8.0);
        assert_eq!(c.targets, vec!["attn", "mlp"]);
        assert_eq!(c.dropout, 0.05);
    }

    #[test]
    fn targets_match_groups_and_suffixes() {
        let gpt = "transformer.h.0.attn.c_attn";
        assert!(target_matches("attn", gpt));
        assert!(target_matches("c_attn", gpt));
        assert!(!target_matches("mlp", gpt));
        assert!(!target_matches("attn", "transformer.h.0.mlp.c_proj"));
        assert!(target_matches("attn", "model.layers.1.self_attn.q_proj"));
        assert!(target_matches("attn.c_proj", "transformer.h.3.attn.c_proj"));
        assert!(!target_matches("attn.c_proj", "transformer.h.3.mlp.c_proj"));
    }
}
