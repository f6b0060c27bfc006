//! Datasets: a registry of named datasets, finding them on disk, downloading and verifying.
//!
//! Lookup order for a dataset named `NAME` (after an explicit `--data PATH`, which callers
//! handle through [`resolve_text_corpus`]):
//!
//! 1. `$MUSE_DATA_DIR/NAME/` (tests and CI point it at the shared data folder),
//! 2. the user cache dir, `$MUSE_CACHE_DIR/datasets/NAME/` or `~/.cache/muse/datasets/NAME/`,
//! 3. a download into the cache dir from the canonical URL, checked against the registered
//!    sha256 ([`fetch()`], [`dataset_dir`]).
//!
//! A folder counts as present when every registered file has the registered size;
//! [`verify()`] recomputes the sha256 sums.

mod catalog;
mod fetch;
mod locate;
mod registry;
mod text;
mod verify;

// Token streams cut into training and evaluation windows.
pub mod text_splits;
pub mod windows;
// Image datasets (IDX, PNG/JPEG folders), seeded epoch batches and PNG grids.
pub mod images;
// Tinted, captioned images for text-to-image training.
pub mod captions;
// Fine-tuning and alignment data: instruction and preference JSONL files.
pub mod instructions;
pub mod jsonl;
// Sentence pairs for translation and their fixed split.
pub mod parallel;
pub mod preferences;

pub use fetch::{fetch, fetch_into};
pub use locate::{
    Origin, Presence, SearchDir, cache_root, dataset_dir, dataset_dir_in, locate, locate_in,
    missing_message, problem, search_dirs,
};
pub use registry::{
    DatasetKind, DatasetSpec, RemoteFile, known_names, registry, require_spec, spec,
    unknown_dataset,
};
pub use text::{TextSource, read_text, resolve_text_corpus, resolve_text_corpus_in};
pub use verify::{FileCheck, FileStatus, Verification, sha256_file, verify, verify_dir};
