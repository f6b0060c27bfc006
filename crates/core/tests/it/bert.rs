//! The BERT sentence encoder against sentence-transformers and transformers on
//! all-MiniLM-L6-v2 (`scripts/fixtures/bert_minilm.py` wrote the fixture): embeddings of texts
//! of different lengths in one padded batch, truncation past max_seq_length, token ids, token
//! states; and the errors for folders that are not a BERT sentence encoder.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use muse_core::embed::{Pooling, SentenceEncoder, l2_normalize, mean_pool};
use muse_core::models::bert::{BertConfig, BertModel, load_bert};
use serde_json::Value;

use crate::common::{dataset, fixture};

fn minilm_dir() -> PathBuf {
    dataset("all-minilm-l6-v2")
}

fn encoder() -> SentenceEncoder {
    SentenceEncoder::open(&minilm_dir(), &Device::Cpu).unwrap()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("bert_minilm.json")).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn bert_minilm_embeddings_match_sentence_transformers() {
    let e = expected();
    let enc = encoder();
    assert_eq!(enc.dim(), 384);
    assert_eq!(enc.max_seq_length(), 256);
    assert_eq!(enc.pooling(), Pooling::Mean);
    assert!(enc.normalizes());
    let sentences = strings(&e["sentences"]);
    let want: Vec<Vec<f32>> = e["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();

    // All sentences in one padded batch (lengths 3 to 256 tokens).
    let got = enc
        .embed_batch(&sentences)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let worst = got.iter().zip(&want).map(|(g, w)| max_abs_diff(g, w));
    eprintln!("embeddings: max |diff| {:e}", worst.fold(0.0, f32::max));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let err = max_abs_diff(g, w);
        assert!(
            err < 1e-5,
            "sentence {i} ({:?}...): max |diff| {err:e} from sentence-transformers",
            &sentences[i].chars().take(30).collect::<String>()
        );
        let norm = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "sentence {i}: norm {norm}");
    }

    // Other batchings give the same vectors: one at a time (no padding) and in pairs.
    for batch in [1, 2] {
        let got = enc.encode_batched(&sentences, batch).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = max_abs_diff(g, w);
            assert!(
                err < 1e-5,
                "batch {batch}, sentence {i}: max |diff| {err:e}"
            );
        }
    }
}

#[test]
fn bert_minilm_token_ids_match_transformers_with_truncation() {
    let e = expected();
    let enc = encoder();
    let sentences = strings(&e["sentences"]);
    let want: Vec<Vec<u32>> = serde_json::from_value(e["input_ids"].clone()).unwrap();
    for (s, w) in sentences.iter().zip(&want) {
        assert_eq!(&enc.token_ids(s).unwrap(), w, "ids of {s:?}");
    }
    assert_eq!(
        want.last().unwrap().len(),
        256,
        "the long sentence is truncated"
    );
    assert!(enc.token_count(sentences.last().unwrap()).unwrap() > 256);
    assert_eq!(enc.token_count(&sentences[0]).unwrap(), want[0].len());
    let text = e["state_sentence"].as_str().unwrap();
    let want: Vec<u32> = serde_json::from_value(e["state_input_ids"].clone()).unwrap();
    assert_eq!(enc.token_ids(text).unwrap(), want);
}

#[test]
fn bert_minilm_token_states_match_transformers_last_hidden_state() {
    let e = expected();
    let enc = encoder();
    let text = e["state_sentence"].as_str().unwrap();
    let shape: Vec<usize> = serde_json::from_value(e["last_hidden_state_shape"].clone()).unwrap();
    let want = floats(&e["last_hidden_state"]);

    let ts = enc.token_states(&[text]).unwrap();
    assert_eq!(ts.states.dims(), &[1, shape[0], shape[1]]);
    assert_eq!(ts.lengths, vec![shape[0]]);
    let got = ts.states.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let err = max_abs_diff(&got, &want);
    eprintln!("last_hidden_state: max |diff| {err:e}");
    assert!(err < 1e-4, "last_hidden_state: max |diff| {err:e}");

    // Padded behind a longer text, the real positions keep their states.
    let longer = "A much longer companion sentence that forces the first one to be padded by \
                  quite a few positions, so the attention mask has to do its work.";
    let ts = enc.token_states(&[text, longer]).unwrap();
    let t = shape[0];
    assert!(ts.states.dim(1).unwrap() > t);
    let mask0 = ts.mask.i(0).unwrap().to_vec1::<f32>().unwrap();
    assert!(mask0[..t].iter().all(|&m| m == 1.0) && mask0[t..].iter().all(|&m| m == 0.0));
    let padded = ts
        .states
        .i((0, 0..t))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let err = max_abs_diff(&padded, &want);
    assert!(err < 1e-4, "padded last_hidden_state: max |diff| {err:e}");
}

#[test]
fn bert_mean_pool_skips_padding_and_l2_normalize_makes_unit_rows() {
    let states = Tensor::new(
        &[
            [[1f32, 2.], [3., 4.], [100., 100.]],
            [[2., 0.], [0., 0.], [0., 0.]],
        ],
        &Device::Cpu,
    )
    .unwrap(); // (2, 3, 2)
    let mask = Tensor::new(&[[1u32, 1, 0], [1, 0, 0]], &Device::Cpu).unwrap();
    let pooled = mean_pool(&states, &mask).unwrap();
    assert_eq!(
        pooled.to_vec2::<f32>().unwrap(),
        vec![vec![2.0, 3.0], vec![2.0, 0.0]]
    );
    let unit = l2_normalize(&Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap()).unwrap();
    assert_eq!(
        unit.to_vec2::<f32>().unwrap(),
        vec![vec![0.6, 0.8], vec![0.0, 0.0]]
    );
}

#[test]
fn bert_config_reads_minilm_and_refuses_other_kinds() {
    let read =
        |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let cfg = BertConfig::from_hf_json(&read(&minilm_dir().join("config.json"))).unwrap();
    assert_eq!(cfg, BertConfig::minilm_l6());
    assert_eq!(cfg.head_size(), 32);
    // Round trip through our own config.json.
    assert_eq!(BertConfig::from_hf_json(&cfg.to_hf_json()).unwrap(), cfg);

    let err = BertConfig::from_hf_json(&read(&fixture("hf/gpt2/config.json"))).unwrap_err();
    assert!(err.contains("'gpt2'") && err.contains("'bert'"), "{err}");

    let mut v = cfg.to_hf_json();
    v["num_attention_heads"] = 7.into();
    let err = BertConfig::from_hf_json(&v).unwrap_err();
    assert!(err.contains("multiple of num_attention_heads"), "{err}");

    let mut v = cfg.to_hf_json();
    v["hidden_act"] = "swish".into();
    assert!(
        BertConfig::from_hf_json(&v)
            .unwrap_err()
            .contains("'swish'")
    );

    let mut v = cfg.to_hf_json();
    v.as_object_mut().unwrap().remove("hidden_size");
    assert!(
        BertConfig::from_hf_json(&v)
            .unwrap_err()
            .contains("hidden_size")
    );
}

/// A copy of the all-MiniLM-L6-v2 folder's small files in a temp dir, the weights linked.
fn minilm_copy(skip: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = minilm_dir();
    for f in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        if skip.contains(&f) {
            continue;
        }
        let to = tmp.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(f), to).unwrap();
    }
    if !skip.contains(&"model.safetensors") {
        std::os::unix::fs::symlink(
            src.join("model.safetensors"),
            tmp.path().join("model.safetensors"),
        )
        .unwrap();
    }
    tmp
}

fn open_err(dir: &Path) -> String {
    SentenceEncoder::open(dir, &Device::Cpu)
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn bert_encoder_folder_errors_say_what_was_expected() {
    let err = open_err(Path::new("/no/such/encoder"));
    assert!(err.contains("no text encoder at /no/such/encoder"), "{err}");

    // A GPT-2 folder is the wrong kind.
    let err = open_err(&fixture("hf/gpt2"));
    assert!(
        err.contains("'gpt2'") && err.contains("expected model_type 'bert'"),
        "{err}"
    );

    let tmp = minilm_copy(&["config.json"]);
    let err = open_err(tmp.path());
    assert!(err.contains("has no config.json"), "{err}");

    let tmp = minilm_copy(&["tokenizer.json"]);
    let err = open_err(tmp.path());
    assert!(err.contains("has no tokenizer.json"), "{err}");

    let tmp = minilm_copy(&["model.safetensors"]);
    let err = open_err(tmp.path());
    assert!(err.contains("has no model.safetensors"), "{err}");

    // Pooling Muse does not run.
    let tmp = minilm_copy(&[]);
    let pooling = tmp.path().join("1_Pooling/config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&pooling).unwrap()).unwrap();
    v["pooling_mode_mean_tokens"] = false.into();
    v["pooling_mode_max_tokens"] = true.into();
    std::fs::write(&pooling, v.to_string()).unwrap();
    let err = open_err(tmp.path());
    assert!(
        err.contains("pooling_mode_max_tokens") && err.contains("does not support"),
        "{err}"
    );

    // A Dense module after pooling.
    let tmp = minilm_copy(&[]);
    let modules = tmp.path().join("modules.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&modules).unwrap()).unwrap();
    v[2]["type"] = "sentence_transformers.models.Dense".into();
    v[2]["path"] = "2_Dense".into();
    std::fs::write(&modules, v.to_string()).unwrap();
    let err = open_err(tmp.path());
    assert!(err.contains("module 2 is Dense (2_Dense)"), "{err}");

    // Weights of another shape than the config says.
    let tmp = minilm_copy(&[]);
    let config = tmp.path().join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["hidden_size"] = 768.into();
    std::fs::write(&config, v.to_string()).unwrap();
    let err = open_err(tmp.path());
    assert!(err.contains("do not match its config.json"), "{err}");
}

#[test]
fn bert_encoder_without_modules_json_mean_pools_unnormalised() {
    let tmp = minilm_copy(&["modules.json", "1_Pooling/config.json"]);
    let enc = SentenceEncoder::open(tmp.path(), &Device::Cpu).unwrap();
    assert_eq!(enc.pooling(), Pooling::Mean);
    assert!(!enc.normalizes());
    let v = &enc.encode(&["Hello world"]).unwrap()[0];
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 1e-3, "not normalised: {norm}");
    let unit: Vec<f32> = v.iter().map(|x| x / norm).collect();
    let want = floats(&expected()["embeddings"][0]);
    assert!(max_abs_diff(&unit, &want) < 1e-5);
}

#[test]
fn bert_loads_prefixed_checkpoints_and_defaults_mask_and_types() {
    let cfg = BertConfig {
        vocab_size: 20,
        hidden_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 16,
        max_position_embeddings: 6,
        ..BertConfig::minilm_l6()
    };
    let dev = Device::Cpu;
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = BertModel::new(&cfg, vb).unwrap();
    muse_core::nn::init_varmap(&varmap, 7, |_, _| muse_core::nn::Init::Normal(0.5)).unwrap();
    let ids = Tensor::new(&[[2u32, 7, 9, 3], [2, 5, 3, 0]], &dev).unwrap();
    let want = model.forward(&ids, None, None).unwrap(); // (2, 4, 8)
    assert_eq!(want.dims(), &[2, 4, 8]);
    let spread = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(
        spread.iter().any(|&x| (x - spread[0]).abs() > 0.1),
        "random weights"
    );

    // Explicit all-ones mask and zero token types: the same.
    let ones = Tensor::ones((2, 4), DType::U32, &dev).unwrap();
    let zeros = Tensor::zeros((2, 4), DType::U32, &dev).unwrap();
    let got = model.forward(&ids, Some(&zeros), Some(&ones)).unwrap();
    let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);

    // Saved under `bert.` (as BertForMaskedLM does, with a head beside it), loaded back.
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors: std::collections::HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (format!("bert.{k}"), v.as_tensor().clone()))
        .collect();
    tensors.insert(
        "cls.predictions.bias".into(),
        Tensor::zeros(20, DType::F32, &dev).unwrap(),
    );
    candle_core::safetensors::save(&tensors, tmp.path().join("model.safetensors")).unwrap();
    std::fs::write(tmp.path().join("config.json"), cfg.to_hf_json().to_string()).unwrap();
    let loaded = load_bert(tmp.path(), &dev).unwrap();
    let got = loaded.forward(&ids, None, None).unwrap();
    let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);

    // Longer than the position table: an error, not a panic.
    let long = Tensor::zeros((1, 7), DType::U32, &dev).unwrap();
    let err = model.forward(&long, None, None).unwrap_err().to_string();
    assert!(err.contains("longer than the model's 6 positions"), "{err}");
}
