//! Direct Preference Optimization (`train::dpo`): the loss, implicit rewards and preference
//! accuracy against numbers worked out by hand, sequence log-probabilities that count reply
//! tokens only, and a short run on the tiny GPT-2 fixture that learns a preference.

use std::path::Path;

use candle_core::{D, Device, Tensor, Var};
use muse_core::data::preferences::read_preferences;
use muse_core::models::pretrained::{TextLm, load_pretrained};
use muse_core::nn::Dropout;
use muse_core::nn::ops::IGNORE_INDEX;
use muse_core::run_dir::OnExisting;
use muse_core::tokenizer::chat::ChatTemplate;
use muse_core::train::dpo::{
    AlignConfig, AlignJob, PairTokens, align, dpo_loss, evaluate, pair_logps, prepare_pairs,
    reward_stats, sequence_logps,
};
use muse_core::train::tuning::Base;

use crate::common::fixture;

fn t1(v: &[f32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn vec1(t: &Tensor) -> Vec<f32> {
    t.to_vec1().unwrap()
}

/// -log(sigmoid(z)), written out.
fn nls(z: f64) -> f64 {
    -(1.0 / (1.0 + (-z).exp())).ln()
}

#[test]
fn dpo_loss_rewards_and_accuracy_match_a_hand_computed_example() {
    // Four pairs, beta = 0.1. Sequence log-probabilities of the replies:
    //   pair  policy chosen  policy rejected  ref chosen  ref rejected
    //   1     -10            -15              -12         -14
    //   2     -20             -9              -19         -10
    //   3      -5             -7               -5          -7
    //   4      -3             -6               -8          -4
    // Rewards beta * (policy - ref):
    //   chosen   0.2, -0.1, 0.0,  0.5
    //   rejected -0.1, 0.1, 0.0, -0.2
    // Margins z = chosen - rejected: 0.3, -0.2, 0.0, 0.7.
    let beta = 0.1;
    let pc = t1(&[-10.0, -20.0, -5.0, -3.0]);
    let pr = t1(&[-15.0, -9.0, -7.0, -6.0]);
    let rc = t1(&[-12.0, -19.0, -5.0, -8.0]);
    let rr = t1(&[-14.0, -10.0, -7.0, -4.0]);
    let out = dpo_loss(&pc, &pr, &rc, &rr, beta).unwrap();

    let want_chosen = [0.2, -0.1, 0.0, 0.5];
    let want_rejected = [-0.1, 0.1, 0.0, -0.2];
    for (got, want) in vec1(&out.chosen_rewards).iter().zip(want_chosen) {
        assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    }
    for (got, want) in vec1(&out.rejected_rewards).iter().zip(want_rejected) {
        assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    }
    // -log sigmoid of each margin: 0.3 -> 0.554355, -0.2 -> 0.798139, 0 -> ln 2 = 0.693147,
    // 0.7 -> 0.403186; their mean is 0.612207.
    let want_loss = (nls(0.3) + nls(-0.2) + nls(0.0) + nls(0.7)) / 4.0;
    assert!((want_loss - 0.612207).abs() < 1e-6, "{want_loss}");
    let loss: f32 = out.loss.to_scalar().unwrap();
    assert!(
        (loss as f64 - want_loss).abs() < 1e-6,
        "{loss} vs {want_loss}"
    );

    // Mean margin (0.3 - 0.2 + 0 + 0.7) / 4 = 0.2; accuracy (1 + 0 + 0.5 + 1) / 4 = 0.625 with
    // the tie counted half; mean rewards 0.15 (chosen) and -0.05 (rejected).
    let (margin, acc, c, r) = reward_stats(&out).unwrap();
    assert!((margin - 0.2).abs() < 1e-6, "{margin}");
    assert_eq!(acc, 0.625);
    assert!(
        (c - 0.15).abs() < 1e-6 && (r + 0.05).abs() < 1e-6,
        "{c} {r}"
    );
}

#[test]
fn dpo_loss_is_stable_and_its_gradient_is_the_sigmoid() {
    // Margins of +-500 (log-probability gaps of 5000 at beta 0.1): the loss is 0 and 500, not
    // NaN or infinity.
    let out = dpo_loss(
        &t1(&[0.0, -5000.0]),
        &t1(&[-5000.0, 0.0]),
        &t1(&[0.0, 0.0]),
        &t1(&[0.0, 0.0]),
        0.1,
    )
    .unwrap();
    let loss: f32 = out.loss.to_scalar().unwrap();
    assert!((loss - 250.0).abs() < 1e-3, "(0 + 500) / 2, got {loss}");

    // d loss / d pc_i = -beta * sigmoid(-z_i) / B, d loss / d pr_i = +beta * sigmoid(-z_i) / B.
    let pc = Var::new(&[-10.0f32, -20.0], &Device::Cpu).unwrap();
    let pr = Var::new(&[-15.0f32, -9.0], &Device::Cpu).unwrap();
    let out = dpo_loss(
        pc.as_tensor(),
        pr.as_tensor(),
        &t1(&[-12.0, -19.0]),
        &t1(&[-14.0, -10.0]),
        0.1,
    )
    .unwrap();
    let grads = out.loss.backward().unwrap();
    let gc = vec1(grads.get(pc.as_tensor()).unwrap());
    let gr = vec1(grads.get(pr.as_tensor()).unwrap());
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    for (i, z) in [0.3, -0.2].into_iter().enumerate() {
        let g = 0.1 * sig(-z) / 2.0;
        assert!((gc[i] as f64 + g).abs() < 1e-6, "{} vs {}", gc[i], -g);
        assert!((gr[i] as f64 - g).abs() < 1e-6, "{} vs {g}", gr[i]);
    }
}

#[test]
fn sequence_logps_sum_only_unmasked_targets() {
    // Two rows of three positions over a vocabulary of 3.
    //   row 0: targets [ignored, 1, 0] over logits [1 2 3], [0 0 0], [2 0 -2]
    //   row 1: every target ignored (a prompt with no reply)
    let logits = Tensor::new(
        &[
            [1.0f32, 2.0, 3.0],
            [0.0, 0.0, 0.0],
            [2.0, 0.0, -2.0],
            [5.0, 1.0, 0.0],
            [0.0, 3.0, 0.0],
            [1.0, 1.0, 1.0],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let x = IGNORE_INDEX;
    let targets = Tensor::new(&[[x, 1u32, 0], [x, x, x]], &Device::Cpu).unwrap();
    let got = vec1(&sequence_logps(&logits, &targets).unwrap());
    // log softmax([0 0 0])[1] = ln(1/3); log softmax([2 0 -2])[0] = 2 - ln(e^2 + 1 + e^-2).
    let e = std::f64::consts::E;
    let want = (1.0f64 / 3.0).ln() + (2.0 - (e * e + 1.0 + 1.0 / (e * e)).ln());
    assert!((got[0] as f64 - want).abs() < 1e-5, "{} vs {want}", got[0]);
    assert_eq!(got[1], 0.0);
}

fn write_lines(path: &Path, rows: &[serde_json::Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// `n` prompt/chosen/rejected rows: the chosen reply always agrees, the rejected one refuses.
fn preference_rows(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "prompt": format!("Can you add {} and {}?", i % 5 + 1, i / 5 + 1),
                "chosen": "Yes, gladly.",
                "rejected": "No.",
            })
        })
        .collect()
}

/// Sum of log p(id | prefix) over the trainable ids of `ex`, from the unpadded forward.
fn reply_logp_by_hand(model: &TextLm, ids: &[u32], trainable: &[bool]) -> f64 {
    let len = ids.len() - 1;
    let x = Tensor::from_vec(ids[..len].to_vec(), (1, len), &Device::Cpu).unwrap();
    let logits = model.forward(&x, &mut Dropout::eval()).unwrap();
    let logp: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, D::Minus1)
        .unwrap()
        .to_vec2()
        .unwrap();
    (0..len)
        .filter(|&i| trainable[i + 1])
        .map(|i| logp[i][ids[i + 1] as usize] as f64)
        .sum()
}

#[test]
fn policy_log_probabilities_count_reply_tokens_only() {
    let tmp = tempfile::tempdir().unwrap();
    let prefs = tmp.path().join("prefs.jsonl");
    write_lines(&prefs, &preference_rows(10));
    let set = read_preferences(prefs.to_str().unwrap()).unwrap();
    let base = Base::load(&fixture("hf/gpt2"), None, true, &Device::Cpu).unwrap();
    let template = ChatTemplate::plain();
    let data = prepare_pairs(&set, &base, &template, false, 65, 0.2).unwrap();
    assert_eq!((data.train.len(), data.val.len()), (8, 2));

    // The trainable ids are the reply, its line end and end-of-text; the prompt is the
    // rendered user turn and "Assistant:".
    let tok = &base.tokenizer;
    let p = &data.train[0];
    for (ex, reply) in [(&p.chosen, " Yes, gladly."), (&p.rejected, " No.")] {
        let first = ex.trainable.iter().position(|&t| t).unwrap();
        assert!(ex.trainable[first..].iter().all(|&t| t));
        assert_eq!(
            tok.decode(&ex.ids[first..]).unwrap(),
            format!("{reply}\n<|endoftext|>")
        );
        let prompt = tok.decode(&ex.ids[..first]).unwrap();
        assert!(
            prompt.starts_with("User: Can you add ") && prompt.ends_with("?\nAssistant:"),
            "{prompt}"
        );
    }

    // Batched (chosen and rejected padded to one length) equals each sequence alone.
    let model = load_pretrained(&fixture("hf/gpt2"), &Device::Cpu).unwrap();
    let pairs: Vec<&PairTokens> = data.train.iter().take(3).collect();
    let eos = base.eos.unwrap();
    let (lc, lr) = pair_logps(&model, &pairs, eos, &mut Dropout::eval(), &Device::Cpu).unwrap();
    let (lc, lr) = (vec1(&lc), vec1(&lr));
    for (i, p) in pairs.iter().enumerate() {
        let c = reply_logp_by_hand(&model, &p.chosen.ids, &p.chosen.trainable);
        let r = reply_logp_by_hand(&model, &p.rejected.ids, &p.rejected.trainable);
        assert!(
            (lc[i] as f64 - c).abs() < 1e-4 * c.abs(),
            "{} vs {c}",
            lc[i]
        );
        assert!(
            (lr[i] as f64 - r).abs() < 1e-4 * r.abs(),
            "{} vs {r}",
            lr[i]
        );
        // Counting the prompt too would give a much smaller (more negative) sum.
        let all = vec![true; p.chosen.ids.len()];
        let with_prompt = reply_logp_by_hand(&model, &p.chosen.ids, &all);
        assert!(with_prompt < c - 1.0, "{with_prompt} vs {c}");
    }

    // A policy equal to its reference: every margin is 0, so the loss is ln 2, accuracy 0.5.
    let e = evaluate(&model, &model, &data.val, 0.1, 4, 10, eos).unwrap();
    assert!((e.loss - std::f64::consts::LN_2).abs() < 1e-6, "{}", e.loss);
    assert_eq!((e.accuracy, e.margin), (0.5, 0.0));
}

#[test]
fn hh_dialogues_share_their_prompt_and_train_on_the_replies() {
    let tmp = tempfile::tempdir().unwrap();
    let prefs = tmp.path().join("hh.jsonl");
    let rows: Vec<serde_json::Value> = (0..4)
        .map(|i| {
            let h = format!("\n\nHuman: Is {i} even?\n\nAssistant:");
            serde_json::json!({"chosen": format!("{h} Let me check."), "rejected": format!("{h} Go away.")})
        })
        .collect();
    write_lines(&prefs, &rows);
    let set = read_preferences(prefs.to_str().unwrap()).unwrap();
    assert_eq!(set.pairs.len(), 4);
    assert!(!set.pairs[0].has_prompt);
    assert_eq!(set.pairs[0].chosen, " Let me check.");
    assert_eq!(set.pairs[0].rejected, " Go away.");
    let base = Base::load(&fixture("hf/gpt2"), None, true, &Device::Cpu).unwrap();
    let data = prepare_pairs(&set, &base, &ChatTemplate::plain(), false, 65, 0.25).unwrap();
    let tok = &base.tokenizer;
    for p in data.train.iter().chain(&data.val) {
        let first = p.chosen.trainable.iter().position(|&t| t).unwrap();
        assert_eq!(
            tok.decode(&p.chosen.ids[first..]).unwrap(),
            " Let me check."
        );
        assert!(
            tok.decode(&p.chosen.ids[..first])
                .unwrap()
                .ends_with("even?\n\nAssistant:")
        );
    }
}

#[test]
fn a_short_dpo_run_learns_the_preference() {
    let tmp = tempfile::tempdir().unwrap();
    let prefs = tmp.path().join("prefs.jsonl");
    write_lines(&prefs, &preference_rows(30));
    let mut config = AlignConfig::preset(0.1, None);
    let t = &mut config.train;
    t.max_iters = 15;
    t.batch_size = 4;
    t.warmup_iters = 0;
    t.lr = 1e-3;
    t.min_lr = 1e-4;
    t.lr_decay_iters = 15;
    t.eval_interval = 15;
    t.eval_iters = 4;
    t.log_interval = 100;
    config.data.val_fraction = 0.2;
    let out = tmp.path().join("run");
    let job = AlignJob {
        base: fixture("hf/gpt2"),
        tokenizer: None,
        data: prefs.display().to_string(),
        config,
        out: out.clone(),
        on_existing: OnExisting::Refuse,
        device: Device::Cpu,
    };
    let r = align(job, false).unwrap();
    assert_eq!((r.train_pairs, r.val_pairs), (24, 6));
    // At step 0 the policy is the reference.
    assert!((r.start.loss - std::f64::consts::LN_2).abs() < 1e-6);
    assert_eq!(r.start.accuracy, 0.5);
    assert!(
        r.end.accuracy > 0.99,
        "held-out accuracy {}",
        r.end.accuracy
    );
    assert!(
        r.end.margin > 0.0 && r.end.loss < r.start.loss,
        "{:?}",
        r.end
    );
    assert!(out.join("MODEL_CARD.md").is_file() && out.join("model.safetensors").is_file());
}

#[test]
fn the_registered_hh_rlhf_split_reads_as_pairs() {
    // `--dpo hh-rlhf`: harmless-base/test.jsonl.gz under $MUSE_DATA_DIR/hh-rlhf/ (2312
    // dialogue pairs, none identical).
    let set = read_preferences("hh-rlhf").unwrap();
    assert_eq!(set.pairs.len() + set.skipped, 2312);
    assert!(set.pairs.len() > 2200, "{} pairs", set.pairs.len());
    let p = &set.pairs[0];
    assert!(!p.has_prompt);
    assert!(p.prompt.starts_with("\n\nHuman:") && p.prompt.ends_with("\n\nAssistant:"));
    assert_ne!(p.chosen, p.rejected);
    assert!(p.origin.contains("test.jsonl.gz:1"), "{}", p.origin);
}
