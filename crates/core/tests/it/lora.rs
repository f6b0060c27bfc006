//! LoRA adapters (`nn::lora`) on the tiny GPT-2 and Llama fixtures: a fresh adapter (B = 0)
//! changes nothing, a merged adapter equals the unmerged adapted forward, training touches
//! only the adapters, and the files on disk carry PEFT's names and config fields.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use muse_core::models::pretrained::{ModelConfig, TextLm, load_tensors};
use muse_core::nn::lora::{
    self, Adapter, AdapterConfig, LoraConfig, LoraDropout, LoraReport, save_adapter, with_lora,
};
use muse_core::nn::{Dropout, Init, init_varmap};
use muse_core::train::AdamW;
use muse_core::train::tuning::{Base, Policy, finetune_train_config};

use crate::common::fixture;

/// The weights and architecture of a committed Hugging Face fixture (`gpt2`, `llama_gqa`).
fn base(name: &str) -> (ModelConfig, HashMap<String, Tensor>) {
    load_tensors(&fixture(&format!("hf/{name}")), &Device::Cpu).unwrap()
}

fn plain(cfg: &ModelConfig, tensors: &HashMap<String, Tensor>) -> TextLm {
    cfg.build(VarBuilder::from_tensors(
        tensors.clone(),
        DType::F32,
        &Device::Cpu,
    ))
    .unwrap()
}

/// The model with adapters on `lcfg.targets`, the adapters initialised by `rule`.
fn adapted(
    cfg: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
    lcfg: &LoraConfig,
    rule: impl Fn(&str, &[usize]) -> Init,
) -> (TextLm, VarMap, LoraReport) {
    let varmap = VarMap::new();
    let (model, report) = with_lora(
        lcfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &LoraDropout::default(),
        || {
            cfg.build(VarBuilder::from_tensors(
                tensors.clone(),
                DType::F32,
                &Device::Cpu,
            ))
        },
    )
    .unwrap();
    init_varmap(&varmap, 11, rule).unwrap();
    (model, varmap, report)
}

fn lora_cfg(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: targets.iter().map(|t| t.to_string()).collect(),
    }
}

/// Logits of two fixed sequences of 12 ids.
fn logits(model: &TextLm) -> Tensor {
    let ids: Vec<u32> = (0..24u32).map(|i| (i * 37 + 5) % 250).collect();
    let x = Tensor::from_vec(ids, (2, 12), &Device::Cpu).unwrap();
    model.forward(&x, &mut Dropout::eval()).unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

fn vars(varmap: &VarMap) -> HashMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

/// The adapted model over detached copies of the adapter variables (as evaluation and
/// sampling build it): no autograd graph.
fn frozen(
    cfg: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
    lcfg: &LoraConfig,
    varmap: &VarMap,
) -> TextLm {
    let detached: HashMap<String, Tensor> = vars(varmap)
        .into_iter()
        .map(|(k, v)| (k, v.detach()))
        .collect();
    let (model, _) = with_lora(
        lcfg,
        VarBuilder::from_tensors(detached, DType::F32, &Device::Cpu),
        &LoraDropout::default(),
        || {
            cfg.build(VarBuilder::from_tensors(
                tensors.clone(),
                DType::F32,
                &Device::Cpu,
            ))
        },
    )
    .unwrap();
    model
}

fn check_fresh_adapter_is_identity(name: &str, targets: &[&str], expect_adapted: usize) {
    let (cfg, tensors) = base(name);
    let reference = logits(&plain(&cfg, &tensors));
    let lcfg = lora_cfg(targets);
    let (model, varmap, report) = adapted(&cfg, &tensors, &lcfg, lora::init_rule);
    assert_eq!(report.attached.len(), expect_adapted, "{name}: {report:?}");
    // A is random (PEFT's Kaiming-uniform), B is zero.
    for (k, v) in vars(&varmap) {
        let m = max_abs(&v);
        if k.ends_with("lora_A.weight") {
            assert!(m > 0.0, "{k} should be random");
        } else {
            assert!(k.ends_with("lora_B.weight"), "{k}");
            assert_eq!(m, 0.0, "{k} should start at zero");
        }
    }
    let out = logits(&frozen(&cfg, &tensors, &lcfg, &varmap));
    assert_eq!(
        max_abs_diff(&out, &reference),
        0.0,
        "{name}: a fresh adapter changed the logits"
    );
    // The training forward (adapters recording a graph) adds exactly zero too; it may take
    // the composed attention instead of the fused inference kernel, so allow rounding.
    let out = logits(&model);
    let diff = max_abs_diff(&out, &reference);
    assert!(
        diff <= 1e-5 * max_abs(&reference).max(1.0),
        "{name}: the trainable forward moved the logits by {diff}"
    );
}

#[test]
fn a_fresh_adapter_leaves_gpt_logits_unchanged() {
    // 2 blocks x (c_attn, attn.c_proj, c_fc, mlp.c_proj).
    check_fresh_adapter_is_identity("gpt2", &["attn", "mlp"], 8);
}

#[test]
fn a_fresh_adapter_leaves_llama_logits_unchanged() {
    // 2 layers x (q, k, v, o, gate, up, down).
    check_fresh_adapter_is_identity("llama_gqa", &["all"], 14);
}

/// Gives every adapter weight a random value, saves the adapter, reads it back and merges it
/// into the base weights: the merged model must give the adapted model's logits.
fn check_merge_equals_adapted_forward(name: &str, targets: &[&str]) {
    let (cfg, tensors) = base(name);
    let lcfg = lora_cfg(targets);
    let (model, varmap, report) = adapted(&cfg, &tensors, &lcfg, |_, _| Init::Normal(0.2));
    let reference = logits(&plain(&cfg, &tensors));
    let unmerged = logits(&frozen(&cfg, &tensors, &lcfg, &varmap));
    let training = logits(&model);
    assert!(max_abs_diff(&training, &unmerged) <= 1e-5 * max_abs(&unmerged));
    assert!(
        max_abs_diff(&unmerged, &reference) > 1e-2,
        "{name}: the adapter should change the logits"
    );

    let tmp = tempfile::tempdir().unwrap();
    save_adapter(
        tmp.path(),
        &vars(&varmap),
        &AdapterConfig::new(&lcfg, &report, "fixture"),
    )
    .unwrap();
    let adapter = Adapter::load(tmp.path(), &Device::Cpu).unwrap();
    let mut merged_tensors = tensors.clone();
    let n = adapter.merge_into(&mut merged_tensors).unwrap();
    assert_eq!(n, report.attached.len());
    let changed = merged_tensors
        .iter()
        .filter(|(k, v)| max_abs_diff(v, &tensors[*k]) > 0.0)
        .count();
    assert_eq!(changed, n, "{name}: exactly the adapted weights change");

    let merged = logits(&plain(&cfg, &merged_tensors));
    let scale = max_abs(&unmerged);
    let diff = max_abs_diff(&merged, &unmerged);
    assert!(
        diff <= 1e-5 * scale.max(1.0),
        "{name}: merged and unmerged logits differ by {diff} (logits up to {scale})"
    );
}

#[test]
fn merged_gpt_adapter_equals_the_adapted_forward() {
    // GPT-2 stores (in, out) weights: the merge transposes B A (PEFT's fan_in_fan_out).
    check_merge_equals_adapted_forward("gpt2", &["attn", "mlp"]);
}

#[test]
fn merged_llama_adapter_equals_the_adapted_forward() {
    check_merge_equals_adapted_forward("llama_gqa", &["all"]);
}

#[test]
fn targets_select_layers_and_unknown_targets_are_refused() {
    let (cfg, tensors) = base("gpt2");
    let (_, _, report) = adapted(&cfg, &tensors, &lora_cfg(&["attn.c_proj"]), lora::init_rule);
    let modules: Vec<&str> = report.attached.iter().map(|a| a.module.as_str()).collect();
    assert_eq!(
        modules,
        ["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]
    );
    assert_eq!(report.target_modules(), ["attn.c_proj"]);

    let varmap = VarMap::new();
    let err = with_lora(
        &lora_cfg(&["q_proj"]),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &LoraDropout::default(),
        || {
            cfg.build(VarBuilder::from_tensors(
                tensors.clone(),
                DType::F32,
                &Device::Cpu,
            ))
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("'q_proj' matches no linear layer") && err.contains("attn.c_attn"),
        "{err}"
    );
}

/// A few AdamW steps on a LoRA policy: the adapters move, the base weights do not, and the
/// trainable parameters are exactly r * (in + out) per adapted layer.
#[test]
fn only_adapter_parameters_train() {
    let dir = fixture("hf/llama_gqa");
    let base = Base::load(&dir, None, true, &Device::Cpu).unwrap();
    let lcfg = lora_cfg(&["attn", "mlp"]);
    let policy = Policy::new(&base, Some(&lcfg), 3, &Device::Cpu).unwrap();
    let (_, report) = policy.lora.as_ref().unwrap();
    let expected: usize = report
        .attached
        .iter()
        .map(|a| lcfg.r * (a.in_dim + a.out_dim))
        .sum();
    assert_eq!(policy.trainable_count(), expected);
    assert!(
        expected * 10 < base.parameter_count(),
        "a small share trains"
    );
    for name in vars(&policy.varmap).keys() {
        assert!(
            name.starts_with("base_model.model.model.layers.")
                && (name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight")),
            "{name} is not an adapter weight"
        );
    }

    let original = logits(&plain(&base.cfg, &base.tensors));
    // Evaluation views of the variables follow the training updates.
    let eval_model = policy.frozen(&base, &Device::Cpu).unwrap();
    let before = logits(&eval_model);
    assert_eq!(max_abs_diff(&before, &original), 0.0, "B = 0 at the start");
    let mut train = finetune_train_config(true);
    train.lr = 1e-2;
    let mut opt = AdamW::new(&policy.varmap, &train).unwrap();
    let ids: Vec<u32> = (0..16u32).map(|i| 3 + (i * 7) % 300).collect();
    let x = Tensor::from_vec(ids[..15].to_vec(), (1, 15), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(ids[1..].to_vec(), (1, 15), &Device::Cpu).unwrap();
    let mut losses = Vec::new();
    for _ in 0..5 {
        let loss = policy.model.loss(&x, &y, &mut Dropout::eval()).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let grads = opt.grads(&loss.backward().unwrap());
        opt.step(&grads, train.lr).unwrap();
    }
    assert!(losses[4] < losses[0], "the adapters learn: {losses:?}");
    assert!(max_abs_diff(&logits(&eval_model), &before) > 1e-3);
    for (k, v) in vars(&policy.varmap) {
        if k.ends_with("lora_B.weight") {
            assert!(max_abs(&v) > 0.0, "{k} did not move");
        }
    }

    // The base weights, in the policy's own base and as the policy model sees them, are the
    // file's: a plain model over base.tensors gives the original logits.
    let (_, on_disk) = load_tensors(&dir, &Device::Cpu).unwrap();
    assert_eq!(on_disk.len(), base.tensors.len());
    for (k, v) in &on_disk {
        assert_eq!(max_abs_diff(v, &base.tensors[k]), 0.0, "{k} changed");
    }
    assert_eq!(
        max_abs_diff(&logits(&plain(&base.cfg, &base.tensors)), &original),
        0.0
    );
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn adapter_files_use_peft_names_and_config_fields() {
    let (cfg, tensors) = base("gpt2");
    let lcfg = LoraConfig {
        r: 2,
        alpha: 16.0,
        dropout: 0.05,
        targets: vec!["attn".into(), "mlp".into()],
    };
    let (_, varmap, report) = adapted(&cfg, &tensors, &lcfg, lora::init_rule);
    let tmp = tempfile::tempdir().unwrap();
    save_adapter(
        tmp.path(),
        &vars(&varmap),
        &AdapterConfig::new(&lcfg, &report, "runs/base"),
    )
    .unwrap();

    let saved =
        candle_core::safetensors::load(tmp.path().join(lora::ADAPTER_FILE), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = saved.keys().collect();
    names.sort();
    assert_eq!(names.len(), 16, "A and B for 8 layers: {names:?}");
    // GPT-2 (n_embd 32): c_attn 32 -> 96, attn.c_proj 32 -> 32, c_fc 32 -> 128, mlp.c_proj
    // 128 -> 32; PEFT stores A as (r, in) and B as (out, r).
    for (module, i, o) in [
        ("attn.c_attn", 32, 96),
        ("attn.c_proj", 32, 32),
        ("mlp.c_fc", 32, 128),
        ("mlp.c_proj", 128, 32),
    ] {
        for layer in 0..2 {
            let stem = format!("base_model.model.transformer.h.{layer}.{module}");
            assert_eq!(saved[&format!("{stem}.lora_A.weight")].dims(), [2, i]);
            assert_eq!(saved[&format!("{stem}.lora_B.weight")].dims(), [o, 2]);
        }
    }

    let c = read_json(&tmp.path().join(lora::ADAPTER_CONFIG_FILE));
    assert_eq!(c["peft_type"], "LORA");
    assert_eq!(c["task_type"], "CAUSAL_LM");
    assert_eq!(c["r"], 2);
    assert_eq!(c["lora_alpha"], 16.0);
    assert!((c["lora_dropout"].as_f64().unwrap() - 0.05).abs() < 1e-6);
    assert_eq!(
        c["target_modules"],
        serde_json::json!(["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"])
    );
    assert_eq!(c["fan_in_fan_out"], true, "GPT-2's Conv1D stores (in, out)");
    assert_eq!(c["bias"], "none");
    assert_eq!(c["base_model_name_or_path"], "runs/base");
    assert_eq!(c["use_rslora"], false);
    assert_eq!(c["use_dora"], false);
    assert_eq!(c["init_lora_weights"], true);
    assert!(c.get("inference_mode").is_some() && c.get("modules_to_save").is_some());

    // A Llama adapter stores nn.Linear-style (out, in) weights.
    let (cfg, tensors) = base("llama_gqa");
    let (_, _, report) = adapted(&cfg, &tensors, &lora_cfg(&["attn"]), lora::init_rule);
    let c = AdapterConfig::new(&lora_cfg(&["attn"]), &report, "x");
    assert!(!c.fan_in_fan_out);
    assert_eq!(
        c.target_modules,
        serde_json::json!([
            "self_attn.k_proj",
            "self_attn.o_proj",
            "self_attn.q_proj",
            "self_attn.v_proj"
        ])
    );
}

/// An adapter PEFT wrote (`adapter_model.safetensors`, rsLoRA scale) loads and merges with
/// PEFT's scale `alpha / sqrt(r)`.
#[test]
fn peft_adapter_files_load_with_their_scale() {
    let (cfg, tensors) = base("llama_gqa");
    let lcfg = lora_cfg(&["q_proj"]);
    let (_, varmap, report) = adapted(&cfg, &tensors, &lcfg, |_, _| Init::Normal(0.2));
    let tmp = tempfile::tempdir().unwrap();
    let mut config = AdapterConfig::new(&lcfg, &report, "x");
    config.use_rslora = true;
    save_adapter(tmp.path(), &vars(&varmap), &config).unwrap();
    std::fs::rename(
        tmp.path().join(lora::ADAPTER_FILE),
        tmp.path().join(lora::PEFT_ADAPTER_FILE),
    )
    .unwrap();
    assert!(Adapter::exists(tmp.path()));
    let adapter = Adapter::load(tmp.path(), &Device::Cpu).unwrap();
    // r = 4, alpha = 8: rsLoRA scale 8 / 2 = 4, plain LoRA 8 / 4 = 2.
    assert_eq!(adapter.config.scale(), 4.0);
    let mut merged = tensors.clone();
    adapter.merge_into(&mut merged).unwrap();
    let key = "model.layers.0.self_attn.q_proj.weight";
    let (a, b) = &adapter.modules["model.layers.0.self_attn.q_proj"];
    let want = (&tensors[key] + (b.matmul(a).unwrap() * 4.0).unwrap()).unwrap();
    assert!(max_abs_diff(&merged[key], &want) < 1e-6);
}
