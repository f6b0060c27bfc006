//! Counters for `GET /metrics`, in the Prometheus text format: requests by route and status,
//! prompt tokens read and tokens generated, images generated, the continuous batch's steps
//! and the choices they advanced, jobs waiting in the engine's queue, and histograms of the time to first token and of the time between tokens.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server's counters, shared by the handlers and the engine.
#[derive(Default)]
pub struct Metrics {
    /// (route, status) -> requests answered.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    tokens_in: AtomicU64,
    /// Prompt tokens whose cache was copied from an earlier prompt's shared start.
    tokens_in_reused: AtomicU64,
    tokens_out: AtomicU64,
    images: AtomicU64,
    /// Turns of the continuous batch: one forward pass of one text model.
    batch_steps: AtomicU64,
    /// Choices those turns advanced (divided by the turns: the mean batch size).
    batch_choices: AtomicU64,
    /// From the request's arrival to its first generated token (queueing included).
    pub first_token: Histogram,
    /// Between consecutive tokens of one request.
    pub per_token: Histogram,
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A Prometheus histogram of durations.
#[derive(Default)]
pub struct Histogram {
    /// Observations at or below each bound of [`BUCKETS`] (not cumulative).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
    }
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((route.to_string(), status)).or_default() += 1;
    }

    pub fn add_prompt_tokens(&self, n: usize) {
        self.tokens_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The text models' running total of prompt tokens copied instead of computed.
    pub fn set_prompt_tokens_reused(&self, total: u64) {
        self.tokens_in_reused.store(total, Ordering::Relaxed);
    }

    pub fn add_tokens(&self, n: u64) {
        self.tokens_out.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_images(&self, n: usize) {
        self.images.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One turn of the continuous batch that advanced `choices` choices of one model.
    pub fn add_batch_step(&self, choices: usize) {
        self.batch_steps.fetch_add(1, Ordering::Relaxed);
        self.batch_choices
            .fetch_add(choices as u64, Ordering::Relaxed);
    }

    /// Choices advanced per turn so far (0 before the first turn).
    pub fn mean_batch(&self) -> f64 {
        let (steps, choices) = self.batch_totals();
        choices as f64 / steps.max(1) as f64
    }

    /// (turns, choices advanced) so far.
    pub fn batch_totals(&self) -> (u64, u64) {
        (
            self.batch_steps.load(Ordering::Relaxed),
            self.batch_choices.load(Ordering::Relaxed),
        )
    }

    /// The Prometheus exposition text.
    pub fn render(&self, queued: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP muse_requests_total HTTP requests answered, by route and status.\n\
             # TYPE muse_requests_total counter"
        );
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, status), n) in map.iter() {
            let _ = writeln!(
                out,
                "muse_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        drop(map);
        let counters = [
            (
                "muse_prompt_tokens_total",
                "Prompt tokens read by text models.",
                "counter",
                self.tokens_in.load(Ordering::Relaxed),
            ),
            (
                "muse_prompt_tokens_reused_total",
                "Prompt tokens whose keys and values were copied from an earlier prompt that \
                 starts the same way, not computed.",
                "counter",
                self.tokens_in_reused.load(Ordering::Relaxed),
            ),
            (
                "muse_tokens_generated_total",
                "Tokens generated by text models.",
                "counter",
                self.tokens_out.load(Ordering::Relaxed),
            ),
            (
                "muse_images_generated_total",
                "Images generated by image models.",
                "counter",
                self.images.load(Ordering::Relaxed),
            ),
            (
                "muse_batch_steps_total",
                "Token steps of text models, one forward pass each (continuous batching).",
                "counter",
                self.batch_steps.load(Ordering::Relaxed),
            ),
            (
                "muse_batch_choices_total",
                "Choices advanced by those steps; divided by the steps, the mean batch size.",
                "counter",
                self.batch_choices.load(Ordering::Relaxed),
            ),
            (
                "muse_queue_depth",
                "Jobs waiting for the engine.",
                "gauge",
                queued as u64,
            ),
        ];
        for (name, help, kind, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        self.first_token.render(
            &mut out,
            "muse_time_to_first_token_seconds",
            "From a text request's arrival to its first token.",
        );
        self.per_token.render(
            &mut out,
            "muse_time_per_token_seconds",
            "Between consecutive tokens of a text request.",
        );
        out
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
