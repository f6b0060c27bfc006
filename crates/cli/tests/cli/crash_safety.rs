//! Fault injection (gpt, vae, gan, classifier, diffusion, finetune, align): a training is killed with SIGKILL at random moments and resumed with the
//! same command plus `--resume`, again and again, until it finishes. Every checkpoint found on
//! disk after a kill must be readable, and the finished run must equal an uninterrupted one:
//! the same weight and optimizer tensors, bit for bit, and the same metrics (timings aside).
//!
//! CI runs a few kills per family; `MUSE_CRASH_KILLS=20 cargo test --release -p muse --test cli
//! crash_safety -- --nocapture` runs the full harness and prints each family's tally.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::dataset;

/// Kills per family: `MUSE_CRASH_KILLS`, else 3.
fn kills() -> usize {
    std::env::var("MUSE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// `muse ARGS` in `cwd`, its log (stderr) going to `cwd/log.txt`: a pipe nobody reads while
/// the run goes on would fill and stall it.
fn command(cwd: &Path, args: &[String]) -> Command {
    let log = std::fs::File::create(cwd.join("log.txt")).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_muse"));
    c.args(args)
        .current_dir(cwd)
        .env("MUSE_THREADS", "1")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log);
    c
}

fn log(cwd: &Path) -> String {
    std::fs::read_to_string(cwd.join("log.txt")).unwrap_or_default()
}

/// Each tensor's header entry (dtype, shape) and bytes, by name, and the metadata: what a
/// safetensors file holds, whatever order its writer put the header keys in.
fn tensors(path: &Path) -> std::collections::BTreeMap<String, (serde_json::Value, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, entry)| {
            let raw = match entry.get("data_offsets") {
                Some(o) => {
                    let (a, b) = (o[0].as_u64().unwrap(), o[1].as_u64().unwrap());
                    data[a as usize..b as usize].to_vec()
                }
                None => Vec::new(),
            };
            (name.clone(), (entry.clone(), raw))
        })
        .collect()
}

/// A safetensors file whose header parses and whose tensors all lie inside the file.
fn readable_safetensors(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let n = u64::from_le_bytes(
        bytes
            .get(..8)
            .ok_or("shorter than 8 bytes")?
            .try_into()
            .unwrap(),
    );
    let header = bytes
        .get(8..8 + n as usize)
        .ok_or_else(|| format!("{}: header cut off", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(header)
        .map_err(|e| format!("{}: header is not JSON: {e}", path.display()))?;
    let end = v
        .as_object()
        .unwrap()
        .values()
        .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if 8 + n + end != bytes.len() as u64 {
        return Err(format!("{}: tensors do not fill the file", path.display()));
    }
    Ok(())
}

/// After a kill: if a checkpoint is there, each of its files reads.
fn checkpoint_readable(run: &Path) -> Result<bool, String> {
    let state = run.join("state.json");
    if !state.is_file() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&state).map_err(|e| e.to_string())?;
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("state.json does not parse: {e}"))?;
    readable_safetensors(&run.join("model.safetensors"))?;
    readable_safetensors(&run.join("optimizer.safetensors"))?;
    Ok(true)
}

/// metrics.jsonl without the timing fields, which differ between any two runs.
fn metrics_without_timings(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| !(k == "ms" || k.ends_with("_per_s")));
            v
        })
        .collect()
}

/// A small deterministic stream of kill delays (xorshift), so a failure can be replayed.
struct Delays(u64);

impl Delays {
    fn next(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        max.mul_f64((self.0 % 1000) as f64 / 1000.0)
    }
}

/// Runs `args` once straight into `straight/`, then into `killed/` with `kills` SIGKILLs at
/// random moments and `--resume` after each, and checks the two runs are equal.
fn kill_and_resume(family: &str, args: &[&str], seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let with_out = |out: &str, resume: bool| -> Vec<String> {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(["--out".into(), out.into()]);
        if resume {
            a.push("--resume".into());
        }
        a
    };
    // The straight run, timing its start-up (until the first log line) and the whole.
    let t0 = Instant::now();
    let mut child = command(cwd, &with_out("straight", false)).spawn().unwrap();
    let mut startup = None;
    let status = loop {
        if startup.is_none() && cwd.join("straight/metrics.jsonl").is_file() {
            startup = Some(t0.elapsed());
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "{}", log(cwd));
    let duration = t0.elapsed();
    let startup = startup.unwrap_or_default();

    let mut delays = Delays(seed);
    let (mut killed, mut readable, mut attempts) = (0, 0, 0);
    let mut resume = false;
    loop {
        attempts += 1;
        assert!(
            attempts < 10 * kills() + 10,
            "{family}: the run never finished"
        );
        let mut child = command(cwd, &with_out("killed", resume)).spawn().unwrap();
        // Anywhere in the start-up or the next 2/kills() of the training: each start gets
        // about 1/kills() of the work done on average, so the kills land all along the run.
        let window = startup + (duration - startup).mul_f64(2.0 / kills() as f64);
        let deadline = Instant::now() + delays.next(window);
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if killed < kills() && Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match finished {
            Some(status) => {
                assert!(
                    status.success(),
                    "{family}: a resumed run failed:\n{}",
                    log(cwd)
                );
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                killed += 1;
                match checkpoint_readable(&cwd.join("killed")) {
                    Ok(true) => readable += 1,
                    Ok(false) => {}
                    Err(e) => {
                        panic!("{family}: after kill {killed}, an unreadable checkpoint: {e}")
                    }
                }
                resume = cwd.join("killed/training.json").is_file();
            }
        }
    }
    let (a, b) = (cwd.join("straight"), cwd.join("killed"));
    for f in ["model.safetensors", "optimizer.safetensors"] {
        assert!(
            tensors(&a.join(f)) == tensors(&b.join(f)),
            "{family}: {f} differs from the uninterrupted run's after {killed} kills"
        );
    }
    assert_eq!(
        metrics_without_timings(&a),
        metrics_without_timings(&b),
        "{family}: metrics differ after {killed} kills"
    );
    eprintln!(
        "{family}: {killed} kills ({readable} with a checkpoint on disk, all readable), \
         {attempts} starts, {:.2} s uninterrupted; weights, moments and metrics equal the \
         uninterrupted run's",
        duration.as_secs_f64()
    );
}

fn corpus(name: &str, file: &str) -> String {
    dataset(name).join(file).display().to_string()
}

#[test]
fn crash_safety_gpt() {
    let data = corpus("tinyshakespeare", "input.txt");
    #[rustfmt::skip]
    let args = [
        "train", "gpt", "--data", &data, "--max-steps", "1500",
        "--set", "n_layer=1", "--set", "n_embd=32", "--set", "n_head=2",
        "--set", "n_positions=32", "--set", "batch_size=8", "--set", "dropout=0.1",
        "--set", "eval_interval=50", "--set", "eval_iters=2", "--set", "log_interval=1",
        "--set", "sample_interval=100", "--set", "sample.tokens=16",
    ];
    kill_and_resume("gpt", &args, 1);
}

#[test]
fn crash_safety_vae() {
    #[rustfmt::skip]
    let args = [
        "train", "vae", "--max-steps", "4000", "--set", "hidden=32", "--set", "latent=4",
        "--set", "batch_size=32", "--set", "train_limit=2048", "--set", "test_limit=128",
        "--set", "eval_interval=100", "--set", "log_interval=1", "--set", "sample_interval=1000",
    ];
    kill_and_resume("vae", &args, 2);
}

#[test]
fn crash_safety_gan() {
    #[rustfmt::skip]
    let args = [
        "train", "gan", "--no-classifier", "--max-steps", "600", "--set", "g_channels=8",
        "--set", "d_channels=8", "--set", "z_dim=8", "--set", "batch_size=16",
        "--set", "train_limit=1024", "--set", "test_limit=64", "--set", "eval_interval=25",
        "--set", "log_interval=1", "--set", "sample_interval=50", "--set", "grid_size=4",
    ];
    kill_and_resume("gan", &args, 3);
}

#[test]
fn crash_safety_classifier() {
    #[rustfmt::skip]
    let args = [
        "train", "classifier", "--max-steps", "400", "--set", "conv1=4", "--set", "conv2=4",
        "--set", "hidden=16", "--set", "batch_size=32", "--set", "train_limit=2048",
        "--set", "test_limit=128", "--set", "eval_interval=20", "--set", "log_interval=1",
    ];
    kill_and_resume("classifier", &args, 4);
}

#[test]
fn crash_safety_diffusion() {
    #[rustfmt::skip]
    let args = [
        "train", "diffusion", "--max-steps", "300", "--set", "timesteps=50",
        "--set", "model.channels=[8, 8, 8]", "--set", "time_dim=8", "--set", "temb_dim=16",
        "--set", "groups=4", "--set", "heads=2", "--set", "batch_size=8",
        "--set", "data.image_size=8", "--set", "train_limit=512", "--set", "test_limit=8",
        "--set", "eval_interval=25", "--set", "log_interval=1", "--set", "sample_interval=100",
        "--set", "sample.n=4", "--set", "sample.steps=3",
    ];
    kill_and_resume("diffusion", &args, 5);
}

/// The committed tiny GPT-2 folder, the base of the tuning runs.
fn tiny_gpt2() -> String {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures/hf/gpt2")
        .display()
        .to_string()
}

#[test]
fn crash_safety_finetune() {
    let base = tiny_gpt2();
    #[rustfmt::skip]
    let args = [
        "finetune", &base, "--data", "instructions", "--max-steps", "300",
        "--set", "batch_size=4", "--set", "eval_interval=5", "--set", "eval_iters=2",
        "--set", "log_interval=1", "--set", "model_dropout=0.1",
    ];
    kill_and_resume("finetune", &args, 6);
}

#[test]
fn crash_safety_align() {
    let base = tiny_gpt2();
    #[rustfmt::skip]
    let args = [
        "align", &base, "--dpo", "hh-rlhf", "--max-steps", "200",
        "--set", "batch_size=2", "--set", "eval_interval=5", "--set", "eval_iters=2",
        "--set", "log_interval=1", "--set", "model_dropout=0.1",
    ];
    kill_and_resume("align", &args, 7);
}
