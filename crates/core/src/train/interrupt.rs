//! Ctrl-C: the binary installs a handler that calls [`request_stop`]; training loops poll
//! [`stop_requested`] once per step, save a checkpoint and return [`crate::Error::Interrupted`].

use std::sync::atomic::{AtomicBool, Ordering};

use super::progress::Progress;
use crate::error::{Error, Result};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the running loop to checkpoint and stop after the current step.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// True once a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The loops' once-a-step check: after a stop request, `save` writes a checkpoint, the
/// progress bar says how to go on, and the loop gets [`Error::Interrupted`] to return.
pub fn checkpoint_on_stop(
    step: u64,
    progress: &Progress,
    save: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if !stop_requested() {
        return Ok(());
    }
    save()?;
    progress.println(&format!(
        "interrupted: checkpoint saved at step {step}; continue with --resume"
    ));
    Err(Error::Interrupted)
}
