//! The scope in which a model is built with adapters: [`with_lora`] makes every matching
//! [`crate::nn::Linear`] built inside it ask [`attach`] for its adapter.

use std::cell::RefCell;
use std::collections::BTreeSet;

use candle_core::Result;
use candle_nn::VarBuilder;

use super::super::ops::WeightLayout;
use super::{Lora, LoraConfig, LoraDropout, PEFT_PREFIX, target_matches};

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
/// for `B`; initialise `A` with [`super::init_rule`].
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

/// Called by [`crate::nn::Linear::new`]: the adapter for the layer being built under `vb`, when a
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
