//! What a translation run reports: the validation loss, sample translations, the loss plot
//! and the model card.

use candle_core::{DType, Device};

use super::data::PairData;
use super::{Seq2SeqRunConfig, Seq2SeqTrainJob};
use crate::data::parallel::batch::{make_batch, sequential_batches};
use crate::error::Result;
use crate::models::seq2seq::{Seq2Seq, Seq2SeqConfig, parameter_count};
use crate::nn::Dropout;
use crate::run_dir::RunDir;
use crate::sample::translate::{TranslateOptions, translate_texts};
use crate::train::card::{ModelCard, Outputs};
use crate::train::checkpoint::TrainState;
use crate::train::config::TrainConfig;
use crate::train::metrics::{read_metrics, series};
use crate::train::plot::{Series, line_chart};

/// Validation sentences translated in each sample.
const SAMPLE_SENTENCES: usize = 4;

/// Cross-entropy per target token (no label smoothing) over the first `eval_iters` batches of
/// the validation pairs, sorted by length. `model` must hold detached weights.
pub fn valid_loss(
    model: &Seq2Seq,
    data: &PairData,
    t: &TrainConfig,
    device: &Device,
) -> Result<f64> {
    let mut idx: Vec<usize> = (0..data.valid.len()).collect();
    idx.sort_by_key(|&i| data.valid[i].len());
    let (mut sum, mut tokens) = (0.0, 0usize);
    for b in sequential_batches(&idx, t.batch_size)
        .iter()
        .take(t.eval_iters)
    {
        let batch = make_batch(&data.valid, b, data.specials, device)?;
        let loss = model.loss(
            &batch.src,
            &batch.tgt_in,
            &batch.tgt_out,
            0.0,
            &mut Dropout::eval(),
        )?;
        sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * batch.target_tokens as f64;
        tokens += batch.target_tokens;
    }
    Ok(sum / tokens.max(1) as f64)
}

/// Greedy translations of the first validation sentences, with their references.
pub fn translate_samples(model: &Seq2Seq, data: &PairData) -> Result<String> {
    let pairs: Vec<_> = data.valid_text.iter().take(SAMPLE_SENTENCES).collect();
    let sources: Vec<String> = pairs.iter().map(|p| p.source.clone()).collect();
    let hyps = translate_texts(
        model,
        &data.tokenizer,
        &sources,
        &TranslateOptions::default(),
        &mut |_| {},
    )?;
    let mut out = String::new();
    for (p, h) in pairs.iter().zip(hyps) {
        out.push_str(&format!(
            "{}\n  -> {h}\n  (reference: {})\n",
            p.source, p.target
        ));
    }
    Ok(out)
}

/// Saves a sample as `samples/step_NNNNNN.txt`, labelled as AI-generated.
pub fn write_sample(run: &RunDir, text: &str, step: u64) -> Result<()> {
    let path = run.samples().join(format!("step_{step:06}.txt"));
    let body = format!(
        "[{} at training step {step}]\n{text}",
        crate::AI_GENERATED_NOTICE
    );
    crate::io::write_atomic(&path, body.as_bytes())
}

/// Redraws `loss.svg` from `metrics.jsonl`.
pub fn plot_losses(run: &RunDir) -> Result<()> {
    let records = read_metrics(&run.metrics())?;
    line_chart(
        &run.loss_plot(),
        "Translation loss (nats per target token)",
        "step",
        "loss",
        &[
            Series {
                name: "train (batch, label-smoothed)",
                points: series(&records, "loss"),
            },
            Series {
                name: "validation (cross-entropy)",
                points: series(&records, "val_loss"),
            },
        ],
    )
}

/// Writes `MODEL_CARD.md`.
pub fn write_model_card(
    run: &RunDir,
    job: &Seq2SeqTrainJob,
    cfg: &Seq2SeqConfig,
    data: &PairData,
    state: &TrainState,
    val_loss: f64,
) -> Result<()> {
    let c: &Seq2SeqRunConfig = &job.config;
    let model = format!(
        "- {params} parameters: encoder-decoder transformer (Vaswani et al. 2017, pre-LayerNorm), \
         {enc} + {dec} layers, {heads} heads, width {d}, feed-forward {ffn}, up to {len} tokens a \
         sentence\n\
         - one joint byte-level BPE of {vocab} tokens for both languages (`tokenizer.json`), its \
         embedding shared by encoder, decoder and output\n\
         - weights: `model.safetensors`, config: `config.json`",
        params = parameter_count(cfg),
        enc = cfg.encoder_layers,
        dec = cfg.decoder_layers,
        heads = cfg.attention_heads,
        d = cfg.d_model,
        ffn = cfg.ffn_dim,
        len = cfg.max_position_embeddings,
        vocab = cfg.vocab_size,
    );
    let detail = format!(
        "fixed split (seed {}): {} training pairs ({} longer ones left out), {} validation{}",
        c.data.split_seed,
        data.train.len(),
        data.dropped,
        data.valid.len(),
        if c.data.reverse {
            "; sides reversed (--reverse)"
        } else {
            ""
        }
    );
    let dir = run.root().display();
    let metrics = format!(
        "Validation cross-entropy at the end of training: {val_loss:.4} nats per target token \
         (perplexity {:.2}).\n\n`muse eval {dir}` translates the test split and prints BLEU and \
         chrF.",
        val_loss.exp()
    );
    ModelCard::new(
        run,
        format!(
            "An encoder-decoder transformer translation model trained with Muse (preset `{}`). \
             It translates short, everyday sentences like those of its training data.",
            job.preset
        ),
        Outputs::Text,
        &job.preset,
    )
    .section("Model", model)
    .data(&data.dataset, &detail)
    .config(c)
    .section(
        "Training",
        format!(
            "- {} steps, {} pairs seen, {:.0} s of training, seed {}",
            state.step, state.examples_seen, state.train_seconds, c.train.seed
        ),
    )
    .section("Metrics", metrics)
    .limits(
        "A small model trained on short Tatoeba-style sentences: long, technical or unusual \
         input is translated badly, names and numbers can be dropped or changed, and it \
         reproduces the biases of its data. Check every translation before you rely on it and \
         do not present it as human-written.",
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
