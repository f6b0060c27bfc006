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

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::Dropout;
use super::dropout::KeepMask;
use super::init::Init;
use super::ops::{self, WeightLayout};

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

/// A linear layer that received an adapter while building under [`with_lora`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Module path, e.g. `transformer.h.0.attn.c_attn`.
    pub module: String,
    pub in_dim: usize,
    pub out_dim: usize,
    pub layout: WeightLayout,
}

/// What [`with_lora`] did: every linear layer built, and those that got adapters.
#[derive(Clone, Debug, Default)]
pub struct LoraReport {
    pub linears: Vec<String>,
    pub attached: Vec<Attached>,
}

impl LoraReport {
    /// PEFT `target_modules`: the distinct `parent.name` suffixes of the adapted modules
    /// (`attn.c_attn`, `mlp.c_proj`, `self_attn.q_proj`), which PEFT matches by suffix.
    pub fn target_modules(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .attached
            .iter()
            .map(|a| {
                let parts: Vec<&str> = a.module.rsplitn(3, '.').collect();
                match parts.as_slice() {
                    [name, parent, ..] => format!("{parent}.{name}"),
                    _ => a.module.clone(),
                }
            })
            .collect();
        set.into_iter().collect()
    }

    /// True when the adapted layers store weights `(in, out)` (GPT-2's `Conv1D`).
    pub fn fan_in_fan_out(&self) -> bool {
        self.attached
            .first()
            .is_some_and(|a| a.layout == WeightLayout::InOut)
    }
}

struct Active {
    cfg: LoraConfig,
    vb: VarBuilder<'static>,
    dropout: LoraDropout,
    report: LoraReport,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// Clears the scope even when building fails.
struct ScopeGuard;

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.borrow_mut().take());
    }
}

/// Runs `build` (which constructs a model) so that every linear layer matching `cfg.targets`
/// gets an adapter whose `A` and `B` come from `adapters` (a `VarMap` builder for training,
/// tensors for loading). Fails when a target matches no layer. A fresh `VarMap` gets zeros
/// for `B`; initialise `A` with [`init_rule`].
pub fn with_lora<T>(
    cfg: &LoraConfig,
    adapters: VarBuilder<'static>,
    dropout: &LoraDropout,
    build: impl FnOnce() -> Result<T>,
) -> Result<(T, LoraReport)> {
    cfg.validate().map_err(candle_core::Error::Msg)?;
    ACTIVE.with(|a| {
        *a.borrow_mut() = Some(Active {
            cfg: cfg.clone(),
            vb: adapters,
            dropout: dropout.clone(),
            report: LoraReport::default(),
        })
    });
    let guard = ScopeGuard;
    let model = build()?;
    let report = ACTIVE
        .with(|a| a.borrow_mut().take())
        .map(|a| a.report)
        .unwrap_or_default();
    drop(guard);
    for t in &cfg.targets {
        if !report.linears.iter().any(|p| target_matches(t, p)) {
            return Err(candle_core::Error::Msg(format!(
                "--lora target '{t}' matches no linear layer of this model; its layers are: {}",
                summarise_modules(&report.linears)
            )));
        }
    }
    Ok((model, report))
}

/// Layer names without the block index, deduplicated: `transformer.h.*.attn.c_attn, ...`.
fn summarise_modules(paths: &[String]) -> String {
    let set: BTreeSet<String> = paths
        .iter()
        .map(|p| {
            p.split('.')
                .map(|s| if s.parse::<usize>().is_ok() { "*" } else { s })
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

/// Called by [`super::Linear::new`]: the adapter for the layer being built under `vb`, when a
/// [`with_lora`] scope is active and the layer is a target.
pub(crate) fn attach(
    vb: &VarBuilder,
    in_dim: usize,
    out_dim: usize,
    layout: WeightLayout,
) -> Result<Option<Lora>> {
    ACTIVE.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Some(active) = guard.as_mut() else {
            return Ok(None);
        };
        let module = vb.prefix();
        active.report.linears.push(module.clone());
        if !active
            .cfg
            .targets
            .iter()
            .any(|t| target_matches(t, &module))
        {
            return Ok(None);
        }
        let r = active.cfg.r;
        let at = active.vb.pp(PEFT_PREFIX).pp(&module);
        let a = at.get_with_hints((r, in_dim), "lora_A.weight", candle_nn::Init::Const(0.0))?;
        let b = at.get_with_hints((out_dim, r), "lora_B.weight", candle_nn::Init::Const(0.0))?;
        active.report.attached.push(Attached {
            module,
            in_dim,
            out_dim,
            layout,
        });
        Ok(Some(Lora {
            a,
            b,
            scale: active.cfg.scale(),
            dropout: active.dropout.clone(),
        }))
    })
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

/// PEFT's `adapter_config.json` (the fields Muse writes; PEFT fills the rest with defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    #[serde(default)]
    pub task_type: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f32,
    #[serde(default)]
    pub target_modules: serde_json::Value,
    #[serde(default = "bias_none")]
    pub bias: String,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub inference_mode: bool,
    #[serde(default)]
    pub init_lora_weights: serde_json::Value,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub modules_to_save: serde_json::Value,
}

fn bias_none() -> String {
    "none".into()
}

impl AdapterConfig {
    /// The config of adapters trained with `cfg` on the layers in `report`.
    pub fn new(cfg: &LoraConfig, report: &LoraReport, base: &str) -> Self {
        Self {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            r: cfg.r,
            lora_alpha: cfg.alpha,
            lora_dropout: cfg.dropout,
            target_modules: serde_json::json!(report.target_modules()),
            bias: "none".into(),
            fan_in_fan_out: report.fan_in_fan_out(),
            base_model_name_or_path: Some(base.to_string()),
            inference_mode: true,
            init_lora_weights: serde_json::json!(true),
            use_rslora: false,
            use_dora: false,
            modules_to_save: serde_json::Value::Null,
        }
    }

    /// The update scale: `alpha / r` (`alpha / sqrt(r)` with rsLoRA).
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }
}

/// A LoRA adapter read from disk: its config and, per module path, `(A, B)`.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub config: AdapterConfig,
    pub modules: BTreeMap<String, (Tensor, Tensor)>,
    /// The folder it came from.
    pub dir: PathBuf,
}

impl Adapter {
    /// True when `dir` holds an adapter (config and weights).
    pub fn exists(dir: &Path) -> bool {
        dir.is_dir()
            && dir.join(ADAPTER_CONFIG_FILE).is_file()
            && (dir.join(ADAPTER_FILE).is_file() || dir.join(PEFT_ADAPTER_FILE).is_file())
    }

    /// Reads the adapter in `dir` (`adapter_config.json` and `adapter.safetensors`, or PEFT's
    /// `adapter_model.safetensors`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let msg = |m: String| candle_core::Error::Msg(m);
        let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| msg(format!("{}: {e}", cfg_path.display())))?;
        let config: AdapterConfig = serde_json::from_str(&text).map_err(|e| {
            msg(format!(
                "{} is not a PEFT adapter config: {e}",
                cfg_path.display()
            ))
        })?;
        if config.peft_type != "LORA" {
            return Err(msg(format!(
                "{}: peft_type '{}' is not supported (only LORA)",
                cfg_path.display(),
                config.peft_type
            )));
        }
        if config.use_dora {
            return Err(msg(format!(
                "{}: DoRA adapters (use_dora: true) are not supported",
                cfg_path.display()
            )));
        }
        let weights = [ADAPTER_FILE, PEFT_ADAPTER_FILE]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                msg(format!(
                    "{} has adapter_config.json but no {ADAPTER_FILE}",
                    dir.display()
                ))
            })?;
        let tensors = candle_core::safetensors::load(&weights, device).map_err(|e| {
            msg(format!(
                "{} is damaged or not safetensors ({}); restore the file",
                weights.display(),
                without_backtrace(e)
            ))
        })?;
        let modules =
            group_modules(tensors).map_err(|e| msg(format!("{}: {e}", weights.display())))?;
        if modules.is_empty() {
            return Err(msg(format!("{} holds no LoRA tensors", weights.display())));
        }
        Ok(Self {
            config,
            modules,
            dir: dir.to_path_buf(),
        })
    }

    /// Folds the adapter into base weights named like the model's (`<module>.weight`):
    /// `W += scale * B A`, transposed for `(in, out)` weights (`fan_in_fan_out`). Returns the
    /// number of layers changed.
    pub fn merge_into(&self, tensors: &mut HashMap<String, Tensor>) -> Result<usize> {
        let scale = self.config.scale();
        for (module, (a, b)) in &self.modules {
            let key = format!("{module}.weight");
            let Some(w) = tensors.get(&key) else {
                return Err(candle_core::Error::Msg(format!(
                    "the adapter in {} adapts '{module}', which the base model does not have: \
                     it was trained on another model",
                    self.dir.display()
                )));
            };
            let (r, in_dim) = a.dims2()?;
            let (out_dim, r2) = b.dims2()?;
            let layout = if self.config.fan_in_fan_out {
                WeightLayout::InOut
            } else {
                WeightLayout::OutIn
            };
            let want = match layout {
                WeightLayout::InOut => [in_dim, out_dim],
                WeightLayout::OutIn => [out_dim, in_dim],
            };
            if r != r2 || w.dims() != want {
                return Err(candle_core::Error::Msg(format!(
                    "the adapter of '{module}' (A {:?}, B {:?}, fan_in_fan_out {}) does not fit \
                     the base weight {:?}: it was trained on another model",
                    a.dims(),
                    b.dims(),
                    self.config.fan_in_fan_out,
                    w.dims()
                )));
            }
            let d = delta(
                &a.to_dtype(w.dtype())?,
                &b.to_dtype(w.dtype())?,
                scale,
                layout,
            )?;
            let merged = (w + d)?;
            tensors.insert(key, merged);
        }
        Ok(self.modules.len())
    }
}

/// `base_model.model.<m>.lora_A.weight` / `lora_B.weight` -> `{m: (A, B)}`.
fn group_modules(
    tensors: HashMap<String, Tensor>,
) -> std::result::Result<BTreeMap<String, (Tensor, Tensor)>, String> {
    let mut a = HashMap::new();
    let mut b = HashMap::new();
    for (name, t) in tensors {
        let bare = name
            .strip_prefix(&format!("{PEFT_PREFIX}."))
            .unwrap_or(&name);
        if let Some(m) = bare.strip_suffix(".lora_A.weight") {
            a.insert(m.to_string(), t);
        } else if let Some(m) = bare.strip_suffix(".lora_B.weight") {
            b.insert(m.to_string(), t);
        }
    }
    let mut out = BTreeMap::new();
    for (m, ta) in a {
        let tb = b
            .remove(&m)
            .ok_or_else(|| format!("'{m}' has lora_A but no lora_B"))?;
        out.insert(m, (ta, tb));
    }
    if let Some(m) = b.keys().next() {
        return Err(format!("'{m}' has lora_B but no lora_A"));
    }
    Ok(out)
}

/// Writes `adapter.safetensors` (the adapter variables, already PEFT-named) and
/// `adapter_config.json` into `dir`.
pub fn save_adapter(
    dir: &Path,
    tensors: &HashMap<String, Tensor>,
    config: &AdapterConfig,
) -> crate::Result<()> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let host: Vec<(String, Tensor)> = sorted
        .into_iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let path = dir.join(ADAPTER_FILE);
    let bytes =
        safetensors::tensor::serialize(host.iter().map(|(k, t)| (k.as_str(), t)), Some(metadata))
            .map_err(|e| crate::Error::input(format!("cannot serialise {}: {e}", path.display())))?;
    crate::io::write_atomic(&path, &bytes)?;
    crate::io::write_json_atomic(&dir.join(ADAPTER_CONFIG_FILE), config)
}

fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        other => other,
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
