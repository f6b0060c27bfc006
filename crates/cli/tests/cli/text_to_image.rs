//! Text-to-image through the binary: a tiny t2i-mnist run trains on tinted, captioned digits,
//! samples from a prompt (deterministically), is evaluated per prompt split, and every bad
//! input is a clear error (exit 2, never a panic).

use std::path::Path;
use std::process::Output;

use crate::common::{assert_provenance, dataset, fails, muse, muse_dated, ok};

/// A tiny U-Net on 8x8 digits, T = 50, three steps of batch 8.
const TINY: &str = "timesteps = 50\n\
    [model]\nchannels = [8, 8, 8]\ntime_dim = 8\ntemb_dim = 16\ngroups = 4\nheads = 2\n\
    [train]\nmax_steps = 3\nbatch_size = 8\nlog_interval = 1\neval_interval = 3\n\
    sample_interval = 3\n\
    [data]\nimage_size = 8\ntrain_limit = 64\ntest_limit = 8\n\
    [sample]\nn = 20\nnrow = 10\nsteps = 2\n";

fn train(cwd: &Path, preset: &str, out: &str, extra: &[&str]) -> Output {
    std::fs::write(cwd.join("tiny.toml"), TINY).unwrap();
    let mnist = dataset("mnist").display().to_string();
    let mut args = vec![
        "train",
        "diffusion",
        "--preset",
        preset,
        "--config",
        "tiny.toml",
        "--data",
        &mnist,
        "--out",
        out,
    ];
    args.extend(extra);
    muse(cwd, &args)
}

#[test]
fn text_to_image_trains_samples_from_a_prompt_and_checks_its_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let encoder = dataset("all-minilm-l6-v2").display().to_string();
    let enc = format!("text.encoder={encoder}");
    ok(&train(cwd, "t2i-mnist", "runs/t", &["--set", &enc]));
    assert_provenance(
        &cwd.join("runs/t/samples/step_000003.png"),
        &[("Family", "text-to-image"), ("TrainingStep", "3")],
    );
    let sample = |out: &str| {
        muse_dated(
            cwd,
            1_700_000_000,
            &[
                "sample",
                "runs/t",
                "--prompt",
                "a digit 3 in green",
                "--n",
                "2",
                "--steps",
                "3",
                "-o",
                out,
            ],
        )
    };
    let said = ok(&sample("a.png"));
    assert!(said.contains("a digit 3 in green"), "{said}");
    ok(&sample("b.png"));
    let (a, b) = (
        std::fs::read(cwd.join("a.png")).unwrap(),
        std::fs::read(cwd.join("b.png")).unwrap(),
    );
    assert_eq!(a, b, "the same seed draws the same picture");
    assert_provenance(
        &cwd.join("a.png"),
        &[
            ("Model", "t"),
            ("Family", "text-to-image"),
            ("Prompt", "a digit 3 in green"),
            ("Steps", "3"),
            ("Guidance", "4"),
        ],
    );
    // Without a prompt: one per class and colour, a row per colour.
    let said = ok(&muse(
        cwd,
        &[
            "sample", "runs/t", "--n", "20", "--steps", "2", "-o", "grid.png",
        ],
    ));
    assert!(said.contains("a column per class"), "{said}");
    let xmp = assert_provenance(&cwd.join("grid.png"), &[("Steps", "2")]);
    assert!(
        !xmp.contains("muse:Prompt"),
        "a prompt per cell, none for the grid"
    );
    // Evaluation needs the reference classifier, and says how to train it.
    fails(
        &muse(cwd, &["eval", "runs/t", "--samples", "4", "--steps", "2"]),
        1,
        "muse train classifier",
    );

    let bad: [(&[&str], &str); 4] = [
        (&["--label", "3"], "--prompt"),
        (&["--prompt", " "], "--prompt is empty"),
        (
            &["--prompt", "a red digit 1", "--max-tokens", "3"],
            "--max-tokens",
        ),
        (
            &["--prompt", "a red digit 1", "--guidance", "nan"],
            "--guidance",
        ),
    ];
    for (flags, needle) in bad {
        let mut args = vec![
            "sample", "runs/t", "--n", "2", "--steps", "2", "-o", "x.png",
        ];
        args.extend(flags);
        fails(&muse(cwd, &args), 2, needle);
    }

    // --prompt for models that do not read text.
    ok(&train(cwd, "ddpm-mnist-cond", "runs/c", &[]));
    fails(
        &muse(
            cwd,
            &["sample", "runs/c", "--prompt", "a red digit 1", "--n", "2"],
        ),
        2,
        "--label",
    );
    ok(&train(cwd, "ddpm-mnist", "runs/u", &[]));
    fails(
        &muse(
            cwd,
            &["sample", "runs/u", "--prompt", "a red digit 1", "--n", "2"],
        ),
        2,
        "not trained on text",
    );

    // A text encoder that is missing, or not an encoder.
    let missing = cwd.join("no-such-encoder").display().to_string();
    fails(
        &train(
            cwd,
            "t2i-mnist",
            "runs/m",
            &["--set", &format!("text.encoder={missing}")],
        ),
        1,
        "no text encoder",
    );
    assert!(
        !cwd.join("runs/m").exists(),
        "nothing is written before the encoder opens"
    );
    let not_bert = cwd.join("runs/u").display().to_string();
    fails(
        &train(
            cwd,
            "t2i-mnist",
            "runs/w",
            &["--set", &format!("text.encoder={not_bert}")],
        ),
        1,
        "bert",
    );
    // Text needs the tinted, captioned data.
    fails(
        &train(
            cwd,
            "t2i-mnist",
            "runs/n",
            &["--set", &enc, "--set", "tint=false"],
        ),
        2,
        "tint=true",
    );
}
