//! `muse chat`: lines in, streamed replies out, `/reset` and `/exit`, the oldest turns dropped
//! when the context fills, the AI-generated label, and bad flags.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::common::text;

/// The tiny random GPT-2 folder of the core tests (context 64).
fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/hf/gpt2")
}

fn chat(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_muse"))
        .arg("chat")
        .arg(model())
        .args(args)
        .env("MUSE_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn replies_stream_reset_and_exit() {
    let out = chat(
        &["--max-tokens", "8", "--system", "Be brief."],
        "Hello\n/reset\nHi again\n/exit\nignored\n",
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("AI-generated"), "{stderr}");
    assert!(stderr.contains("[conversation cleared]"), "{stderr}");
    assert_eq!(stdout.matches("ai> ").count(), 2, "{stdout}");
}

#[test]
fn a_full_context_drops_the_oldest_turns() {
    let out = chat(
        &["--max-tokens", "20", "--temperature", "0"],
        "Hello there, how are you today?\nAnd what about tomorrow?\nTell me a story.\n",
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("[dropped the"), "{stderr}");
    assert_eq!(stdout.matches("ai> ").count(), 3, "{stdout}");
    // A message that cannot fit is refused, and the chat goes on.
    let long = "word ".repeat(60);
    let out = chat(&["--max-tokens", "20"], &format!("{long}\nHi\n"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("shorter message"), "{stderr}");
    // No empty `ai>` line for the refused message.
    assert_eq!(stdout.matches("ai> ").count(), 1, "{stdout}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = chat(&["--max-tokens", "0"], "");
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let out = chat(&["--max-tokens", "64"], "");
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("no room"));
    let out = chat(&["--template", "nope"], "");
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}
