//! What a GPT run reports: loss estimates, the loss plot, samples and the model card.

use candle_core::{DType, Device};

use super::{GptTrainJob, TextSplits};
use crate::data::windows::{random_windows, step_rng};
use crate::error::Result;
use crate::models::gpt::{Gpt, GptConfig, parameter_count};
use crate::nn::Dropout;
use crate::run_dir::RunDir;
use crate::train::card::{ModelCard, Outputs};
use crate::train::checkpoint::TrainState;
use crate::train::config::TrainConfig;
use crate::train::metrics::{read_metrics, series};
use crate::train::plot::{Series, line_chart};

/// Random streams for evaluation batches, apart from the training micro-batches.
const EVAL_STREAM: u64 = 1 << 32;

/// Mean loss over `eval_iters` random batches of each split: (train, val). `model` must hold
/// detached weights so no graph is recorded.
pub fn estimate(
    model: &Gpt,
    splits: &TextSplits,
    t: &TrainConfig,
    block: usize,
    step: u64,
    device: &Device,
) -> Result<(f64, f64)> {
    let mut out = [0.0; 2];
    for (i, ids) in [&splits.train, &splits.val].into_iter().enumerate() {
        let mut rng = step_rng(t.seed, step, EVAL_STREAM + i as u64);
        let mut sum = 0.0;
        for _ in 0..t.eval_iters {
            let b = random_windows(ids, block, t.batch_size, &mut rng, device)?;
            let loss = model.loss(&b.inputs, &b.targets, &mut Dropout::eval())?;
            sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
        out[i] = sum / t.eval_iters as f64;
    }
    Ok((out[0], out[1]))
}

/// Redraws `loss.svg` from `metrics.jsonl`.
pub fn plot_losses(run: &RunDir) -> Result<()> {
    let records = read_metrics(&run.metrics())?;
    line_chart(
        &run.loss_plot(),
        "GPT training loss (nats per token)",
        "step",
        "loss",
        &[
            Series {
                name: "train (batch)",
                points: series(&records, "loss"),
            },
            Series {
                name: "train (estimate)",
                points: series(&records, "train_loss"),
            },
            Series {
                name: "validation",
                points: series(&records, "val_loss"),
            },
        ],
    )
}

/// Saves a sample as `samples/step_NNNNNN.txt`, labelled as AI-generated.
pub fn write_sample(run: &RunDir, text: String, step: u64) -> Result<()> {
    let path = run.samples().join(format!("step_{step:06}.txt"));
    let body = format!(
        "[{} at training step {step}]\n{text}\n",
        crate::AI_GENERATED_NOTICE
    );
    crate::io::write_atomic(&path, body.as_bytes())
}

/// Writes `MODEL_CARD.md`: what the model is, its data, configuration, metrics and limits.
pub fn write_model_card(
    run: &RunDir,
    job: &GptTrainJob,
    cfg: &GptConfig,
    splits: &TextSplits,
    state: &TrainState,
    train_loss: f64,
    val_loss: f64,
) -> Result<()> {
    let model = format!(
        "- {params} parameters: {n_layer} layers, {n_head} heads, width {n_embd}, context {ctx} \
         tokens\n\
         - tokenizer: `{tok}` ({vocab} tokens), saved as `tokenizer.json`\n\
         - weights: `model.safetensors` (Hugging Face GPT-2 tensor names), config: `config.json`",
        params = parameter_count(cfg),
        n_layer = cfg.n_layer,
        n_head = cfg.n_head,
        n_embd = cfg.n_embd,
        ctx = cfg.n_positions,
        tok = job.config.data.tokenizer,
        vocab = splits.tokenizer.vocab_size(),
    );
    let detail = format!(
        "split by characters: last {:.0}% for validation; {} training and {} validation tokens",
        job.config.data.val_fraction * 100.0,
        splits.train.len(),
        splits.val.len()
    );
    let metrics = format!(
        "Random-window estimates at the end of training:\n\n\
         | split | loss (nats/token) | perplexity |\n|---|---|---|\n\
         | train | {train_loss:.4} | {:.2} |\n| validation | {val_loss:.4} | {:.2} |\n\n\
         `muse eval {dir}` measures the whole validation split; `muse audit {dir}` measures how \
         much of its output the model copies from the training text.",
        train_loss.exp(),
        val_loss.exp(),
        dir = run.root().display(),
    );
    ModelCard::new(
        run,
        format!(
            "A GPT-style decoder-only transformer language model trained with Muse (preset \
             `{}`). It imitates the style of its training text, knows nothing beyond it, and \
             states no facts.",
            job.preset
        ),
        Outputs::Text,
        &job.preset,
    )
    .section("Model", model)
    .data(&splits.dataset, &detail)
    .config(&job.config)
    .section(
        "Training",
        format!(
            "- {} steps, {} tokens seen, {:.0} s of training, seed {}",
            state.step, state.examples_seen, state.train_seconds, job.config.train.seed
        ),
    )
    .section("Metrics", metrics)
    .limits(
        "A small model trained on one corpus: it produces plausible-looking but often \
         meaningless text, repeats itself, can repeat passages of its training text, and \
         reproduces the biases of its data. Do not use its output as fact or present it as \
         human-written.",
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
