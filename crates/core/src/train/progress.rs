//! A progress bar for long loops whose log lines still print when stderr is not a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A step counter with a bar on terminals and plain log lines everywhere.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `total` steps starting at `start`, labelled `what`.
    pub fn new(what: &str, start: u64, total: u64) -> Self {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar.set_position(start);
        bar.enable_steady_tick(Duration::from_millis(250));
        Self { bar }
    }

    /// Advances the bar to `pos` completed steps.
    pub fn set(&self, pos: u64) {
        self.bar.set_position(pos);
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

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
