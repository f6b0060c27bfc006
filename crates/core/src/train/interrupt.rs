//! Ctrl-C: the binary installs a handler that calls [`request_stop`]; training loops poll
//! [`stop_requested`] once per step, save a checkpoint and return [`crate::Error::Interrupted`].

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the running loop to checkpoint and stop after the current step.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// True once a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
