//! Finding a dataset on disk: `$MUSE_DATA_DIR/NAME/`, then the user cache dir.
//!
//! A folder counts only when every registered file is there with the registered size; checking
//! sizes is instant and catches truncated downloads, while `muse data verify` does the full
//! sha256 check. The search roots are passed explicitly to the `*_in` functions so tests (which
//! run in parallel threads) never have to touch process environment variables.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::registry::{DatasetSpec, require_spec};
use crate::error::{Error, Result};

/// Where a dataset folder was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Under `$MUSE_DATA_DIR` (shared or hand-managed copies).
    DataDir,
    /// Under the user cache dir, where `fetch` downloads to.
    Cache,
}

impl Origin {
    /// Short label for listings: `MUSE_DATA_DIR` or `cache`.
    pub fn label(self) -> &'static str {
        match self {
            Origin::DataDir => "MUSE_DATA_DIR",
            Origin::Cache => "cache",
        }
    }
}

/// A folder that holds dataset folders (`ROOT/NAME/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDir {
    /// The folder holding `NAME/` subfolders.
    pub root: PathBuf,
    /// Which kind of root it is.
    pub origin: Origin,
}

/// Whether a dataset is on disk, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Every file is present with the registered size in `dir`.
    Present { dir: PathBuf, origin: Origin },
    /// Not complete in any searched folder; `searched` lists the `ROOT/NAME` folders tried.
    Missing { searched: Vec<PathBuf> },
}

impl Presence {
    /// The dataset folder when present.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Presence::Present { dir, .. } => Some(dir),
            Presence::Missing { .. } => None,
        }
    }
}

/// The root of downloaded datasets: `$MUSE_CACHE_DIR/datasets`, else
/// `<user cache dir>/muse/datasets` (`~/.cache/muse/datasets` on Linux).
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MUSE_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("datasets"));
    }
    dirs::cache_dir()
        .map(|d| d.join("muse").join("datasets"))
        .ok_or_else(|| {
            Error::usage(
                "cannot find a user cache dir for downloads: set MUSE_CACHE_DIR to a writable folder",
            )
        })
}

/// The search roots in lookup order: `$MUSE_DATA_DIR` (when set), then the cache root.
pub fn search_dirs() -> Vec<SearchDir> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("MUSE_DATA_DIR").filter(|d| !d.is_empty()) {
        dirs.push(SearchDir {
            root: PathBuf::from(dir),
            origin: Origin::DataDir,
        });
    }
    if let Ok(root) = cache_root() {
        dirs.push(SearchDir {
            root,
            origin: Origin::Cache,
        });
    }
    dirs
}

/// Looks for dataset `name` in `$MUSE_DATA_DIR/NAME/`, then the cache dir. Never downloads.
///
/// Fails only for a name that is not in the registry (a usage error listing the known names).
pub fn locate(name: &str) -> Result<Presence> {
    Ok(locate_in(require_spec(name)?, &search_dirs()))
}

/// [`locate`] over explicit search roots.
pub fn locate_in(spec: &DatasetSpec, dirs: &[SearchDir]) -> Presence {
    let mut searched = Vec::new();
    for d in dirs {
        let dir = d.root.join(spec.name);
        if problem(spec, &dir).is_none() {
            return Presence::Present {
                dir,
                origin: d.origin,
            };
        }
        searched.push(dir);
    }
    Presence::Missing { searched }
}

/// Why `dir` does not hold `spec` (the first missing or wrong-sized file), or `None` if it does.
pub fn problem(spec: &DatasetSpec, dir: &Path) -> Option<String> {
    if !dir.is_dir() {
        return Some(format!("{} does not exist", dir.display()));
    }
    for f in spec.files {
        let path = dir.join(f.path);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() == f.size => {}
            Ok(m) if m.is_file() => {
                return Some(format!(
                    "{} has {} bytes, expected {}",
                    path.display(),
                    m.len(),
                    f.size
                ));
            }
            _ => return Some(format!("{} is missing", path.display())),
        }
    }
    None
}

/// The folder of dataset `name`: located on disk, else downloaded into the cache dir.
pub fn dataset_dir(name: &str) -> Result<PathBuf> {
    dataset_dir_in(require_spec(name)?, &search_dirs())
}

/// [`dataset_dir`] over explicit search roots (downloads still go to [`cache_root`]).
pub fn dataset_dir_in(spec: &DatasetSpec, dirs: &[SearchDir]) -> Result<PathBuf> {
    let searched = match locate_in(spec, dirs) {
        Presence::Present { dir, .. } => return Ok(dir),
        Presence::Missing { searched } => searched,
    };
    // Describe what is missing before the download attempt creates folders.
    let (missing, _) = missing_parts(spec, &searched);
    let download = cache_root().and_then(|root| {
        let dir = root.join(spec.name);
        super::fetch::fetch_into(spec, &dir)?;
        Ok(dir)
    });
    let name = spec.name;
    download.map_err(|e| match e {
        Error::Network(msg) => Error::Network(format!(
            "{missing}, and downloading it failed ({msg}): run `muse data fetch {name}` when \
             online, or set MUSE_DATA_DIR to a folder that holds {name}/"
        )),
        other => other,
    })
}

/// "no dataset 'mnist' in /x: run `muse data fetch mnist` or set MUSE_DATA_DIR", naming the
/// first problem found in a folder that exists but is incomplete.
pub fn missing_message(spec: &DatasetSpec, searched: &[PathBuf]) -> String {
    let (missing, advice) = missing_parts(spec, searched);
    format!("{missing}: {advice}")
}

/// "no dataset 'NAME' in ROOTS (first problem)" and the advice, for composing messages.
fn missing_parts(spec: &DatasetSpec, searched: &[PathBuf]) -> (String, String) {
    let name = spec.name;
    let roots: Vec<String> = searched
        .iter()
        .map(|d| d.parent().unwrap_or(d).display().to_string())
        .collect();
    let roots = if roots.is_empty() {
        "any data folder (MUSE_DATA_DIR is not set)".to_string()
    } else {
        roots.join(" or ")
    };
    let detail = searched
        .iter()
        .filter(|d| d.is_dir())
        .find_map(|d| problem(spec, d))
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    (
        format!("no dataset '{name}' in {roots}{detail}"),
        format!("run `muse data fetch {name}` or set MUSE_DATA_DIR to a folder that holds {name}/"),
    )
}
