//! The model being fine-tuned: the pretrained base it starts from, and the trainable policy
//! on top of it (every weight, or LoRA adapters over frozen weights).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::error::{Error, Result};
use crate::models::pretrained::{
    DTYPE, ModelConfig, TextLm, load_tensors, set_vars, without_backtrace,
};
use crate::nn::init_varmap;
use crate::nn::lora::{self, Adapter, LoraConfig, LoraDropout, LoraReport, with_lora};
use crate::run_dir::RunDir;
use crate::tokenizer::TextTokenizer;
use crate::tokenizer::chat::ChatTemplate;
use crate::tokenizer::hf_config::TokenizerConfig;
use crate::train::checkpoint;

/// A pretrained model to start from, in memory.
pub struct Base {
    pub cfg: ModelConfig,
    /// Weights under Muse's (Hugging Face) names, any LoRA adapter of the folder merged in.
    pub tensors: HashMap<String, Tensor>,
    pub tokenizer: TextTokenizer,
    /// The folder's `tokenizer_config.json`, or what a GGUF file's metadata says in its
    /// terms: written into the run, so that the tuned model keeps the BOS rule, EOS and
    /// Jinja chat template of its base.
    pub tokenizer_config: TokenizerConfig,
    /// The folder's chat template (plain when it has none).
    pub template: ChatTemplate,
    /// Prepended to every sequence (Llama's `<s>`).
    pub bos: Option<u32>,
    /// Appended after every reply.
    pub eos: Option<u32>,
    /// Where it came from.
    pub path: PathBuf,
    /// True when the folder carried a LoRA adapter that was merged.
    pub merged_adapter: bool,
}

impl Base {
    /// Loads a Muse run, a Hugging Face gpt2/llama folder, a llama2.c `.bin` (with
    /// `tokenizer`) or a GGUF Llama (widened to f32; tokenizer and template from its metadata). With `merge_adapter`, a folder's LoRA adapter (`adapter.safetensors`) is
    /// merged into the weights (a new run starts from the adapted model); without, the
    /// weights are taken as they are (a resumed LoRA run reopens its frozen base).
    pub fn load(
        path: &Path,
        tokenizer: Option<&Path>,
        merge_adapter: bool,
        device: &Device,
    ) -> Result<Self> {
        if !path.exists() {
            return Err(Error::input(format!(
                "no model at {}: pass a Muse run folder, a Hugging Face gpt2/llama folder, a \
                 GGUF file or a llama2.c .bin checkpoint",
                path.display()
            )));
        }
        let fail = |e: candle_core::Error| Error::input(without_backtrace(e).to_string());
        let (cfg, mut tensors) = load_tensors(path, device).map_err(fail)?;
        let merged_adapter = merge_adapter && Adapter::exists(path);
        if merged_adapter {
            let adapter = Adapter::load(path, device).map_err(fail)?;
            adapter.merge_into(&mut tensors).map_err(fail)?;
        }
        let gguf = path.is_file() && crate::models::gguf::is_gguf(path);
        let (file_tokenizer, tokenizer_config) = if gguf {
            let (tok, config) = gguf_tokenizer(path)?;
            (Some(tok), config)
        } else if path.is_dir() {
            (None, TokenizerConfig::read(path)?)
        } else {
            (None, TokenizerConfig::default())
        };
        let tokenizer = match (tokenizer, file_tokenizer) {
            (Some(t), _) => crate::tokenizer::files::load_file(t)?,
            (None, Some(t)) => t,
            (None, None) if path.is_dir() => crate::tokenizer::files::find_in_dir(path)?
                .ok_or_else(|| {
                    Error::input(format!(
                        "{} has no tokenizer.json (nor vocab.json + merges.txt): copy the \
                         tokenizer the model was trained with into the folder, or pass \
                         --tokenizer FILE",
                        path.display()
                    ))
                })?,
            (None, None) => {
                return Err(Error::usage(format!(
                    "{} is a llama2.c checkpoint, which carries no tokenizer: pass --tokenizer",
                    path.display()
                )));
            }
        };
        if tokenizer.vocab_size() > cfg.vocab_size() {
            return Err(Error::input(format!(
                "the tokenizer has {} tokens but the model only {}: they do not belong together",
                tokenizer.vocab_size(),
                cfg.vocab_size()
            )));
        }
        let template = if path.is_dir() {
            ChatTemplate::for_model_dir(path)?.0
        } else {
            ChatTemplate::from_jinja(tokenizer_config.chat_template.as_deref()).0
        };
        let eos_by_name = tokenizer_config
            .eos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t));
        // BOS as the tokenizer adds it (sampling follows the same rule); a llama2.c
        // checkpoint has no tokenizer files, so its config decides.
        let (bos, eos) = match &cfg {
            ModelConfig::Llama(c) if path.is_file() && !gguf => {
                (c.bos_token_id, c.eos_token_id.or(tokenizer.eos_id()))
            }
            ModelConfig::Llama(c) => (
                tokenizer_config.bos_id(&tokenizer, c.bos_token_id)?,
                eos_by_name.or(c.eos_token_id).or(tokenizer.eos_id()),
            ),
            ModelConfig::Gpt(_) => (None, tokenizer.eos_id()),
        };
        Ok(Self {
            cfg,
            tensors,
            tokenizer,
            tokenizer_config,
            template,
            bos,
            eos,
            path: path.to_path_buf(),
            merged_adapter,
        })
    }

    /// `gpt` or `llama`: the family of a run fine-tuned from this base.
    pub fn family(&self) -> &'static str {
        match self.cfg {
            ModelConfig::Gpt(_) => "gpt",
            ModelConfig::Llama(_) => "llama",
        }
    }

    /// Parameters of the model (tied weights once).
    pub fn parameter_count(&self) -> usize {
        match &self.cfg {
            ModelConfig::Gpt(c) => crate::models::gpt::parameter_count(c),
            ModelConfig::Llama(c) => crate::models::llama::parameter_count(c),
        }
    }

    /// The frozen model (no adapters, no graph): the DPO reference.
    pub fn frozen(&self, device: &Device) -> Result<TextLm> {
        Ok(self.cfg.build(VarBuilder::from_tensors(
            self.tensors.clone(),
            DTYPE,
            device,
        ))?)
    }
}

/// The trainable model: every weight (full fine-tuning) or LoRA adapters over the base.
pub struct Policy {
    /// The model whose forward records a graph for the trainable variables.
    pub model: TextLm,
    /// The trainable variables (all weights, or the adapters under PEFT names).
    pub varmap: VarMap,
    /// LoRA settings and the layers adapted, when training adapters.
    pub lora: Option<(LoraConfig, LoraReport)>,
    /// The adapters' input dropout (training: set per micro-batch).
    pub lora_dropout: LoraDropout,
}

impl Policy {
    /// A policy starting at the base: its weights as variables, or fresh adapters (`B = 0`,
    /// `A` seeded by `seed`) over its frozen weights.
    pub fn new(base: &Base, lora: Option<&LoraConfig>, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let lora_dropout = LoraDropout::default();
        match lora {
            None => {
                let model = base
                    .cfg
                    .build(VarBuilder::from_varmap(&varmap, DTYPE, device))?;
                set_vars(&varmap, &base.tensors)
                    .map_err(|e| Error::input(without_backtrace(e).to_string()))?;
                Ok(Self {
                    model,
                    varmap,
                    lora: None,
                    lora_dropout,
                })
            }
            Some(cfg) => {
                let (model, report) = with_lora(
                    cfg,
                    VarBuilder::from_varmap(&varmap, DTYPE, device),
                    &lora_dropout,
                    || {
                        base.cfg.build(VarBuilder::from_tensors(
                            base.tensors.clone(),
                            DTYPE,
                            device,
                        ))
                    },
                )
                .map_err(|e| Error::usage(without_backtrace(e).to_string()))?;
                init_varmap(&varmap, seed, lora::init_rule)?;
                Ok(Self {
                    model,
                    varmap,
                    lora: Some((cfg.clone(), report)),
                    lora_dropout,
                })
            }
        }
    }

    /// The same weights without autograd (views of the variables), for evaluation and samples.
    pub fn frozen(&self, base: &Base, device: &Device) -> Result<TextLm> {
        let vars: HashMap<String, Tensor> = checkpoint::varmap_tensors(&self.varmap)
            .into_iter()
            .map(|(k, v)| (k, v.detach()))
            .collect();
        let vb = VarBuilder::from_tensors(vars, DTYPE, device);
        match &self.lora {
            None => Ok(base.cfg.build(vb)?),
            Some((cfg, _)) => {
                let (model, _) = with_lora(cfg, vb, &LoraDropout::default(), || {
                    base.cfg.build(VarBuilder::from_tensors(
                        base.tensors.clone(),
                        DTYPE,
                        device,
                    ))
                })?;
                Ok(model)
            }
        }
    }

    /// The file a checkpoint writes the trained variables to.
    pub fn weights_file(&self, run: &RunDir) -> PathBuf {
        match self.lora {
            None => run.weights(),
            Some(_) => run.root().join(lora::ADAPTER_FILE),
        }
    }

    /// Number of trained parameters.
    pub fn trainable_count(&self) -> usize {
        checkpoint::varmap_tensors(&self.varmap)
            .values()
            .map(|t| t.elem_count())
            .sum()
    }

    /// `model.safetensors` (full) or `adapter.safetensors` + `adapter_config.json` (LoRA) as
    /// they stand, plus optimizer and state: one checkpoint.
    pub fn save(
        &self,
        run: &RunDir,
        opt: &crate::train::optimizer::AdamW,
        state: &checkpoint::TrainState,
    ) -> Result<()> {
        checkpoint::save_to(
            run,
            &self.weights_file(run),
            &checkpoint::varmap_tensors(&self.varmap),
            &[("", opt)],
            state,
        )
    }

    /// Restores the last checkpoint of `run` into the variables and `opt`.
    pub fn load_checkpoint(
        &mut self,
        run: &RunDir,
        opt: &mut crate::train::optimizer::AdamW,
    ) -> Result<checkpoint::TrainState> {
        let file = self.weights_file(run);
        checkpoint::load_from(run, &file, &mut self.varmap, &mut [("", opt)])
    }
}

/// The base weights a new run keeps and its config, tokenizer and chat template: what makes
/// the run folder a model folder on its own. A LoRA run stores the (merged) base weights in
/// `model.safetensors` and trains `adapter.safetensors` beside them.
pub fn write_model_files(
    run: &RunDir,
    base: &Base,
    template: &ChatTemplate,
    policy: &Policy,
) -> Result<()> {
    crate::io::write_json_atomic(&run.config(), &base.cfg.to_hf_json())?;
    base.tokenizer.save(&run.tokenizer())?;
    if base.tokenizer_config != TokenizerConfig::default() {
        let path = run.root().join("tokenizer_config.json");
        crate::io::write_json_atomic(&path, &base.tokenizer_config.to_json())?;
    }
    template.save(run.root())?;
    if let Some((cfg, report)) = &policy.lora {
        checkpoint::write_safetensors(&run.weights(), &base.tensors, 0)?;
        let config = lora::AdapterConfig::new(cfg, report, &base.path.display().to_string());
        crate::io::write_json_atomic(&run.root().join(lora::ADAPTER_CONFIG_FILE), &config)?;
    }
    Ok(())
}

/// The chat template a run uses: `base` (the base folder's), `plain`, `chatml`, or a path to a
/// `chat_template.json`.
pub fn resolve_template(spec: &str, base: &Base) -> Result<ChatTemplate> {
    match spec {
        "base" | "" => Ok(base.template.clone()),
        "plain" => Ok(ChatTemplate::plain()),
        "chatml" => Ok(ChatTemplate::chatml()),
        path => {
            let p = Path::new(path);
            let file = if p.is_dir() {
                p.join(crate::tokenizer::chat::CHAT_TEMPLATE_FILE)
            } else {
                p.to_path_buf()
            };
            if !file.is_file() {
                return Err(Error::usage(format!(
                    "--template {path}: choose base, plain, chatml, or a chat_template.json file"
                )));
            }
            let t: ChatTemplate = crate::io::read_json(&file)?;
            t.validate()
                .map_err(|e| Error::usage(format!("{}: {e}", file.display())))?;
            Ok(t)
        }
    }
}

/// The tokenizer a GGUF file's metadata builds, and its special tokens, BOS rule and Jinja
/// chat template in `tokenizer_config.json` terms.
fn gguf_tokenizer(path: &Path) -> Result<(TextTokenizer, TokenizerConfig)> {
    let file = crate::models::gguf::GgufFile::open(path).map_err(Error::model_load)?;
    let (tokenizer, specials) = crate::tokenizer::gguf::from_gguf(&file.content)
        .map_err(|e| Error::input(format!("{} {e}", path.display())))?;
    let config = crate::tokenizer::gguf::tokenizer_config(&file.content, &tokenizer, &specials);
    Ok((tokenizer, config))
}
