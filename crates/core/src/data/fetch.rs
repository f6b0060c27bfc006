//! Downloading a dataset into the cache dir, with a progress bar and sha256 verification.
//!
//! Each file streams into a temporary file next to its target while being hashed; only a file
//! with the registered size and sha256 is fsynced and renamed into place, so an interrupted or
//! corrupted download never leaves a file that `locate` would accept.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::locate::{Presence, cache_root, locate_in, search_dirs};
use super::registry::{DatasetSpec, RemoteFile, require_spec};
use crate::error::{Error, Result};

/// Makes dataset `name` available and returns its folder.
///
/// A dataset already complete under `$MUSE_DATA_DIR` or the cache is returned as is, without
/// any network access. Otherwise its missing files are downloaded into
/// `<cache root>/NAME/` (see [`super::cache_root`]) and verified.
pub fn fetch(name: &str) -> Result<PathBuf> {
    let spec = require_spec(name)?;
    if let Presence::Present { dir, .. } = locate_in(spec, &search_dirs()) {
        return Ok(dir);
    }
    let dir = cache_root()?.join(spec.name);
    fetch_into(spec, &dir)?;
    Ok(dir)
}

/// Downloads every file of `spec` that is missing (or has the wrong size) in `dir`.
///
/// Files without a URL cannot be downloaded: after fetching the others, this fails with an
/// [`Error::Input`] that says, per file, where to get it and where to put it.
pub fn fetch_into(spec: &DatasetSpec, dir: &Path) -> Result<()> {
    let missing: Vec<&RemoteFile> = spec
        .files
        .iter()
        .filter(|f| !has_size(&dir.join(f.path), f.size))
        .collect();
    let mut manual = Vec::new();
    for file in missing {
        match file.url {
            Some(url) => download(url, &dir.join(file.path), file)?,
            None => manual.push(file),
        }
    }
    if manual.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "dataset '{}' has {} file(s) that cannot be downloaded automatically:",
        spec.name,
        manual.len()
    );
    for f in &manual {
        let note = f.note.unwrap_or("no public source is known");
        msg.push_str(&format!(
            "\n  {} ({} bytes, sha256 {}): {note}",
            f.path, f.size, f.sha256
        ));
    }
    msg.push_str(&format!(
        "\nPut them in {}/ (or in $MUSE_DATA_DIR/{}/), then check with `muse data verify {}`",
        dir.display(),
        spec.name,
        spec.name
    ));
    Err(Error::input(msg))
}

fn has_size(path: &Path, size: u64) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Removes the temporary file unless the download succeeded.
struct TempGuard(PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Streams `url` into `dest`, checking size and sha256 before the atomic rename.
fn download(url: &str, dest: &Path, file: &RemoteFile) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(Error::io(parent))?;
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.path.to_string());
    let tmp = parent.join(format!(".{file_name}.part-{}", std::process::id()));
    let guard = TempGuard(tmp.clone());
    tracing::info!(
        "downloading {url} ({}) -> {}",
        HumanBytes(file.size),
        dest.display()
    );

    let net_err = |e: &dyn std::fmt::Display| {
        Error::Network(format!(
            "cannot download {url}: {e}. Check the connection (a proxy is read from HTTPS_PROXY), \
             or copy the file into {} by hand",
            parent.display()
        ))
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("muse/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    // `identity`: the registry pins the bytes as served, so no transparent decompression.
    let response = agent
        .get(url)
        .header("Accept-Encoding", "identity")
        .call()
        .map_err(|e| net_err(&e))?;
    let mut reader = response.into_body().into_reader();

    let bar = ProgressBar::new(file.size);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(file.path.to_string());

    let mut out = File::create(&tmp).map_err(Error::io(&tmp))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received: u64 = 0;
    loop {
        let n = reader.read(&mut buf).map_err(|e| net_err(&e))?;
        if n == 0 {
            break;
        }
        received += n as u64;
        if received > file.size {
            bar.abandon();
            return Err(Error::Network(format!(
                "{url} sent more than the expected {} bytes: the file changed upstream or the URL \
                 is wrong; nothing was kept",
                file.size
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(Error::io(&tmp))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if received != file.size {
        return Err(Error::Network(format!(
            "download of {url} stopped after {received} of {} bytes; run the command again",
            file.size
        )));
    }
    let actual = format!("{:x}", hasher.finalize());
    if actual != file.sha256 {
        return Err(Error::Network(format!(
            "sha256 mismatch for {url}: expected {}, got {actual}; the download was deleted. \
             The file changed upstream or was corrupted in transit: try again, or get a copy \
             with the expected sha256 and put it in {}",
            file.sha256,
            parent.display()
        )));
    }
    out.sync_all().map_err(Error::io(&tmp))?;
    drop(out);
    fs::rename(&tmp, dest).map_err(Error::io(dest))?;
    drop(guard); // the temp path is gone now; removing it again is a no-op
    // Make the rename itself durable.
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}
