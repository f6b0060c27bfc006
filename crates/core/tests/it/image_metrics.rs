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

#[test]
fn fid_floor_of_the_reference_itself_is_zero_and_a_lossy_autoencoder_raises_it() {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};
    use muse_core::data::images::{ImageOptions, Split, load_images};
    use muse_core::error::Result;
    use muse_core::eval::image::{FloorFrom, classify_dataset, fid_floor};
    use muse_core::models::classifier::{Classifier, ClassifierConfig};

    let device = Device::Cpu;
    let varmap = VarMap::new();
    let cfg = ClassifierConfig {
        conv1: 4,
        conv2: 8,
        hidden: 8,
        ..ClassifierConfig::mnist()
    };
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let clf = Classifier::new(&cfg, vb).unwrap();
    // Random weights, so the features differ between images.
    for (i, var) in varmap.all_vars().iter().enumerate() {
        let t = var.as_tensor();
        let noise = muse_core::nn::noise::standard_normal(t.dims(), i as u64, 0, &device).unwrap();
        var.set(&(noise * 0.3).unwrap()).unwrap();
    }
    let images = load_images("mnist", Split::Test, &ImageOptions::default())
        .unwrap()
        .take(300);

    let reference = classify_dataset(&clf, &images, 500, &device)
        .unwrap()
        .gaussian();
    let floor = |n: usize, reconstruct: Option<&muse_core::eval::image::Reconstruct>| {
        let from = FloorFrom {
            train: &images,
            reconstruct,
        };
        fid_floor(&clf, from, &reference, n, 3, &device).unwrap()
    };

    // Asked for more images than there are, it scores all of them: the reference itself.
    let identity = |x: &Tensor| -> Result<Tensor> { Ok(x.clone()) };
    let all = floor(1000, Some(&identity));
    assert_eq!(all.images, 300);
    assert!(
        all.real.abs() < 1e-3,
        "FID of a set against itself: {}",
        all.real
    );
    assert_eq!(all.reconstructed, Some(all.real));

    // A third of them scores above zero; the same draw through a lossy "autoencoder" (the
    // images at half brightness) scores worse still.
    let dim = |x: &Tensor| -> Result<Tensor> { Ok((x * 0.5)?) };
    let some = floor(100, Some(&dim));
    assert_eq!(some.images, 100);
    assert!(some.real > all.real + 1e-3, "{} vs {}", some.real, all.real);
    let rebuilt = some.reconstructed.unwrap();
    assert!(rebuilt > some.real, "{rebuilt} vs {}", some.real);

    // The draw is a function of the seed.
    let again = floor(100, None);
    assert_eq!((again.real, again.reconstructed), (some.real, None));
}
