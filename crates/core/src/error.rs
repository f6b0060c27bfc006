//! The error type of `muse-core`.
//!
//! Every message says what went wrong and, where the user can act, what to do next. The CLI
//! maps [`Error::Usage`] to exit code 2 and everything else to exit code 1.

use std::path::{Path, PathBuf};

/// Errors raised outside the numeric layers (`nn`, `models` return `candle_core::Result`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or a config asked for something that does not exist or cannot work
    /// (unknown preset, unknown `--set` key, `--max-tokens 0`, ...).
    #[error("{0}")]
    Usage(String),
    /// A file or dataset the user gave is missing, empty, malformed or inconsistent.
    #[error("{0}")]
    Input(String),
    /// An I/O failure on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A download failed or did not verify.
    #[error("{0}")]
    Network(String),
    /// The user pressed Ctrl-C; the last checkpoint was saved.
    #[error("interrupted")]
    Interrupted,
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A usage error (exit code 2).
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// An error in user-supplied data or files (exit code 1).
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    /// Wraps an `io::Error` with the path it happened on: `.map_err(Error::io(path))`.
    pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io { path, source }
    }

    /// A model file that failed to load, as an input error whose message is the same with or
    /// without `RUST_BACKTRACE` (candle appends a backtrace to its errors when it is set).
    pub fn model_load(e: candle_core::Error) -> Self {
        fn strip(e: candle_core::Error) -> candle_core::Error {
            match e {
                candle_core::Error::WithBacktrace { inner, .. } => strip(*inner),
                other => other,
            }
        }
        Error::Input(strip(e).to_string())
    }

    /// True for errors caused by how the tool was invoked (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_))
    }
}
