//! Image families through the binary: a tiny VAE and classifier end to end on a folder of
//! PNGs (train, sample, eval, score, resume), and bad image inputs giving clear errors (exit 1
//! or 2, never a panic).

use std::path::Path;

use crate::common::{assert_provenance, fails, muse, ok};

/// A folder of 8x8 PNGs in two class subfolders: bright squares and dark ones.
fn image_folder(root: &Path) -> String {
    let dir = root.join("shapes");
    for (class, value) in [("bright", 220u8), ("dark", 30)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..20u32 {
            let img = image::GrayImage::from_fn(8, 8, |x, y| {
                image::Luma([if (x + y + i) % 3 == 0 {
                    value
                } else {
                    value / 2
                }])
            });
            img.save(dir.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    dir.display().to_string()
}

#[test]
fn vae_and_classifier_end_to_end_on_an_image_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let data = image_folder(cwd);
    let common = [
        "--data",
        &data,
        "--image-size",
        "8",
        "--channels",
        "1",
        "--set",
        "batch_size=8",
        "--set",
        "log_interval=1",
    ];
    let mut args = vec!["train", "vae", "--out", "runs/vae", "--set", "max_steps=6"];
    args.extend(common);
    args.extend([
        "--set",
        "hidden=16",
        "--set",
        "latent=2",
        "--set",
        "sample_interval=3",
    ]);
    let stdout = ok(&muse(cwd, &args));
    assert!(stdout.contains("test loss"), "{stdout}");
    assert_provenance(
        &cwd.join("runs/vae/samples/step_000003.png"),
        &[("Model", "vae"), ("Family", "vae"), ("TrainingStep", "3")],
    );
    assert_provenance(
        &cwd.join("runs/vae/samples/reconstructions.png"),
        &[("Model", "vae"), ("Family", "vae")],
    );
    assert!(cwd.join("runs/vae/MODEL_CARD.md").is_file());
    // Resume to 9 steps.
    ok(&muse(
        cwd,
        &[
            "train",
            "vae",
            "--out",
            "runs/vae",
            "--resume",
            "--set",
            "max_steps=9",
        ],
    ));
    let state = std::fs::read_to_string(cwd.join("runs/vae/state.json")).unwrap();
    assert!(state.contains("\"step\": 9"), "{state}");

    // Samples are PNGs that say they are AI-generated, and by what.
    ok(&muse(
        cwd,
        &[
            "sample", "runs/vae", "--n", "6", "-o", "grid.png", "--seed", "4",
        ],
    ));
    assert_provenance(
        &cwd.join("grid.png"),
        &[("Model", "vae"), ("Family", "vae"), ("Seed", "4")],
    );
    for (extra, field) in [
        (vec!["--reconstruct", "--n", "3"], ("Family", "vae")),
        (
            vec!["--interpolate", "0", "1", "--steps", "4"],
            ("Steps", "4"),
        ),
        (
            vec!["--denoise-test", "0.2", "--n", "2", "--seed", "2"],
            ("Seed", "2"),
        ),
        (vec!["--denoise", "grid.png"], ("Model", "vae")),
    ] {
        let mut a = vec!["sample", "runs/vae", "-o", "x.png"];
        a.extend(extra);
        ok(&muse(cwd, &a));
        assert_provenance(&cwd.join("x.png"), &[field]);
    }
    // `muse inspect` reads it back, as text and as JSON.
    let said = ok(&muse(cwd, &["inspect", "grid.png"]));
    for want in [
        "AI-generated (a trained model made this image)",
        "source type http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
        "Seed ",
        "Family ",
    ] {
        assert!(said.contains(want), "{want} missing:\n{said}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok(&muse(cwd, &["inspect", "grid.png", "--json"]))).unwrap();
    assert_eq!(v["kind"], "png");
    assert_eq!(v["ai_generated"], true);
    assert_eq!(v["properties"]["Seed"], "4");
    assert_eq!(v["properties"]["Family"], "vae");
    assert_eq!(v["properties"]["Version"], env!("CARGO_PKG_VERSION"));

    // Evaluation without a classifier prints what needs none and says how to get the rest;
    // with one, FID and coverage.
    let stdout = ok(&muse(cwd, &["eval", "runs/vae", "--iwae-k", "4"]));
    assert!(stdout.contains("IWAE NLL"), "{stdout}");
    assert!(stdout.contains("muse train classifier --data"), "{stdout}");
    let stdout = ok(&muse(
        cwd,
        &["eval", "runs/vae", "--iwae-k", "4", "--no-classifier"],
    ));
    assert!(
        stdout.contains("IWAE NLL") && stdout.contains("k = 4"),
        "{stdout}"
    );
    let mut args = vec![
        "train",
        "classifier",
        "--out",
        "runs/cls",
        "--set",
        "max_steps=4",
    ];
    args.extend(common);
    args.extend(["--set", "conv1=2", "--set", "conv2=2", "--set", "hidden=8"]);
    ok(&muse(cwd, &args));
    let stdout = ok(&muse(cwd, &["eval", "runs/cls"]));
    assert!(
        stdout.contains("accuracy") && stdout.contains("FID sanity"),
        "{stdout}"
    );
    let stdout = ok(&muse(
        cwd,
        &[
            "eval",
            "runs/vae",
            "--iwae-k",
            "0",
            "--classifier",
            "runs/cls",
            "--samples",
            "20",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        v["image_metrics"]["fid"].as_f64().unwrap().is_finite(),
        "{v}"
    );
    assert_eq!(v["image_metrics"]["coverage"]["n_classes"], 2);

    // Anomaly scores as CSV, with an AUROC against another set.
    let stdout = ok(&muse(
        cwd,
        &[
            "score",
            "runs/vae",
            "--data",
            &data,
            "--ood",
            &format!("{data}:train"),
            "-o",
            "s.csv",
        ],
    ));
    assert!(stdout.contains("AUROC"), "{stdout}");
    let csv = std::fs::read_to_string(cwd.join("s.csv")).unwrap();
    assert!(csv.starts_with("set,index,label,score\n"));
    assert_eq!(csv.lines().count(), 1 + 4 + 36);
}

#[test]
fn bad_image_inputs_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    // An image that does not decode, named in the message.
    let data = image_folder(cwd);
    std::fs::write(
        Path::new(&data).join("dark/broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let out = muse(
        cwd,
        &[
            "train",
            "vae",
            "--data",
            &data,
            "--out",
            "r1",
            "--image-size",
            "8",
        ],
    );
    fails(&out, 1, "broken.png");
    assert!(
        !cwd.join("r1").exists(),
        "a failed start leaves no run folder"
    );
    // A truncated IDX file and one with the wrong magic number.
    let idx = cwd.join("idx");
    std::fs::create_dir(&idx).unwrap();
    let mut bytes = 2051u32.to_be_bytes().to_vec();
    for d in [10u32, 28, 28] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend(vec![0u8; 100]);
    std::fs::write(idx.join("train-images-idx3-ubyte"), &bytes).unwrap();
    let out = muse(
        cwd,
        &["train", "classifier", "--data", idx.to_str().unwrap()],
    );
    fails(&out, 1, "truncated");
    bytes[3] = 0x01;
    std::fs::write(idx.join("train-images-idx3-ubyte"), &bytes).unwrap();
    let out = muse(cwd, &["train", "vae", "--data", idx.to_str().unwrap()]);
    fails(&out, 1, "wrong magic number");
    // Unknown data, bad sizes: usage errors.
    fails(
        &muse(cwd, &["train", "vae", "--data", "no-such-images"]),
        2,
        "image datasets",
    );
    fails(
        &muse(cwd, &["train", "vae", "--data", "tinyshakespeare"]),
        2,
        "not images",
    );
    fails(
        &muse(cwd, &["train", "vae", "--data", &data, "--channels", "2"]),
        2,
        "--channels",
    );
    // A folder with no images at all.
    let empty = cwd.join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails(
        &muse(cwd, &["train", "vae", "--data", empty.to_str().unwrap()]),
        1,
        "no PNG or JPEG",
    );
}

#[test]
fn bad_sample_requests_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let data = image_folder(cwd);
    ok(&muse(
        cwd,
        &[
            "train",
            "vae",
            "--data",
            &data,
            "--image-size",
            "8",
            "--out",
            "vae",
            "--set",
            "max_steps=1",
            "--set",
            "hidden=8",
            "--set",
            "latent=2",
        ],
    ));
    std::fs::write(cwd.join("junk.jpg"), b"\xff\xd8\xff garbage").unwrap();
    fails(
        &muse(cwd, &["sample", "vae", "--denoise", "junk.jpg"]),
        1,
        "junk.jpg",
    );
    fails(
        &muse(cwd, &["sample", "vae", "--denoise", "missing.png"]),
        1,
        "missing.png",
    );
    fails(
        &muse(cwd, &["sample", "vae", "--interpolate", "0", "500"]),
        2,
        "out of range",
    );
    fails(
        &muse(
            cwd,
            &["sample", "vae", "--reconstruct", "--interpolate", "0", "1"],
        ),
        2,
        "choose one",
    );
    fails(&muse(cwd, &["sample", "vae", "--n", "0"]), 2, "--n");
}
