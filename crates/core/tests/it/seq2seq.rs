//! The encoder-decoder transformer: forward, loss and gradients against PyTorch's
//! `nn.Transformer` (fixture from `scripts/fixtures/seq2seq_golden.py`), cached decoding equal
//! to full recomputation, overfitting a handful of pairs, and greedy / beam search.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use muse_core::models::seq2seq::{Seq2Seq, Seq2SeqConfig, seq2seq_init};
use muse_core::nn::{Dropout, init_varmap};
use muse_core::sample::beam::{SearchOptions, StepDecoder, beam_search, greedy, search};
use muse_core::sample::translate::{ModelDecoder, TranslateOptions, pad_batch, translate_batch};
use muse_core::train::{AdamW, TrainConfig};

use crate::common::fixture;

fn max_err(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

fn as_refs(v: &[Vec<u32>]) -> Vec<&[u32]> {
    v.iter().map(|r| r.as_slice()).collect()
}

fn ids(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

#[test]
fn forward_loss_and_gradients_match_pytorch_nn_transformer() {
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture("seq2seq_golden.safetensors"), &Device::Cpu)
            .unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("seq2seq_golden.json")).unwrap())
            .unwrap();
    let cfg: Seq2SeqConfig = serde_json::from_value(meta["config"].clone()).unwrap();
    let varmap = VarMap::new();
    let model = Seq2Seq::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let vars = varmap.data().lock().unwrap().clone();
    for (name, var) in &vars {
        var.set(&tensors[&format!("init.{name}")]).unwrap();
    }
    let n_init = tensors.keys().filter(|k| k.starts_with("init.")).count();
    assert_eq!(
        vars.len(),
        n_init,
        "every PyTorch parameter has a Muse variable"
    );

    let (src, tin, tout) = (
        ids(&tensors["src"]),
        ids(&tensors["tgt_in"]),
        ids(&tensors["tgt_out"]),
    );
    let logits = model.forward(&src, &tin, &mut Dropout::eval()).unwrap();
    let err = max_err(&logits, &tensors["logits"]);
    assert!(err < 1e-4, "logits differ by {err}");
    let plain = model
        .loss(&src, &tin, &tout, 0.0, &mut Dropout::eval())
        .unwrap();
    let expect = meta["loss_no_smoothing"].as_f64().unwrap();
    assert!((plain.to_scalar::<f32>().unwrap() as f64 - expect).abs() < 1e-4);
    let loss = model
        .loss(&src, &tin, &tout, 0.1, &mut Dropout::eval())
        .unwrap();
    let expect = meta["loss"].as_f64().unwrap();
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    assert!(
        (got - expect).abs() < 1e-4,
        "loss {got} vs PyTorch {expect}"
    );

    let grads = loss.backward().unwrap();
    for (name, var) in &vars {
        let g = grads.get(var.as_tensor()).unwrap();
        let err = max_err(g, &tensors[&format!("grad.{name}")]);
        assert!(err < 1e-4, "gradient of {name} differs by {err}");
    }
}

fn tiny_config() -> Seq2SeqConfig {
    Seq2SeqConfig {
        vocab_size: 13,
        d_model: 32,
        attention_heads: 4,
        encoder_layers: 2,
        decoder_layers: 2,
        ffn_dim: 64,
        max_position_embeddings: 16,
        dropout: 0.0,
        ..Seq2SeqConfig::tatoeba_en_fr()
    }
}

fn fresh(cfg: &Seq2SeqConfig, seed: u64) -> (Seq2Seq, VarMap) {
    let varmap = VarMap::new();
    let model = Seq2Seq::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_varmap(&varmap, seed, seq2seq_init(cfg)).unwrap();
    (model, varmap)
}

#[test]
fn cached_decoding_equals_full_recompute_with_padded_sources() {
    let cfg = tiny_config();
    let (model, _vm) = fresh(&cfg, 5);
    let dev = Device::Cpu;
    // Two sources of different lengths: the second is padded.
    let src = Tensor::new(&[[3u32, 4, 5, 6, 2], [7, 8, 2, 0, 0]], &dev).unwrap();
    let tgt = Tensor::new(&[[1u32, 9, 10, 3, 11, 4], [1, 4, 5, 12, 6, 7]], &dev).unwrap();
    let full = model.forward(&src, &tgt, &mut Dropout::eval()).unwrap(); // (2 * 6, V)
    let full = full.reshape((2, 6, cfg.vocab_size)).unwrap();
    let memory = model.encode(&src).unwrap();
    let mut cache = model.new_cache(2, 16).unwrap();
    // A prompt of two positions at once, then one at a time.
    let first = model
        .decode_step(&tgt.narrow(1, 0, 2).unwrap(), &memory, &mut cache)
        .unwrap();
    let err = max_err(&first, &full.narrow(1, 1, 1).unwrap().squeeze(1).unwrap());
    assert!(err < 1e-5, "prompt step differs by {err}");
    for t in 2..6 {
        let step = model
            .decode_step(&tgt.narrow(1, t, 1).unwrap(), &memory, &mut cache)
            .unwrap();
        let err = max_err(&step, &full.narrow(1, t, 1).unwrap().squeeze(1).unwrap());
        assert!(err < 1e-5, "position {t} differs by {err}");
    }
    // The cross-attention of the padded source: rows sum to 1, padding gets nothing.
    let mut cache = model.new_cache(2, 4).unwrap();
    let (_, att) = model
        .decode_step_attention(&tgt.narrow(1, 0, 1).unwrap(), &memory, &mut cache)
        .unwrap();
    let att = att.to_vec2::<f32>().unwrap();
    assert!(
        att.iter()
            .all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-5)
    );
    assert!(att[1][3] < 1e-6 && att[1][4] < 1e-6, "{att:?}");
    // Padding of a source changes nothing: the short source alone gives the same logits.
    let alone = model
        .forward(
            &Tensor::new(&[[7u32, 8, 2]], &dev).unwrap(),
            &tgt.narrow(0, 1, 1).unwrap(),
            &mut Dropout::eval(),
        )
        .unwrap();
    let err = max_err(&alone, &full.narrow(0, 1, 1).unwrap().squeeze(0).unwrap());
    assert!(err < 1e-5, "padding leaks into the output by {err}");
}

/// Pairs of a toy "translation": reverse the tokens and shift each by one.
fn toy_pairs() -> Vec<(Vec<u32>, Vec<u32>)> {
    let sources: [&[u32]; 6] = [
        &[3, 4, 5],
        &[6, 7],
        &[8, 3, 9, 4],
        &[10, 5],
        &[4, 4, 7, 11],
        &[9],
    ];
    sources
        .iter()
        .map(|s| (s.to_vec(), s.iter().rev().map(|t| t + 1).collect()))
        .collect()
}

#[test]
fn a_tiny_model_overfits_a_handful_of_pairs_and_greedy_reproduces_them() {
    let cfg = tiny_config();
    let (model, varmap) = fresh(&cfg, 11);
    let dev = Device::Cpu;
    let pairs = toy_pairs();
    let srcs: Vec<Vec<u32>> = pairs
        .iter()
        .map(|(s, _)| [s.as_slice(), &[2]].concat())
        .collect();
    let tin: Vec<Vec<u32>> = pairs
        .iter()
        .map(|(_, t)| [&[1], t.as_slice()].concat())
        .collect();
    let tout: Vec<Vec<u32>> = pairs
        .iter()
        .map(|(_, t)| [t.as_slice(), &[2]].concat())
        .collect();
    let src = pad_batch(&as_refs(&srcs), 0, &dev).unwrap();
    let tgt_in = pad_batch(&as_refs(&tin), 0, &dev).unwrap();
    let tgt_out = pad_batch(&as_refs(&tout), 0, &dev).unwrap();
    let train = TrainConfig {
        lr: 3e-3,
        weight_decay: 0.0,
        ..TrainConfig::char_baby()
    };
    let mut opt = AdamW::new(&varmap, &train).unwrap();
    let mut last = f32::MAX;
    for _ in 0..150 {
        let loss = model
            .loss(&src, &tgt_in, &tgt_out, 0.0, &mut Dropout::eval())
            .unwrap();
        let grads = opt.grads(&loss.backward().unwrap());
        opt.step(&grads, train.lr).unwrap();
        last = loss.to_scalar::<f32>().unwrap();
    }
    assert!(last < 0.05, "loss after 150 steps: {last}");
    let outs = translate_batch(&model, &as_refs(&srcs), &TranslateOptions::default()).unwrap();
    let expect: Vec<Vec<u32>> = pairs.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(outs, expect);
    let beam = TranslateOptions {
        beam: 3,
        ..Default::default()
    };
    assert_eq!(
        translate_batch(&model, &as_refs(&srcs), &beam).unwrap(),
        expect
    );
}

#[test]
fn beam_of_one_equals_greedy_on_a_random_model() {
    let cfg = tiny_config();
    let (model, _vm) = fresh(&cfg, 23);
    let dev = Device::Cpu;
    let sources: Vec<&[u32]> = vec![&[3, 4, 5, 2], &[6, 2], &[8, 3, 9, 4, 10, 2], &[11, 2]];
    let src = pad_batch(&sources, 0, &dev).unwrap();
    let opts = SearchOptions {
        beam: 1,
        length_penalty: 0.6,
        max_len: 12,
        bos: 1,
        eos: 2,
    };
    let g = greedy(&mut ModelDecoder::new(&model, &src, 12).unwrap(), 4, &opts).unwrap();
    let b = beam_search(&mut ModelDecoder::new(&model, &src, 12).unwrap(), 4, &opts).unwrap();
    assert_eq!(g, b);
    // A random model rarely stops: the outputs run to the length limit.
    assert!(g.iter().all(|o| o.len() <= 12));
    // Beam search batched over sentences equals each sentence searched alone.
    let wide = SearchOptions { beam: 3, ..opts };
    let all = beam_search(&mut ModelDecoder::new(&model, &src, 12).unwrap(), 4, &wide).unwrap();
    for (i, s) in sources.iter().enumerate() {
        let one = pad_batch(&[s], 0, &dev).unwrap();
        let alone =
            beam_search(&mut ModelDecoder::new(&model, &one, 12).unwrap(), 1, &wide).unwrap();
        assert_eq!(alone[0], all[i], "sentence {i}");
    }
}

/// A scorer whose next-token distribution depends only on the prefix: token 3 is the greedy
/// first choice (0.6) but every continuation after it is poor, while 4 (0.4) is followed by EOS
/// with probability 0.9. Vocabulary: 0 pad, 1 bos, 2 eos, 3..=5 words.
struct Toy {
    prefixes: Vec<Vec<u32>>,
}

impl Toy {
    fn probs(prefix: &[u32]) -> [f32; 6] {
        match prefix {
            [] => [0.0, 0.0, 0.0, 0.6, 0.4, 0.0],
            [3] => [0.0, 0.0, 0.3, 0.35, 0.0, 0.35],
            [4] => [0.0, 0.0, 0.9, 0.05, 0.05, 0.0],
            _ => [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
        }
    }
}

impl StepDecoder for Toy {
    fn step(&mut self, tokens: &[u32]) -> muse_core::Result<Vec<f32>> {
        let mut out = Vec::new();
        for (p, &t) in self.prefixes.iter_mut().zip(tokens) {
            if t != 1 {
                p.push(t);
            }
            out.extend(Self::probs(p).iter().map(|x| x.ln()));
        }
        Ok(out)
    }

    fn keep_rows(&mut self, rows: &[usize]) -> muse_core::Result<()> {
        self.prefixes = rows.iter().map(|&r| self.prefixes[r].clone()).collect();
        Ok(())
    }
}

#[test]
fn beam_finds_the_most_likely_sequence_where_greedy_does_not() {
    let opts = SearchOptions {
        beam: 2,
        length_penalty: 0.0,
        max_len: 5,
        bos: 1,
        eos: 2,
    };
    let toy = || Toy {
        prefixes: vec![Vec::new()],
    };
    // Greedy: 3 (0.6), then 3 (0.35, first of the tie), then EOS: p = 0.21.
    let g = search(&mut toy(), 1, &SearchOptions { beam: 1, ..opts }).unwrap();
    assert_eq!(g, [vec![3, 3]]);
    // Beam: 4 then EOS, p = 0.36, the most likely output.
    let b = search(&mut toy(), 1, &opts).unwrap();
    assert_eq!(b, [vec![4]]);
    // Beam 0 is a usage error, not a panic.
    assert!(search(&mut toy(), 1, &SearchOptions { beam: 0, ..opts }).is_err());
    // The GNMT length penalty is 1 at length 1 and grows with length.
    let lp = muse_core::sample::beam::length_penalty;
    assert!((lp(1, 0.6) - 1.0).abs() < 1e-12 && lp(10, 0.6) > lp(5, 0.6));
}

#[test]
fn the_preset_file_in_configs_matches_the_preset() {
    use muse_core::train::seq2seq::Seq2SeqRunConfig;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/seq2seq-tatoeba-en-fr.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from_file: Seq2SeqRunConfig = toml::from_str(&text).unwrap();
    assert_eq!(
        from_file,
        Seq2SeqRunConfig::tatoeba_en_fr(),
        "{} is stale: regenerate it with --print-config",
        path.display()
    );
}

#[test]
fn the_inverse_square_root_schedule_peaks_at_the_end_of_warm_up() {
    use muse_core::train::{LrSchedule, ScheduleKind};
    let s = LrSchedule {
        lr: 1e-3,
        min_lr: 0.0,
        warmup_iters: 100,
        decay_iters: 0,
        kind: ScheduleKind::InverseSqrt,
    };
    assert!((s.at(0) - 1e-5).abs() < 1e-12);
    assert!((s.at(99) - 1e-3).abs() < 1e-12);
    assert!((s.at(399) - 5e-4).abs() < 1e-12, "lr * sqrt(100 / 400)");
    assert!(s.at(150) < s.at(99));
}

/// GPT beam search: beam 1 is greedy decoding, and here a wider beam finds a continuation at
/// least as likely as greedy's (not a theorem: beam search can prune the greedy path, but not
/// on this fixed model).
#[test]
fn gpt_beam_of_one_is_greedy_and_a_wider_beam_does_no_worse_here() {
    use muse_core::models::CausalLm;
    use muse_core::models::gpt::{Gpt, GptConfig};
    use muse_core::sample::beam::length_penalty;
    use muse_core::sample::beam_lm::beam_continue;
    let cfg = GptConfig {
        vocab_size: 17,
        n_positions: 24,
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        ..GptConfig::char_baby()
    };
    let varmap = VarMap::new();
    let model = Gpt::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_varmap(&varmap, 9, |_, dims| {
        if dims.len() < 2 {
            muse_core::nn::Init::Const(1.0)
        } else {
            muse_core::nn::Init::Normal(0.5)
        }
    })
    .unwrap();
    let prompt = [3u32, 7, 1];
    // Greedy by hand: argmax after the prompt, one token at a time.
    let mut cache = model.new_cache(1).unwrap();
    let mut ids = prompt.to_vec();
    let mut greedy = Vec::new();
    let mut logp = 0.0f64;
    for _ in 0..8 {
        let input = &ids[ids.len() - if greedy.is_empty() { 3 } else { 1 }..];
        let x = Tensor::from_slice(input, (1, input.len()), &Device::Cpu).unwrap();
        let logits = model.forward_cached(&x, &mut cache).unwrap();
        let lp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let best = (0..lp.len()).fold(0, |b, i| if lp[i] > lp[b] { i } else { b });
        logp += lp[best] as f64;
        greedy.push(best as u32);
        ids.push(best as u32);
    }
    assert_eq!(
        beam_continue(&model, &prompt, 1, 0.6, 8, None).unwrap(),
        greedy
    );
    // Without EOS every hypothesis has the same length, so raw log-probabilities compare.
    let wide = beam_continue(&model, &prompt, 4, 0.0, 8, None).unwrap();
    assert_eq!(wide.len(), 8);
    let score = |out: &[u32]| {
        let x: Vec<u32> = prompt.iter().chain(out).copied().collect();
        let t = Tensor::from_slice(&x, (1, x.len()), &Device::Cpu).unwrap();
        let lp = candle_nn::ops::log_softmax(
            &model.forward(&t, &mut Dropout::eval()).unwrap(),
            candle_core::D::Minus1,
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        (0..out.len())
            .map(|i| lp[prompt.len() - 1 + i][out[i] as usize] as f64)
            .sum::<f64>()
    };
    assert!((score(&greedy) - logp).abs() < 1e-3);
    assert!(score(&wide) >= logp - 1e-4, "{} < {logp}", score(&wide));
    assert!(length_penalty(8, 0.0) == 1.0);
}
