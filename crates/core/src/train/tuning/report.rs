//! What a fine-tuning run reports: held-out loss, replies to held-out prompts, the loss plot
//! and the model card.

use candle_core::{DType, Device};

use super::batch::pad_batch;
use crate::data::instructions::TokenizedExample;
use crate::error::Result;
use crate::models::pretrained::TextLm;
use crate::nn::Dropout;
use crate::run_dir::RunDir;
use crate::tokenizer::TextTokenizer;
use crate::train::card::{ModelCard, Outputs, licence_of};
use crate::train::metrics::{read_metrics, series};
use crate::train::plot::{Series, line_chart};

/// Mean loss per response token over `examples` (every trainable token weighs the same), in
/// batches of `batch_size`, at most `max_batches` of them. `model` must not record a graph.
pub fn response_loss(
    model: &TextLm,
    examples: &[TokenizedExample],
    batch_size: usize,
    max_batches: usize,
    pad: u32,
    device: &Device,
) -> Result<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    for chunk in examples.chunks(batch_size.max(1)).take(max_batches.max(1)) {
        let refs: Vec<&TokenizedExample> = chunk.iter().collect();
        let b = pad_batch(&refs, pad, device)?;
        if b.n_targets == 0 {
            continue;
        }
        let loss = model.loss(&b.inputs, &b.targets, &mut Dropout::eval())?;
        sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * b.n_targets as f64;
        count += b.n_targets;
    }
    Ok(if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    })
}

/// Redraws `loss.svg` from `metrics.jsonl`: one line per `(label, metrics key)`.
pub fn plot(run: &RunDir, title: &str, y_label: &str, keys: &[(&str, &str)]) -> Result<()> {
    let records = read_metrics(&run.metrics())?;
    let series: Vec<Series> = keys
        .iter()
        .map(|(name, key)| Series {
            name,
            points: series(&records, key),
        })
        .collect();
    line_chart(&run.loss_plot(), title, "step", y_label, &series)
}

/// How many held-out prompts the loops answer when they write samples.
const SAMPLE_PROMPTS: usize = 3;

/// `model`'s replies to the first few `prompts` (text it continues, after `bos` when its
/// tokenizer adds one, as in training), sampled with seed `seed ^ i` for prompt `i` (see
/// [`reply`]).
pub fn replies(
    model: &TextLm,
    tokenizer: &TextTokenizer,
    bos: Option<u32>,
    prompts: impl IntoIterator<Item = String>,
    stop: &[String],
    seed: u64,
) -> Result<Vec<(String, String)>> {
    prompts
        .into_iter()
        .take(SAMPLE_PROMPTS)
        .enumerate()
        .map(|(i, prompt)| {
            let ids: Vec<u32> = bos.into_iter().chain(tokenizer.encode(&prompt)?).collect();
            let reply = reply(model, tokenizer, &ids, stop, seed ^ i as u64)?;
            Ok((prompt, reply))
        })
        .collect()
}

/// One reply as the loops write them: up to 64 tokens at temperature 0.7, top-k 50, stopping
/// at the template's stop strings or end-of-text.
fn reply(
    model: &TextLm,
    tokenizer: &TextTokenizer,
    ids: &[u32],
    stop: &[String],
    seed: u64,
) -> Result<String> {
    use crate::sample::{GenerateOptions, Sampler, SamplingParams, generate};
    let params = SamplingParams {
        temperature: 0.7,
        top_k: 50,
        ..Default::default()
    };
    let opts = GenerateOptions {
        max_tokens: 64,
        stop: stop.to_vec(),
        stop_at_eos: true,
        candidates: 0,
    };
    let mut sampler = Sampler::new(params, seed);
    let g = generate(model, tokenizer, ids, &opts, &mut sampler, &mut |_| Ok(()))?;
    Ok(g.text.trim().to_string())
}

/// Saves replies to held-out prompts as `samples/step_NNNNNN.txt`, labelled AI-generated.
pub fn write_samples(run: &RunDir, step: u64, replies: &[(String, String)]) -> Result<()> {
    let mut body = format!("[{} at training step {step}]\n", crate::AI_GENERATED_NOTICE);
    for (prompt, reply) in replies {
        body.push_str(&format!(
            "\n### prompt\n{prompt}\n### reply (AI-generated)\n{reply}\n"
        ));
    }
    let path = run.samples().join(format!("step_{step:06}.txt"));
    crate::io::write_atomic(&path, body.as_bytes())
}

/// The parts of a model card that differ between fine-tuning methods.
pub struct Card<'a> {
    /// One paragraph: what was done.
    pub what: String,
    pub base: &'a str,
    pub family: &'a str,
    pub params: usize,
    pub trainable: usize,
    /// `- ...` lines about the data.
    pub data: Vec<String>,
    /// `- ...` lines about training.
    pub training: Vec<String>,
    /// Markdown table rows `| metric | before | after |`.
    pub metrics: Vec<String>,
    pub lora: bool,
    /// The name of the fine-tuning data, for its licence.
    pub dataset: String,
    /// `sft` or `dpo`, and the resolved configuration.
    pub method: &'a str,
    pub config: serde_json::Value,
}

/// Writes `MODEL_CARD.md`.
pub fn write_card(run: &RunDir, card: &Card) -> Result<()> {
    let weights = if card.lora {
        "`model.safetensors` holds the frozen base weights, `adapter.safetensors` + \
         `adapter_config.json` the LoRA adapter (PEFT names; `muse sample` applies it, \
         `muse export --merge-lora` folds it in)"
    } else {
        "`model.safetensors` (Hugging Face tensor names), config: `config.json`"
    };
    let model = format!(
        "- base: `{}` ({}, {} parameters)\n\
         - trained parameters: {} ({:.2}% of the model)\n\
         - weights: {weights}\n\
         - chat template: `chat_template.json` (`muse chat {}`)",
        card.base,
        card.family,
        card.params,
        card.trainable,
        100.0 * card.trainable as f64 / card.params.max(1) as f64,
        run.root().display(),
    );
    let mut mc = ModelCard::new(
        run,
        format!(
            "{} It follows the style of its training data, knows nothing beyond it, and states \
             no facts.",
            card.what
        ),
        Outputs::Text,
        card.method,
    )
    .section("Model", model);
    for line in &card.data {
        mc = mc.data_line(line.clone());
    }
    mc.data_line(format!("- licence: {}", licence_of(&card.dataset)))
        .data_line(format!(
            "- the base model's own data and licence: see `{}` (its MODEL_CARD.md or model page)",
            card.base
        ))
        .config(&card.config)
        .section("Training", card.training.join("\n"))
        .section(
            "Metrics",
            format!(
                "Held-out split:\n\n| metric | start | end |\n|---|---|---|\n{}",
                card.metrics.join("\n")
            ),
        )
        .limits(
            "A small model fine-tuned on a small dataset: its replies imitate the form of the \
             training data and are often wrong or meaningless, and it reproduces the biases of \
             its data. Do not use its output as fact or present it as human-written.",
        )
        .write(run)
}

/// 18734.2 -> "18.7k".
pub fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
