//! Export to a Hugging Face model folder: `config.json`, `model.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json` (with the chat template in Jinja form),
//! `generation_config.json`, Muse's `chat_template.json` and a `README.md` model card.
//!
//! transformers' GPT-2 always has biases: a Muse GPT trained with `bias: false` gets zero
//! biases, which compute the same function. A tied output head is left out (transformers ties
//! it again from `tie_word_embeddings`). Exact-GELU runs say `activation_function: "gelu"`,
//! tanh-GELU runs `"gelu_new"`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::models::pretrained::{DTYPE, ModelConfig, load_tensors, without_backtrace};
use crate::tokenizer::TextTokenizer;
use crate::tokenizer::chat::ChatTemplate;
use crate::tokenizer::files;

/// What [`export_hf`] wrote.
#[derive(Clone, Debug)]
pub struct HfExport {
    pub out: PathBuf,
    /// `gpt2` or `llama`.
    pub model_type: &'static str,
    /// File names written into `out`.
    pub files: Vec<String>,
    /// Things the user should know (zero biases added, template used, ...).
    pub notes: Vec<String>,
}

/// Exports the model at `src` (a Muse run, an HF folder, or a llama2.c `.bin` with
/// `tokenizer`) to the Hugging Face folder `out`. `out` must be missing or empty unless
/// `overwrite`.
pub fn export_hf(
    src: &Path,
    tokenizer: Option<&Path>,
    out: &Path,
    overwrite: bool,
) -> Result<HfExport> {
    export_hf_with(src, tokenizer, out, overwrite, false)
}

/// [`export_hf`]; with `merge_lora`, a LoRA run's adapter (`adapter.safetensors`) is folded
/// into the exported weights (a run with an adapter needs it: the base alone is not the
/// fine-tuned model).
pub fn export_hf_with(
    src: &Path,
    tokenizer: Option<&Path>,
    out: &Path,
    overwrite: bool,
    merge_lora: bool,
) -> Result<HfExport> {
    if out.is_dir()
        && !overwrite
        && std::fs::read_dir(out)
            .map_err(Error::io(out))?
            .next()
            .is_some()
    {
        return Err(Error::usage(format!(
            "{} already exists and is not empty: choose another -o or pass --force",
            out.display()
        )));
    }
    if !src.exists() {
        return Err(Error::input(format!(
            "nothing at {}: pass a run folder (`muse train --out`), a Hugging Face model folder \
             or a llama2.c .bin checkpoint",
            src.display()
        )));
    }
    if src.is_file() && crate::models::gguf::is_gguf(src) {
        return Err(Error::input(format!(
            "{} is a GGUF file: Muse samples, chats with, evaluates, serves, fine-tunes and \
             aligns it as it is, and re-quantises it with --format gguf --quant, but does not \
             write it out as a Hugging Face folder",
            src.display()
        )));
    }
    let device = Device::Cpu;
    let (mut cfg, mut tensors) = load_tensors(src, &device).map_err(Error::model_load)?;
    let merged = merge_adapter(src, merge_lora, &mut tensors, &device)?;
    let tokenizer = match tokenizer {
        Some(path) => files::load_file(path)?,
        None if src.is_dir() => files::find_in_dir(src)?.ok_or_else(|| {
            Error::input(format!(
                "{} has no tokenizer.json (nor vocab.json + merges.txt); pass --tokenizer FILE",
                src.display()
            ))
        })?,
        None => {
            return Err(Error::usage(format!(
                "{} carries no tokenizer: pass --tokenizer (tokenizer.bin, tokenizer.model or \
                 tokenizer.json)",
                src.display()
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
    let mut notes: Vec<String> = merged.into_iter().collect();
    match &mut cfg {
        ModelConfig::Gpt(c) => {
            if !c.bias {
                add_zero_biases(c, &mut tensors)?;
                c.bias = true;
                notes.push(
                    "the model has no biases; zero biases were written (transformers' GPT-2 \
                     always has them)"
                        .to_string(),
                );
            }
            if c.tie_word_embeddings {
                tensors.remove("lm_head.weight");
            }
        }
        ModelConfig::Llama(c) => {
            if c.tie_word_embeddings {
                tensors.remove("lm_head.weight");
            }
        }
    }
    // The folder must load back: every tensor the config needs, with its shape.
    cfg.build(VarBuilder::from_tensors(tensors.clone(), DTYPE, &device))
        .map_err(|e| {
            let e = without_backtrace(e);
            Error::input(format!("the exported weights do not fit the config: {e}"))
        })?;

    std::fs::create_dir_all(out).map_err(Error::io(out))?;
    let mut written = Vec::new();
    let mut write_json = |name: &str, v: &Value| -> Result<()> {
        crate::io::write_json_atomic(&out.join(name), v)?;
        written.push(name.to_string());
        Ok(())
    };
    let specials = Specials::of(&tokenizer, &cfg);
    write_json("config.json", &config_json(&cfg, &specials))?;
    write_json(
        "generation_config.json",
        &json!({"bos_token_id": specials.bos_id, "eos_token_id": specials.eos_id,
                "_from_model_config": true}),
    )?;
    let (template, unknown) = if src.is_dir() {
        ChatTemplate::for_model_dir(src)?
    } else {
        (ChatTemplate::plain(), false)
    };
    if unknown {
        notes.push(format!(
            "the source's Jinja chat template is not one Muse understands; exported the {} \
             template instead",
            template.name
        ));
    }
    write_json(
        "tokenizer_config.json",
        &tokenizer_config(&specials, cfg.context_len(), &template),
    )?;
    template.save(out)?;
    written.push(crate::tokenizer::chat::CHAT_TEMPLATE_FILE.to_string());
    tokenizer.save(&out.join("tokenizer.json"))?;
    written.push("tokenizer.json".into());
    write_safetensors(&out.join("model.safetensors"), &tensors)?;
    written.push("model.safetensors".into());
    let card = model_card(src, &cfg);
    crate::io::write_atomic(&out.join("README.md"), card.as_bytes())?;
    written.push("README.md".into());
    Ok(HfExport {
        out: out.to_path_buf(),
        model_type: cfg.model_type(),
        files: written,
        notes,
    })
}

/// Folds the LoRA adapter of `src` into `tensors` when asked; refuses to export a run with an
/// adapter without it, or to merge what is not there. Returns a note for the user.
pub(super) fn merge_adapter(
    src: &Path,
    merge_lora: bool,
    tensors: &mut HashMap<String, Tensor>,
    device: &Device,
) -> Result<Option<String>> {
    use crate::nn::lora::Adapter;
    let has = Adapter::exists(src);
    match (has, merge_lora) {
        (false, false) => Ok(None),
        (false, true) => Err(Error::usage(format!(
            "--merge-lora: {} has no LoRA adapter (adapter_config.json + adapter.safetensors)",
            src.display()
        ))),
        (true, false) => Err(Error::usage(format!(
            "{} is a LoRA run: its model.safetensors is the frozen base and adapter.safetensors \
             the fine-tuning; pass --merge-lora to fold the adapter into the exported weights \
             (or load the base with PEFT and adapter_config.json)",
            src.display()
        ))),
        (true, true) => {
            let n = Adapter::load(src, device)
                .and_then(|a| a.merge_into(tensors))
                .map_err(|e| Error::input(without_backtrace(e).to_string()))?;
            Ok(Some(format!(
                "merged the LoRA adapter into the weights ({n} layers)"
            )))
        }
    }
}

/// Zero biases for every LayerNorm and linear layer of a bias-free GPT.
fn add_zero_biases(
    c: &crate::models::gpt::GptConfig,
    tensors: &mut HashMap<String, Tensor>,
) -> Result<()> {
    let e = c.n_embd;
    let mut zero = |name: String, n: usize| -> Result<()> {
        tensors
            .entry(name)
            .or_insert(Tensor::zeros(n, DTYPE, &Device::Cpu)?);
        Ok(())
    };
    for i in 0..c.n_layer {
        let h = format!("transformer.h.{i}");
        for (name, n) in [
            ("ln_1", e),
            ("ln_2", e),
            ("attn.c_attn", 3 * e),
            ("attn.c_proj", e),
            ("mlp.c_fc", 4 * e),
            ("mlp.c_proj", e),
        ] {
            zero(format!("{h}.{name}.bias"), n)?;
        }
    }
    zero("transformer.ln_f.bias".into(), e)
}

/// Special tokens as ids and strings.
struct Specials {
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    bos: Option<String>,
    eos: Option<String>,
    unk: Option<String>,
}

impl Specials {
    fn of(tok: &TextTokenizer, cfg: &ModelConfig) -> Self {
        let eos_id = match cfg {
            ModelConfig::Llama(c) => c.eos_token_id.or(tok.eos_id()),
            ModelConfig::Gpt(_) => tok.eos_id(),
        };
        let bos_id = match cfg {
            ModelConfig::Llama(c) => c.bos_token_id,
            // GPT-2 uses <|endoftext|> for both.
            ModelConfig::Gpt(_) => eos_id,
        };
        let name = |id: Option<u32>| id.and_then(|i| tok.inner().id_to_token(i));
        let unk = tok
            .inner()
            .token_to_id("<unk>")
            .map(|_| "<unk>".to_string());
        Self {
            bos_id,
            eos_id,
            bos: name(bos_id),
            eos: name(eos_id),
            unk,
        }
    }
}

fn config_json(cfg: &ModelConfig, s: &Specials) -> Value {
    let mut v = cfg.to_hf_json();
    let o = v.as_object_mut().expect("configs are objects");
    // Muse's own key; exported GPTs always have biases, the HF default.
    o.remove("bias");
    o.insert("bos_token_id".into(), json!(s.bos_id));
    o.insert("eos_token_id".into(), json!(s.eos_id));
    o.insert("torch_dtype".into(), json!("float32"));
    o.insert("dtype".into(), json!("float32"));
    v
}

fn tokenizer_config(s: &Specials, context: usize, template: &ChatTemplate) -> Value {
    let mut v = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context,
        "clean_up_tokenization_spaces": false,
        "chat_template": template.to_jinja(),
    });
    let o = v.as_object_mut().expect("object");
    for (key, val) in [
        ("bos_token", &s.bos),
        ("eos_token", &s.eos),
        ("unk_token", &s.unk),
    ] {
        if let Some(t) = val {
            o.insert(key.into(), json!(t));
        }
    }
    v
}

/// Weights as safetensors with the `format: pt` metadata transformers expects, atomically.
fn write_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let host: Vec<(String, Tensor)> = sorted
        .into_iter()
        .map(|(k, t)| Ok((k.clone(), t.contiguous()?)))
        .collect::<Result<_>>()?;
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let bytes =
        safetensors::tensor::serialize(host.iter().map(|(k, t)| (k.as_str(), t)), Some(metadata))
            .map_err(|e| Error::input(format!("cannot serialise {}: {e}", path.display())))?;
    crate::io::write_atomic(path, &bytes)
}

/// README.md: the source's model card when it has one, plus how the folder was made.
fn model_card(src: &Path, cfg: &ModelConfig) -> String {
    let own = std::fs::read_to_string(src.join("MODEL_CARD.md")).unwrap_or_default();
    let mut card = if own.is_empty() {
        format!(
            "# {}\n\nA {} language model exported by Muse.\n",
            src.file_name()
                .map_or("model".into(), |n| n.to_string_lossy().into_owned()),
            cfg.model_type()
        )
    } else {
        own
    };
    card.push_str(&format!(
        "\n## Export\n\nExported by Muse {} (`muse export --format hf`) from `{}`. Loads with \
         `transformers.AutoModelForCausalLM.from_pretrained` and `AutoTokenizer`.\n\nText this \
         model generates is AI-generated ({}).\n",
        env!("CARGO_PKG_VERSION"),
        src.display(),
        crate::AI_GENERATED_NOTICE
    ));
    card
}
