//! The suffix array of a training text, built once and kept in the user cache dir
//! (`<cache>/muse/suffix-arrays/<sha256 of the text>.sa`): building it for Tiny Shakespeare's
//! 1 MB training split takes about 5 s on two busy cores, reading it back milliseconds.

use std::path::PathBuf;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::suffix::SuffixArray;
use crate::error::Result;

/// File header: format name and version.
const MAGIC: &[u8; 8] = b"MUSESA1\0";

/// Where an index came from, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IndexInfo {
    /// sha256 of the indexed bytes.
    pub sha256: String,
    pub bytes: usize,
    /// The cache file (absent when no cache dir could be found).
    pub path: Option<PathBuf>,
    /// Whether it was read from the cache (else built now).
    pub cached: bool,
    /// Seconds spent building or reading it.
    pub seconds: f64,
}

/// The folder of cached suffix arrays, next to the dataset cache.
fn cache_dir() -> Option<PathBuf> {
    let root = crate::data::cache_root().ok()?;
    Some(root.parent()?.join("suffix-arrays"))
}

/// The suffix array of `text`: read from the cache when a good copy is there, else built and
/// written there atomically (a failed write only costs the next run the build).
pub fn cached_index(text: &[u8]) -> Result<(SuffixArray, IndexInfo)> {
    let start = Instant::now();
    let sha256 = format!("{:x}", Sha256::digest(text));
    let path = cache_dir().map(|d| d.join(format!("{sha256}.sa")));
    if let Some(p) = &path
        && let Ok(bytes) = std::fs::read(p)
        && let Some(index) = decode(text, &bytes)
    {
        let info = IndexInfo {
            sha256,
            bytes: text.len(),
            path,
            cached: true,
            seconds: start.elapsed().as_secs_f64(),
        };
        return Ok((index, info));
    }
    let index = SuffixArray::new(text);
    if let Some(p) = &path {
        let written = p
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|_| crate::io::write_atomic(p, &encode(&index)).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!("could not cache the suffix array at {}: {e}", p.display());
        }
    }
    let info = IndexInfo {
        sha256,
        bytes: text.len(),
        path,
        cached: false,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((index, info))
}

fn encode(index: &SuffixArray) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 4 * index.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(index.len() as u64).to_le_bytes());
    for &s in index.order() {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn decode(text: &[u8], bytes: &[u8]) -> Option<SuffixArray> {
    let body = bytes.strip_prefix(MAGIC)?;
    let (len, body) = body.split_at_checked(8)?;
    let n = u64::from_le_bytes(len.try_into().ok()?) as usize;
    if n != text.len() || body.len() != 4 * n {
        return None;
    }
    let sa = body
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    SuffixArray::from_parts(text, sa)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_index_reads_back_and_a_wrong_one_is_refused() {
        let text = b"the quick brown fox jumps over the lazy dog";
        let index = SuffixArray::new(text);
        let bytes = encode(&index);
        let back = decode(text, &bytes).unwrap();
        assert_eq!(back.order(), index.order());
        assert!(decode(b"another text of another length", &bytes).is_none());
        let mut damaged = bytes.clone();
        damaged.truncate(bytes.len() - 4);
        assert!(decode(text, &damaged).is_none());
        // Same length, different text: the order is not sorted for it.
        let other: Vec<u8> = text.iter().rev().copied().collect();
        assert!(decode(&other, &bytes).is_none());
    }
}
