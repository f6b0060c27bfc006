//! `muse serve` through the binary: it names its models, listens, answers HTTP, stops cleanly
//! on SIGTERM, and refuses bad starts with usage errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{muse, text};

/// The tiny random GPT-2 folder of the core tests (context 64).
fn gpt2() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/hf/gpt2")
}

/// A running `muse serve ARGS` (with `--port 0` added unless given) and the address it printed.
pub struct Running {
    pub child: Child,
    pub addr: String,
    /// What it printed on stderr up to "listening on".
    pub banner: String,
}

/// Starts `muse ARGS` in `cwd` and waits until it listens; panics with its output if it exits
/// first.
pub fn start(cwd: &Path, args: &[String]) -> Running {
    let mut args = args.to_vec();
    match args.iter().position(|a| a == "--port") {
        Some(i) => args[i + 1] = "0".into(),
        None => args.extend(["--port".into(), "0".into()]),
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_muse"))
        .args(&args)
        .current_dir(cwd)
        .env("MUSE_THREADS", "1")
        .env("NO_COLOR", "1")
        .env_remove("MUSE_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the muse binary runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    let Some(addr) = read_address(&mut stderr, &mut banner) else {
        let status = child.wait().unwrap();
        panic!(
            "muse {} exited ({status}) before listening:\n{banner}",
            args.join(" ")
        );
    };
    // Keep draining stderr so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    });
    Running {
        child,
        addr,
        banner,
    }
}

/// Reads stderr lines into `banner` until "listening on http://ADDR"; `None` at its end.
fn read_address(stderr: &mut impl BufRead, banner: &mut String) -> Option<String> {
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        banner.push_str(&line);
        if let Some(rest) = line.split("listening on http://").nth(1) {
            return rest.split_whitespace().next().map(str::to_string);
        }
    }
}

impl Running {
    /// SIGTERM, then the exit status (the server finishes what is in flight and exits 0).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        self.child.wait().unwrap()
    }

    /// One HTTP/1.1 request; the raw response.
    pub fn http(&self, method: &str, path: &str, headers: &str, body: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: muse\r\nConnection: close\r\n{headers}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

#[test]
fn serves_over_http_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["serve", &gpt2().display().to_string(), "--api-key", "k"]
        .map(String::from)
        .to_vec();
    let server = start(tmp.path(), &args);
    assert!(
        server.banner.contains("serving gpt2 (text)"),
        "{}",
        server.banner
    );
    assert!(server.banner.contains("127.0.0.1:"), "{}", server.banner);
    assert!(
        server.banner.contains("API key required"),
        "{}",
        server.banner
    );
    let health = server.http("GET", "/health", "", "");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let denied = server.http("GET", "/v1/models", "", "");
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let body = r#"{"model": "gpt2", "prompt": "Hi", "max_tokens": 3, "stream": true}"#;
    let streamed = server.http(
        "POST",
        "/v1/completions",
        "Authorization: Bearer k\r\n",
        body,
    );
    assert!(streamed.starts_with("HTTP/1.1 200"), "{streamed}");
    assert!(streamed.contains("data: [DONE]"), "{streamed}");
    let status = server.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_starts_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let out = muse(cwd, &["serve"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let model = gpt2().display().to_string();
    let out = muse(cwd, &["serve", &model, &model]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("both be served as 'gpt2'"),
        "{:?}",
        text(&out)
    );
    let out = muse(cwd, &["serve", "no-such-folder"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let stderr = text(&out).1;
    assert!(!stderr.contains("panicked"));
    assert!(
        stderr.contains("no-such-folder: no such file or folder"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, no repeated cause: {stderr}"
    );
}
