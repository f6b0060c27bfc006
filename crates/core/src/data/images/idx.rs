//! IDX files, the format of MNIST and Fashion-MNIST (LeCun et al., "Gradient-based learning
//! applied to document recognition", 1998; <http://yann.lecun.com/exdb/mnist/>).
//!
//! An IDX file is a big-endian header, `0x00 0x00 TYPE NDIMS`, then NDIMS u32 sizes, then the
//! payload. Muse reads unsigned-byte files (`TYPE = 0x08`): images (magic 2051, 3 dims) and
//! labels (magic 2049, 1 dim), raw or gzip-compressed (`.gz`).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Magic number of an IDX file of u8 images (N, H, W).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 labels (N).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images read from an IDX file: `n` images of `height` x `width` u8 pixels, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub n: usize,
    pub height: usize,
    pub width: usize,
    /// (N, H, W) pixels.
    pub pixels: Vec<u8>,
}

/// Reads a whole file, gunzipping it when its name ends in `.gz`. Errors name the file.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(Error::io(path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                Error::input(format!(
                    "{} is not a valid gzip file ({e}); it may be truncated: fetch it again with \
                     `muse data fetch`",
                    path.display()
                ))
            })?;
        return Ok(out);
    }
    Ok(raw)
}

/// Reads an IDX image file (raw or `.gz`).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    parse_idx_images(&read_maybe_gz(path)?).map_err(|e| named(path, e))
}

/// Reads an IDX label file (raw or `.gz`).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    parse_idx_labels(&read_maybe_gz(path)?).map_err(|e| named(path, e))
}

/// Parses the bytes of an IDX image file. The message of an error says what is wrong; the
/// file-reading functions prefix the file name.
pub fn parse_idx_images(bytes: &[u8]) -> Result<IdxImages> {
    let dims = header(bytes, IMAGES_MAGIC, "images", 3)?;
    let (n, height, width) = (dims[0], dims[1], dims[2]);
    let pixels = payload(bytes, 16, n * height * width)?;
    Ok(IdxImages {
        n,
        height,
        width,
        pixels,
    })
}

/// Parses the bytes of an IDX label file.
pub fn parse_idx_labels(bytes: &[u8]) -> Result<Vec<u8>> {
    let dims = header(bytes, LABELS_MAGIC, "labels", 1)?;
    payload(bytes, 8, dims[0])
}

/// Checks the magic number and returns the dimension sizes.
fn header(bytes: &[u8], magic: u32, what: &str, ndims: usize) -> Result<Vec<usize>> {
    let head = 4 + 4 * ndims;
    let short = || {
        Error::input(format!(
            "truncated IDX file: {} bytes, shorter than the {head}-byte header of IDX {what}",
            bytes.len()
        ))
    };
    if bytes.len() < 4 {
        return Err(short());
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(Error::input(format!(
            "wrong magic number {found} (0x{found:08x}): IDX {what} files start with {magic} \
             (0x{magic:08x}); is this the right file?"
        )));
    }
    if bytes.len() < head {
        return Err(short());
    }
    Ok((0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect())
}

fn payload(bytes: &[u8], offset: usize, expected: usize) -> Result<Vec<u8>> {
    let found = bytes.len() - offset;
    if found < expected {
        return Err(Error::input(format!(
            "truncated IDX file: the header announces {expected} bytes of data but only {found} \
             follow"
        )));
    }
    if found > expected {
        return Err(Error::input(format!(
            "malformed IDX file: {} bytes after the {expected} announced by the header",
            found - expected
        )));
    }
    Ok(bytes[offset..].to_vec())
}

fn named(path: &Path, e: Error) -> Error {
    match e {
        Error::Input(msg) => Error::input(format!("{}: {msg}", path.display())),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images_file(n: u32, h: u32, w: u32, pixels: usize) -> Vec<u8> {
        let mut b = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [n, h, w] {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend((0..pixels).map(|i| i as u8));
        b
    }

    #[test]
    fn parses_images_and_labels() {
        let img = parse_idx_images(&images_file(2, 2, 3, 12)).unwrap();
        assert_eq!((img.n, img.height, img.width), (2, 2, 3));
        assert_eq!(img.pixels[11], 11);
        let mut lab = LABELS_MAGIC.to_be_bytes().to_vec();
        lab.extend_from_slice(&3u32.to_be_bytes());
        lab.extend_from_slice(&[7, 1, 9]);
        assert_eq!(parse_idx_labels(&lab).unwrap(), vec![7, 1, 9]);
    }

    #[test]
    fn truncated_and_wrong_magic_are_input_errors() {
        let err = parse_idx_images(&images_file(2, 2, 3, 11)).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = parse_idx_images(&images_file(2, 2, 3, 12)[..10]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let mut lab = LABELS_MAGIC.to_be_bytes().to_vec();
        lab.extend_from_slice(&1u32.to_be_bytes());
        lab.push(0);
        let err = parse_idx_images(&lab).unwrap_err();
        assert!(err.to_string().contains("wrong magic number 2049"), "{err}");
    }
}
