//! `muse audit` and the model card through the binary: a tiny character model's card states
//! its data, configuration, use and labelling; the audit finds short spans it shares with its
//! training text, writes its section into the card (replaced on rerun), and bad inputs are
//! clear errors.

use crate::common::{muse, text};

#[test]
fn audit_a_text_run_and_read_its_card() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(crate::gpt::train(dir, &[]).status.success());
    let card = std::fs::read_to_string(dir.join("run/MODEL_CARD.md")).unwrap();
    for heading in [
        "## Data",
        "## Configuration",
        "## Intended use",
        "## Limits",
        "## Outputs and labelling",
    ] {
        assert!(card.contains(heading), "{heading} missing:\n{card}");
    }
    assert!(
        card.contains("sha256 `") && card.contains("licence"),
        "{card}"
    );
    assert!(card.contains("--watermark-key"), "{card}");

    // Spans of 3 characters: a character model trained 3 steps still reuses many.
    let args = [
        "audit",
        "run",
        "--samples",
        "2",
        "--max-tokens",
        "60",
        "--span",
        "3",
    ];
    let o = muse(dir, &[&args[..], &["--json"]].concat());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["kind"], "text");
    assert_eq!(v["generated"]["texts"], 2);
    assert!(v["generated"]["copied"].as_u64().unwrap() > 0, "{v}");
    assert!(v["validation"]["copied"].as_u64().unwrap() > 0, "{v}");
    let card = std::fs::read_to_string(dir.join("run/MODEL_CARD.md")).unwrap();
    assert_eq!(card.matches("## Memorisation audit").count(), 1, "{card}");
    // A rerun replaces the section and keeps the rest.
    assert!(muse(dir, &args).status.success());
    let again = std::fs::read_to_string(dir.join("run/MODEL_CARD.md")).unwrap();
    assert_eq!(again.matches("## Memorisation audit").count(), 1);
    assert!(again.contains("## Intended use"));

    let o = muse(dir, &["audit", "run", "--samples", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--samples"), "{}", text(&o).1);
    std::fs::create_dir(dir.join("empty")).unwrap();
    let o = muse(dir, &["audit", "empty"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not a Muse run") && !err.contains("panicked"),
        "{err}"
    );
}
