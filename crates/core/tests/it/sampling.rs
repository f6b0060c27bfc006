//! Logit processing and sampling on small, hand-checked logits.

use muse_core::sample::logits::{
    Sampler, SamplingParams, apply_repetition_penalty, draw, softmax, top_k_filter, top_n,
    top_p_filter,
};

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn temperature_scales_logits_before_softmax() {
    let p = softmax(&[1.0, 2.0, 3.0], 0.5);
    let e: Vec<f32> = [2.0f32, 4.0, 6.0].iter().map(|x| (x - 6.0).exp()).collect();
    let s: f32 = e.iter().sum();
    assert!(close(&p, &e.iter().map(|x| x / s).collect::<Vec<_>>()));
}

#[test]
fn top_k_keeps_the_k_largest() {
    let mut p = vec![0.1, 0.4, 0.2, 0.3];
    top_k_filter(&mut p, 2);
    assert!(close(&p, &[0.0, 4.0 / 7.0, 0.0, 3.0 / 7.0]));
}

#[test]
fn top_p_keeps_the_smallest_nucleus() {
    let mut p = vec![0.15, 0.5, 0.05, 0.3];
    top_p_filter(&mut p, 0.8);
    assert!(close(&p, &[0.0, 0.625, 0.0, 0.375]), "{p:?}");
    let mut p = vec![0.15, 0.5, 0.05, 0.3];
    top_p_filter(&mut p, 0.81);
    assert!(
        close(&p, &[0.15 / 0.95, 0.5 / 0.95, 0.0, 0.3 / 0.95]),
        "{p:?}"
    );
    let mut p = vec![0.9, 0.1];
    top_p_filter(&mut p, 0.1);
    assert!(close(&p, &[1.0, 0.0]), "the most likely token always stays");
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
    let mut l = vec![2.0, -2.0, 1.0];
    apply_repetition_penalty(&mut l, &[0, 1, 1], 2.0);
    assert!(close(&l, &[1.0, -4.0, 1.0]));
}

#[test]
fn temperature_zero_is_greedy_and_penalty_applies_first() {
    let mut s = Sampler::new(
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        1,
    );
    assert_eq!(s.sample(&[0.1, 3.0, 2.9], &[]), 1);
    let mut s = Sampler::new(
        SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.5,
            ..Default::default()
        },
        1,
    );
    assert_eq!(s.sample(&[0.1, 3.0, 2.9], &[1]), 2);
}

#[test]
fn draws_follow_the_filtered_distribution_and_repeat_with_the_seed() {
    let logits: Vec<f32> = [0.5f32, 0.25, 0.15, 0.1].iter().map(|p| p.ln()).collect();
    let params = SamplingParams {
        temperature: 1.0,
        top_k: 3,
        top_p: 1.0,
        repetition_penalty: 1.0,
    };
    let mut s = Sampler::new(params.clone(), 7);
    let mut counts = [0usize; 4];
    let draws: Vec<u32> = (0..20_000).map(|_| s.sample(&logits, &[])).collect();
    draws.iter().for_each(|&d| counts[d as usize] += 1);
    assert_eq!(counts[3], 0, "top-k 3 never draws the 4th token");
    for (i, expected) in [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9].iter().enumerate() {
        let freq = counts[i] as f64 / 20_000.0;
        assert!(
            (freq - expected).abs() < 0.015,
            "token {i}: {freq} vs {expected}"
        );
    }
    let mut again = Sampler::new(params, 7);
    assert!(
        draws
            .iter()
            .take(100)
            .all(|&d| d == again.sample(&logits, &[]))
    );
}

#[test]
fn inverse_cdf_draw_and_top_candidates() {
    let p = [0.2, 0.0, 0.5, 0.3];
    assert_eq!(draw(&p, 0.1), 0);
    assert_eq!(draw(&p, 0.2), 2);
    assert_eq!(draw(&p, 0.95), 3);
    assert_eq!(top_n(&p, 2), vec![(2, 0.5), (3, 0.3)]);
}
