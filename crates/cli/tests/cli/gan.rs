//! The GAN family through the binary: a tiny conditional GAN end to end on a folder of PNGs
//! (train with the class-coverage check, resume, sample by label, eval, bench), and bad inputs
//! giving clear errors (exit 1 or 2, never a panic).

use std::path::Path;

use crate::common::{assert_provenance, fails, muse, ok};

/// A folder of 8x8 PNGs: two class subfolders (bright and dark squares), or unlabelled.
fn image_folder(root: &Path, labelled: bool) -> String {
    let dir = root.join(if labelled { "shapes" } else { "plain" });
    for (class, value) in [("bright", 220u8), ("dark", 30)] {
        let sub = if labelled {
            dir.join(class)
        } else {
            dir.clone()
        };
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..20u32 {
            let img = image::GrayImage::from_fn(8, 8, |x, y| {
                image::Luma([if (x + y + i) % 3 == 0 {
                    value
                } else {
                    value / 2
                }])
            });
            img.save(sub.join(format!("{class}{i}.png"))).unwrap();
        }
    }
    dir.display().to_string()
}

/// Flags for a tiny GAN on 8x8 images.
fn tiny(data: &str) -> Vec<&str> {
    vec![
        "--data",
        data,
        "--image-size",
        "8",
        "--channels",
        "1",
        "--set",
        "batch_size=8",
        "--set",
        "g_channels=8",
        "--set",
        "d_channels=4",
        "--set",
        "z_dim=8",
        "--set",
        "log_interval=1",
    ]
}

#[test]
fn conditional_gan_end_to_end_on_an_image_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let data = image_folder(cwd, true);
    let mut args = vec!["train", "classifier", "--out", "runs/cls", "--data", &data];
    args.extend([
        "--image-size",
        "8",
        "--channels",
        "1",
        "--set",
        "batch_size=8",
        "--set",
        "max_steps=4",
        "--set",
        "conv1=2",
        "--set",
        "conv2=2",
        "--set",
        "hidden=8",
    ]);
    ok(&muse(cwd, &args));

    let mut args = vec![
        "train",
        "gan",
        "--preset",
        "cgan-mnist",
        "--out",
        "runs/gan",
        "--classifier",
        "runs/cls",
    ];
    args.extend(tiny(&data));
    args.extend([
        "--set",
        "max_steps=4",
        "--set",
        "eval_interval=2",
        "--set",
        "coverage_samples=20",
    ]);
    let stdout = ok(&muse(cwd, &args));
    assert!(stdout.contains("samples/step_000004.png"), "{stdout}");
    assert_provenance(
        &cwd.join("runs/gan/samples/step_000004.png"),
        &[("Model", "gan"), ("Family", "gan"), ("TrainingStep", "4")],
    );
    let run = cwd.join("runs/gan");
    for f in [
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
        "training.json",
        "metrics.jsonl",
        "loss.svg",
        "MODEL_CARD.md",
        "samples/step_000000.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for key in [
        "\"loss_d\"",
        "\"d_real\"",
        "\"d_fake\"",
        "\"coverage\"",
        "\"label_accuracy\"",
    ] {
        assert!(metrics.contains(key), "{key} not logged:\n{metrics}");
    }
    let card = std::fs::read_to_string(run.join("MODEL_CARD.md")).unwrap();
    assert!(
        card.contains("AI-generated") && card.contains("class-conditional"),
        "{card}"
    );

    // Resume to more steps; a second plain start refuses to overwrite.
    ok(&muse(
        cwd,
        &[
            "train",
            "gan",
            "--out",
            "runs/gan",
            "--resume",
            "--set",
            "max_steps=6",
        ],
    ));
    let state = std::fs::read_to_string(run.join("state.json")).unwrap();
    assert!(
        state.contains("\"step\":6") || state.contains("\"step\": 6"),
        "{state}"
    );
    let mut again = vec![
        "train",
        "gan",
        "--preset",
        "cgan-mnist",
        "--out",
        "runs/gan",
        "--no-classifier",
    ];
    again.extend(tiny(&data));
    fails(&muse(cwd, &again), 2, "--resume");

    let stdout = ok(&muse(
        cwd,
        &[
            "sample", "runs/gan", "--n", "6", "-o", "one.png", "--label", "1", "--seed", "3",
        ],
    ));
    assert!(
        stdout.contains("class 1") && stdout.contains("AI-generated"),
        "{stdout}"
    );
    assert_provenance(
        &cwd.join("one.png"),
        &[
            ("Model", "gan"),
            ("Family", "gan"),
            ("Seed", "3"),
            ("Label", "1"),
        ],
    );
    ok(&muse(
        cwd,
        &["sample", "runs/gan", "--n", "4", "-o", "mix.png"],
    ));
    let xmp = assert_provenance(&cwd.join("mix.png"), &[("Family", "gan")]);
    assert!(
        !xmp.contains("muse:Label"),
        "no label was asked:
{xmp}"
    );

    let stdout = ok(&muse(
        cwd,
        &[
            "eval",
            "runs/gan",
            "--classifier",
            "runs/cls",
            "--samples",
            "20",
        ],
    ));
    for needle in ["FID", "coverage", "label acc."] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }

    let dataset = format!("data.dataset={data}");
    let stdout = ok(&muse(
        cwd,
        &[
            "bench",
            "gan",
            "--preset",
            "cgan-mnist",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--set",
            &dataset,
            "--set",
            "data.image_size=8",
            "--set",
            "data.channels=1",
            "--set",
            "g_channels=8",
            "--set",
            "d_channels=4",
            "--set",
            "batch_size=8",
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        report["ms_per_step_median"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(report["conv"], "fused");
}

#[test]
fn bad_gan_inputs_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let plain = image_folder(cwd, false);
    let labelled = image_folder(cwd, true);

    let mut args = vec![
        "train",
        "gan",
        "--out",
        "runs/plain",
        "--no-classifier",
        "--set",
        "max_steps=1",
    ];
    args.extend(tiny(&plain));
    ok(&muse(cwd, &args));
    fails(
        &muse(cwd, &["sample", "runs/plain", "--label", "1"]),
        2,
        "unconditional",
    );
    fails(&muse(cwd, &["sample", "runs/plain", "--n", "0"]), 2, "--n");
    fails(
        &muse(cwd, &["sample", "runs/plain", "--reconstruct"]),
        2,
        "VAE",
    );

    let mut args = vec![
        "train",
        "gan",
        "--preset",
        "cgan-mnist",
        "--out",
        "runs/c",
        "--no-classifier",
        "--set",
        "max_steps=1",
    ];
    args.extend(tiny(&labelled));
    ok(&muse(cwd, &args));
    fails(
        &muse(cwd, &["sample", "runs/c", "--label", "12"]),
        2,
        "0 to 1",
    );
    fails(
        &muse(
            cwd,
            &[
                "train", "gan", "--out", "runs/c", "--resume", "--loss", "wgan-gp",
            ],
        ),
        2,
        "--loss",
    );

    // A conditional GAN needs labels; unknown presets and losses; a critic with batch norm.
    let mut args = vec![
        "train",
        "gan",
        "--preset",
        "cgan-mnist",
        "--out",
        "runs/x",
        "--no-classifier",
    ];
    args.extend(tiny(&plain));
    fails(&muse(cwd, &args), 1, "no labels");
    assert!(
        !cwd.join("runs/x").exists(),
        "a failed start left a run folder"
    );
    fails(
        &muse(cwd, &["train", "gan", "--preset", "stylegan"]),
        2,
        "dcgan-mnist",
    );
    fails(
        &muse(cwd, &["train", "gan", "--loss", "hinge"]),
        2,
        "wgan-gp",
    );
    let mut args = vec![
        "train",
        "gan",
        "--loss",
        "wgan-gp",
        "--set",
        "d_norm=batch",
        "--out",
        "runs/y",
        "--no-classifier",
    ];
    args.extend(tiny(&plain));
    fails(&muse(cwd, &args), 2, "d_norm");
    fails(
        &muse(
            cwd,
            &[
                "train",
                "gan",
                "--classifier",
                "runs/none",
                "--out",
                "runs/z",
                "--data",
                &plain,
            ],
        ),
        1,
        "classifier",
    );
    fails(
        &muse(cwd, &["eval", "runs/plain", "--classifier", "runs/none"]),
        1,
        "classifier",
    );
}
