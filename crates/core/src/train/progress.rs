//! A progress bar for long loops whose log lines still print when stderr is not a terminal.

use std::time::Duration;

use indicatif::{HumanDuration, ProgressBar, ProgressState, ProgressStyle};

/// Steps to time before an estimate is shown: the first step carries the start-up work
/// (the step-0 evaluation, allocation), which made a 2-minute run first say "eta 2h".
const ETA_AFTER_STEPS: u64 = 3;

/// A step counter with a bar on terminals and plain log lines everywhere.
pub struct Progress {
    bar: ProgressBar,
    start: u64,
}

impl Progress {
    /// A bar over `total` steps starting at `start`, labelled `what`.
    pub fn new(what: &str, start: u64, total: u64) -> Self {
        let bar = ProgressBar::new(total);
        let eta = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&eta_text(state.pos() - start.min(state.pos()), state.eta()));
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta_after_warmup} {msg}",
            )
            .expect("the template is valid")
            .with_key("eta_after_warmup", eta)
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar.set_position(start);
        bar.enable_steady_tick(Duration::from_millis(250));
        Self { bar, start }
    }

    /// Advances the bar to `pos` completed steps.
    pub fn set(&self, pos: u64) {
        self.bar.set_position(pos);
        if pos == self.start + 1 {
            // Forget the start-up time so the estimate follows the steady step time.
            self.bar.reset_eta();
        }
    }

    /// A short status after the counter (current loss, say).
    pub fn message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Prints one line above the bar (or plainly, without a terminal), on stderr.
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The remaining time as shown after `done` steps of this session: "…" until
/// [`ETA_AFTER_STEPS`] steps have been timed.
fn eta_text(done: u64, eta: Duration) -> String {
    if done < ETA_AFTER_STEPS {
        "…".to_string()
    } else {
        format!("{:#}", HumanDuration(eta))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_estimate_before_three_timed_steps() {
        let long = Duration::from_secs(7200);
        assert_eq!(eta_text(0, long), "…");
        assert_eq!(eta_text(2, long), "…");
        assert_eq!(eta_text(3, Duration::from_secs(125)), "2m");
    }
}
