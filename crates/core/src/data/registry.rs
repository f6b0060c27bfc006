//! The dataset registry: what a named dataset is made of and where each file comes from.
//!
//! A [`DatasetSpec`] lists its files with the canonical download URL, byte size and sha256, so
//! a copy found on disk can be checked and a missing one fetched and verified. The table itself
//! lives in `catalog.rs`; this file holds the types and the lookups.

use serde::Serialize;

use crate::error::Error;

/// What a dataset holds, which decides the commands it can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// Plain UTF-8 text for language modelling (usable as `--data NAME`).
    Text,
    /// Labelled images (IDX files).
    Images,
    /// Aligned sentence pairs for translation.
    Pairs,
    /// Instruction / response rows for supervised fine-tuning.
    Instructions,
    /// Chosen / rejected pairs for preference alignment.
    Preferences,
    /// Tokenizer vocabularies and merges.
    Tokenizer,
    /// Pretrained weights (with their tokenizer).
    Model,
}

impl DatasetKind {
    /// The lowercase name shown by `muse data list`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetKind::Text => "text",
            DatasetKind::Images => "images",
            DatasetKind::Pairs => "pairs",
            DatasetKind::Instructions => "instructions",
            DatasetKind::Preferences => "preferences",
            DatasetKind::Tokenizer => "tokenizer",
            DatasetKind::Model => "model",
        }
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file of a dataset, relative to the dataset's folder.
#[derive(Debug, Serialize)]
pub struct RemoteFile {
    /// Path inside the dataset folder, `/`-separated (may contain subfolders).
    pub path: &'static str,
    /// Canonical public URL serving exactly these bytes; `None` when no such URL exists.
    pub url: Option<&'static str>,
    /// Lowercase hex sha256 of the file.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// For files without a URL: where to get them and how to rebuild the exact bytes.
    pub note: Option<&'static str>,
}

impl RemoteFile {
    /// A file that `muse data fetch` can download.
    pub const fn remote(
        path: &'static str,
        url: &'static str,
        sha256: &'static str,
        size: u64,
    ) -> Self {
        RemoteFile {
            path,
            url: Some(url),
            sha256,
            size,
            note: None,
        }
    }

    /// A file with no public URL serving its exact bytes; `note` tells the user where to get it.
    pub const fn manual(
        path: &'static str,
        note: &'static str,
        sha256: &'static str,
        size: u64,
    ) -> Self {
        RemoteFile {
            path,
            url: None,
            sha256,
            size,
            note: Some(note),
        }
    }
}

/// A named dataset: a folder `NAME/` holding `files`.
#[derive(Debug, Serialize)]
pub struct DatasetSpec {
    /// Registry name, also the folder name under `$MUSE_DATA_DIR` and the cache dir.
    pub name: &'static str,
    /// One line saying what it is.
    pub description: &'static str,
    /// The license as stated by the origin (short form).
    pub license: &'static str,
    /// What the files hold.
    pub kind: DatasetKind,
    /// Every file; for [`DatasetKind::Text`] the first one is the corpus.
    pub files: &'static [RemoteFile],
}

impl DatasetSpec {
    /// Total size of all files in bytes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// True when every file has a download URL.
    pub fn downloadable(&self) -> bool {
        self.files.iter().all(|f| f.url.is_some())
    }

    /// The main file: the corpus of a text dataset, the first file otherwise.
    pub fn main_file(&self) -> &RemoteFile {
        // The catalog test guarantees every spec has at least one file.
        &self.files[0]
    }
}

/// Every registered dataset, in the order `muse data list` shows them.
pub fn registry() -> &'static [DatasetSpec] {
    super::catalog::DATASETS
}

/// The dataset registered under `name`, if any.
pub fn spec(name: &str) -> Option<&'static DatasetSpec> {
    registry().iter().find(|s| s.name == name)
}

/// The registered names, comma-separated, for error messages.
pub fn known_names() -> String {
    let names: Vec<&str> = registry().iter().map(|s| s.name).collect();
    names.join(", ")
}

/// The usage error for a name that is not in the registry (exit code 2).
pub fn unknown_dataset(name: &str) -> Error {
    Error::usage(format!(
        "no dataset named '{name}'; known datasets: {} (see `muse data list`)",
        known_names()
    ))
}

/// [`spec`], or the usage error listing the known names.
pub fn require_spec(name: &str) -> crate::Result<&'static DatasetSpec> {
    spec(name).ok_or_else(|| unknown_dataset(name))
}
