//! The diffusion family through the binary: a tiny conditional DDPM end to end on a folder of
//! PNGs (train, resume, sample with DDIM and DDPM, a trajectory strip, a label with guidance),
//! and bad inputs giving clear errors (exit 2, never a panic).

use std::path::Path;

use crate::common::{assert_provenance, fails, muse, muse_dated, ok};

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
        for i in 0..12u32 {
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

/// A tiny U-Net, T = 50, three steps of batch 8.
const TINY: &str = "timesteps = 50\n\
    [model]\nchannels = [8, 8, 8]\ntime_dim = 8\ntemb_dim = 16\ngroups = 4\nheads = 2\n\
    [train]\nmax_steps = 3\nbatch_size = 8\nlog_interval = 1\neval_interval = 2\n\
    sample_interval = 2\n\
    [data]\nimage_size = 8\nchannels = 1\ntest_limit = 8\n\
    [sample]\nn = 4\nnrow = 2\nsteps = 3\n";

fn train(cwd: &Path, preset: &str, data: &str, out: &str) {
    std::fs::write(cwd.join("tiny.toml"), TINY).unwrap();
    ok(&muse(
        cwd,
        &[
            "train",
            "diffusion",
            "--preset",
            preset,
            "--config",
            "tiny.toml",
            "--data",
            data,
            "--out",
            out,
        ],
    ));
}

#[test]
fn conditional_ddpm_end_to_end_on_an_image_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let data = image_folder(cwd, true);
    train(cwd, "ddpm-mnist-cond", &data, "runs/d");
    for f in [
        "model.safetensors",
        "MODEL_CARD.md",
        "loss.svg",
        "samples/step_000003.png",
    ] {
        assert!(cwd.join("runs/d").join(f).is_file(), "{f} missing");
    }
    assert_provenance(
        &cwd.join("runs/d/samples/step_000003.png"),
        &[
            ("Model", "d"),
            ("Family", "diffusion"),
            ("Sampler", "ddim"),
            ("TrainingStep", "3"),
        ],
    );
    let resume_with = |set: &str| {
        let args = [
            "train",
            "diffusion",
            "--out",
            "runs/d",
            "--resume",
            "--set",
            set,
        ];
        muse(cwd, &args)
    };
    ok(&resume_with("max_steps=4"));
    // What the weights were started with cannot change on resume, each refused by name.
    for (set, named) in [
        ("class_embedding_std=0.1", "class_embedding_std"),
        ("schedule=cosine", "schedule"),
        ("tint=true", "tint"),
    ] {
        let needle = format!("{named} is fixed when a run starts");
        fails(&resume_with(set), 2, &needle);
    }
    // A fixed SOURCE_DATE_EPOCH fixes the date in the provenance.
    let out = ok(&muse_dated(
        cwd,
        1_700_000_000,
        &[
            "sample",
            "runs/d",
            "--n",
            "3",
            "--steps",
            "5",
            "--label",
            "1",
            "--guidance",
            "2",
            "-o",
            "grid.png",
            "--trajectory",
            "strip.png",
        ],
    ));
    assert!(out.contains("class 1"), "{out}");
    let fields = [
        ("Model", "d"),
        ("Family", "diffusion"),
        ("Seed", "1337"),
        ("Label", "1"),
        ("Sampler", "ddim"),
        ("Steps", "5"),
        ("Guidance", "2"),
        ("Date", "2023-11-14T22:13:20Z"),
    ];
    assert_provenance(&cwd.join("grid.png"), &fields);
    assert_provenance(&cwd.join("strip.png"), &fields);
    // Deterministic DDIM: the same seed (and date) gives the same file.
    let first = std::fs::read(cwd.join("grid.png")).unwrap();
    ok(&muse_dated(
        cwd,
        1_700_000_000,
        &[
            "sample",
            "runs/d",
            "--n",
            "3",
            "--steps",
            "5",
            "--label",
            "1",
            "--guidance",
            "2",
            "-o",
            "grid.png",
        ],
    ));
    assert_eq!(first, std::fs::read(cwd.join("grid.png")).unwrap());
    // Full ancestral DDPM (T = 50), classes in turn.
    let out = ok(&muse(
        cwd,
        &[
            "sample",
            "runs/d",
            "--sampler",
            "ddpm",
            "--n",
            "2",
            "-o",
            "ddpm.png",
        ],
    ));
    assert!(out.contains("DDPM 50 steps"), "{out}");
    assert_provenance(
        &cwd.join("ddpm.png"),
        &[("Sampler", "ddpm"), ("Steps", "50"), ("Guidance", "3")],
    );

    let bad: [(&[&str], &str); 5] = [
        (&["--label", "2"], "unknown label"),
        (&["--steps", "0"], "--steps"),
        (&["--steps", "51"], "--steps"),
        (&["--sampler", "euler"], "unknown --sampler"),
        (&["--sampler", "ddpm", "--eta", "0.5"], "--eta"),
    ];
    for (flags, needle) in bad {
        let mut args = vec!["sample", "runs/d", "--n", "2", "-o", "x.png"];
        args.extend(flags);
        fails(&muse(cwd, &args), 2, needle);
    }
}

#[test]
fn unconditional_ddpm_refuses_labels_and_guidance() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let data = image_folder(cwd, false);
    train(cwd, "ddpm-mnist", &data, "runs/u");
    ok(&muse(
        cwd,
        &[
            "sample", "runs/u", "--n", "2", "--steps", "3", "-o", "u.png",
        ],
    ));
    let xmp = assert_provenance(&cwd.join("u.png"), &[("Steps", "3"), ("Model", "u")]);
    assert!(!xmp.contains("muse:Guidance"), "unconditional: {xmp}");
    fails(
        &muse(cwd, &["sample", "runs/u", "--n", "2", "--label", "1"]),
        2,
        "unconditional",
    );
    fails(
        &muse(cwd, &["sample", "runs/u", "--n", "2", "--guidance", "3"]),
        2,
        "unconditional",
    );
    // A conditional preset on unlabelled images, and an unknown preset.
    std::fs::write(cwd.join("tiny.toml"), TINY).unwrap();
    fails(
        &muse(
            cwd,
            &[
                "train",
                "diffusion",
                "--preset",
                "ddpm-mnist-cond",
                "--config",
                "tiny.toml",
                "--data",
                &data,
                "--out",
                "runs/c",
            ],
        ),
        2,
        "labelled",
    );
    fails(
        &muse(
            cwd,
            &[
                "train",
                "diffusion",
                "--preset",
                "ddpm-cifar",
                "--out",
                "runs/x",
            ],
        ),
        2,
        "unknown diffusion preset",
    );
}

#[test]
fn image_to_image_keeps_the_masked_pixels_and_checks_its_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let data = image_folder(cwd, false);
    train(cwd, "ddpm-mnist", &data, "runs/u");
    let init = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y * 3) as u8]));
    init.save(cwd.join("init.png")).unwrap();
    // Keep the left half (black), paint the right half (white).
    let mask = image::GrayImage::from_fn(8, 8, |x, _| image::Luma([if x < 4 { 0 } else { 255 }]));
    mask.save(cwd.join("mask.png")).unwrap();

    let out = ok(&muse(
        cwd,
        &[
            "sample",
            "runs/u",
            "--init",
            "init.png",
            "--mask",
            "mask.png",
            "--n",
            "3",
            "--nrow",
            "3",
            "--steps",
            "5",
            "-o",
            "inpainted.png",
        ],
    ));
    assert!(
        out.contains("inpainted from init.png at strength 1"),
        "{out}"
    );
    let grid = image::open(cwd.join("inpainted.png")).unwrap().to_luma8();
    let mut painted_differs = false;
    for k in 0..3u32 {
        // Image k of the grid starts at (2 + 10 k, 2): 8 pixels and 2 of padding.
        for y in 0..8 {
            for x in 0..8 {
                let got = grid.get_pixel(2 + 10 * k + x, 2 + y)[0];
                let want = init.get_pixel(x, y)[0];
                if x < 4 {
                    assert_eq!(got, want, "kept pixel ({x}, {y}) of image {k} changed");
                } else {
                    painted_differs |= got != want;
                }
            }
        }
    }
    assert!(painted_differs, "the white half was painted, not copied");
    assert_provenance(&cwd.join("inpainted.png"), &[("Family", "diffusion")]);

    let out = ok(&muse(
        cwd,
        &[
            "sample",
            "runs/u",
            "--init",
            "init.png",
            "--strength",
            "0.5",
            "--n",
            "2",
            "--steps",
            "4",
            "-o",
            "sdedit.png",
        ],
    ));
    assert!(
        out.contains("redrawn from init.png at strength 0.5"),
        "{out}"
    );
    assert_provenance(&cwd.join("sdedit.png"), &[("Steps", "4")]);

    image::GrayImage::new(16, 16)
        .save(cwd.join("big.png"))
        .unwrap();
    image::RgbImage::from_fn(8, 8, |x, _| image::Rgb([x as u8 * 30, 0, 0]))
        .save(cwd.join("red.png"))
        .unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([128]))
        .save(cwd.join("grey.png"))
        .unwrap();
    let bad: [(&[&str], &str); 7] = [
        (&["--init", "big.png"], "is 16x16 and this model makes 8x8"),
        (&["--init", "red.png"], "has colour"),
        (
            &["--init", "init.png", "--mask", "grey.png"],
            "is grey (128)",
        ),
        (&["--mask", "mask.png"], "--mask needs --init"),
        (&["--strength", "0.5"], "--strength needs --init"),
        (
            &["--init", "init.png", "--strength", "1.5"],
            "must be in (0, 1]",
        ),
        (&["--init", "runs"], "is a folder"),
    ];
    for (flags, needle) in bad {
        let mut args = vec![
            "sample", "runs/u", "--n", "2", "--steps", "3", "-o", "x.png",
        ];
        args.extend(flags);
        fails(&muse(cwd, &args), 2, needle);
    }
}
