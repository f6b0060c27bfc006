//! Image metrics: the Fréchet distance against scipy's `sqrtm` (fixture made by
//! scripts/fixtures/frechet_fid.py), AUROC on a hand-made example, class coverage.

use muse_core::eval::image::{Gaussian, auroc, class_coverage, frechet_distance};

use crate::common::fixture;

#[test]
fn frechet_distance_matches_scipy_sqrtm() {
    let text = std::fs::read_to_string(fixture("frechet_fid.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for case in v["cases"].as_array().unwrap() {
        let dim = case["dim"].as_u64().unwrap() as usize;
        let read = |k: &str| -> Vec<f32> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        };
        let (a, b) = (
            Gaussian::fit(&read("a"), dim),
            Gaussian::fit(&read("b"), dim),
        );
        let want = case["fid"].as_f64().unwrap();
        let got = frechet_distance(&a, &b);
        let name = case["name"].as_str().unwrap();
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{name}: muse {got} vs scipy {want}"
        );
        let self_d = frechet_distance(&a, &a);
        assert!(self_d.abs() < 1e-5, "{name}: distance to itself {self_d}");
    }
}

#[test]
fn auroc_on_a_hand_made_example() {
    // Perfect separation, perfect inversion, and chance.
    assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
    assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
    assert_eq!(auroc(&[1.0, 1.0], &[1.0, 1.0]), 0.5);
    // pos = {0.9, 0.8, 0.4}, neg = {0.7, 0.4, 0.2, 0.1}: of the 12 pairs, 0.9 and 0.8 beat all
    // four (8), 0.4 beats 0.2 and 0.1 (2) and ties 0.4 (0.5): 10.5 / 12.
    let got = auroc(&[0.9, 0.8, 0.4], &[0.7, 0.4, 0.2, 0.1]);
    assert!((got - 10.5 / 12.0).abs() < 1e-12, "{got}");
    assert!(auroc(&[], &[1.0]).is_nan());
}

#[test]
fn coverage_of_a_collapsed_and_a_uniform_generator() {
    let collapsed = class_coverage(&[3; 1000], 10);
    assert_eq!((collapsed.classes_found, collapsed.entropy_bits), (1, 0.0));
    let uniform: Vec<u32> = (0..1000).map(|i| i % 10).collect();
    let c = class_coverage(&uniform, 10);
    assert_eq!(c.classes_found, 10);
    assert!((c.entropy_bits - 10f64.log2()).abs() < 1e-9);
    // A class with a couple of stray samples is not "found".
    let mut mostly: Vec<u32> = vec![0; 998];
    mostly.extend([1, 2]);
    assert_eq!(class_coverage(&mostly, 10).classes_found, 1);
}
