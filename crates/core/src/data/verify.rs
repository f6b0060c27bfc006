//! Checking a dataset folder byte for byte: size and sha256 of every registered file.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::locate::{Origin, Presence, locate_in, missing_message, search_dirs};
use super::registry::{DatasetSpec, RemoteFile, require_spec};
use crate::error::{Error, Result};

/// The lowercase hex sha256 of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(Error::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The outcome for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Size and sha256 match the registry.
    Ok,
    /// Not in the folder.
    Missing,
    /// Present with another size (the sha256 was not computed).
    WrongSize { actual: u64 },
    /// Right size, other content.
    WrongSha256 { actual: String },
}

/// One registered file and what was found.
#[derive(Debug, Clone)]
pub struct FileCheck<'a> {
    /// The registry entry.
    pub file: &'a RemoteFile,
    /// What the folder holds for it.
    pub status: FileStatus,
}

/// The result of [`verify`]: the folder checked and one entry per registered file.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The dataset folder that was checked.
    pub dir: PathBuf,
    /// Which search root it is under.
    pub origin: Origin,
    /// Per-file results, in registry order.
    pub checks: Vec<FileCheck<'static>>,
}

impl Verification {
    /// True when every file is present with the registered size and sha256.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status == FileStatus::Ok)
    }
}

/// Recomputes the sha256 of every file of dataset `name`.
///
/// Checks the folder `locate` picks; when no folder is complete, the first one that exists (so
/// a broken copy can be diagnosed). Fails when no folder for the dataset exists at all.
pub fn verify(name: &str) -> Result<Verification> {
    let spec = require_spec(name)?;
    let dirs = search_dirs();
    let (dir, origin) = match locate_in(spec, &dirs) {
        Presence::Present { dir, origin } => (dir, origin),
        Presence::Missing { searched } => {
            let found = dirs
                .iter()
                .map(|d| (d.root.join(spec.name), d.origin))
                .find(|(dir, _)| dir.is_dir());
            found.ok_or_else(|| Error::input(missing_message(spec, &searched)))?
        }
    };
    let checks = verify_dir(spec, &dir)?;
    Ok(Verification {
        dir,
        origin,
        checks,
    })
}

/// Checks every file of `spec` in `dir`: presence, size, then sha256.
pub fn verify_dir<'a>(spec: &'a DatasetSpec, dir: &Path) -> Result<Vec<FileCheck<'a>>> {
    spec.files
        .iter()
        .map(|file| {
            let path = dir.join(file.path);
            let status = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && m.len() != file.size => {
                    FileStatus::WrongSize { actual: m.len() }
                }
                Ok(m) if m.is_file() => {
                    let actual = sha256_file(&path)?;
                    if actual == file.sha256 {
                        FileStatus::Ok
                    } else {
                        FileStatus::WrongSha256 { actual }
                    }
                }
                _ => FileStatus::Missing,
            };
            Ok(FileCheck { file, status })
        })
        .collect()
}
