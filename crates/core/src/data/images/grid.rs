//! PNG grids of images (torchvision's `make_grid` + `save_image`), labelled as AI-generated.
//!
//! Every PNG written here carries two `tEXt` chunks, `Comment` = [`crate::AI_GENERATED_NOTICE`]
//! (plus the caption) and `Software` = `Muse`, and an `iTXt` chunk with the XMP packet of its
//! [`Provenance`] (the IPTC digital source type and the generation parameters). The `image`
//! crate cannot write text chunks, so they are spliced in after the IHDR chunk of its output.

use std::path::Path;

use candle_core::{DType, Tensor};
use image::{ExtendedColorType, ImageEncoder, codecs::png::PngEncoder};

use super::provenance::{Provenance, XMP_KEYWORD, utc_now};
use crate::error::{Error, Result};

/// Pixels between cells.
pub const PADDING: usize = 2;
/// Grey of the border between cells.
const BORDER: u8 = 128;

/// A grid of `rows x cols` cells of equal size, as 8-bit pixels.
pub struct GridImage {
    /// 1 (grey) or 3 (RGB), interleaved (H, W, C).
    pub channels: usize,
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Lays out a batch of images in `[0, 1]` (values outside are clamped) with `nrow` images per
/// row (`torchvision.utils.make_grid(..., nrow, padding=2)`).
///
/// # Shapes
/// `images`: (N, C, H, W) with C = 1 or 3.
pub fn make_grid(images: &Tensor, nrow: usize) -> Result<GridImage> {
    let (n, c, h, w) = images.dims4()?;
    if n == 0 || !(c == 1 || c == 3) {
        return Err(Error::input(format!(
            "cannot draw a grid of {n} images with {c} channels (need at least one image, 1 or 3 \
             channels)"
        )));
    }
    let cols = nrow.clamp(1, n);
    let rows = n.div_ceil(cols);
    let data: Vec<f32> = images
        .to_dtype(DType::F32)?
        .to_device(&candle_core::Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    let (gw, gh) = (
        cols * (w + PADDING) + PADDING,
        rows * (h + PADDING) + PADDING,
    );
    let mut pixels = vec![BORDER; gw * gh * c];
    for i in 0..n {
        let (r, col) = (i / cols, i % cols);
        let (x0, y0) = (PADDING + col * (w + PADDING), PADDING + r * (h + PADDING));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let v = data[((i * c + ch) * h + y) * w + x];
                    let v = if v.is_finite() {
                        v.clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    pixels[((y0 + y) * gw + x0 + x) * c + ch] = (v * 255.0 + 0.5) as u8;
                }
            }
        }
    }
    Ok(GridImage {
        channels: c,
        width: gw,
        height: gh,
        pixels,
    })
}

/// Writes `images` (N, C, H, W) in `[0, 1]` as a PNG grid with `nrow` per row, labelled as
/// AI-generated and carrying `prov`.
pub fn write_grid(path: &Path, images: &Tensor, nrow: usize, prov: &Provenance) -> Result<()> {
    let grid = make_grid(images, nrow)?;
    write_png(path, &grid, prov)
}

/// Writes rows of images as one PNG: each tensor of `rows` is one row (K, C, H, W), all of the
/// same shape (an interpolation, or inputs above their reconstructions).
pub fn write_strip(path: &Path, rows: &[Tensor], prov: &Provenance) -> Result<()> {
    let Some(first) = rows.first() else {
        return Err(Error::input("nothing to draw: no rows of images"));
    };
    let k = first.dim(0)?;
    if rows.iter().any(|r| r.dims() != first.dims()) {
        return Err(Error::input(
            "every row of a strip must hold images of the same count and shape",
        ));
    }
    write_grid(path, &Tensor::cat(rows, 0)?, k, prov)
}

/// Encodes a grid as PNG bytes with the AI-generated notice in `tEXt` chunks and `prov` as
/// XMP (dated now, or `SOURCE_DATE_EPOCH`).
pub fn encode_png(grid: &GridImage, prov: &Provenance) -> Result<Vec<u8>> {
    let mut png = Vec::new();
    let color = if grid.channels == 1 {
        ExtendedColorType::L8
    } else {
        ExtendedColorType::Rgb8
    };
    PngEncoder::new(&mut png)
        .write_image(&grid.pixels, grid.width as u32, grid.height as u32, color)
        .map_err(|e| Error::input(format!("cannot encode PNG: {e}")))?;
    let xmp = prov.xmp_packet(&utc_now());
    Ok(insert_text_chunks(
        &png,
        &[("Comment", &prov.notice()), ("Software", "Muse")],
        &xmp,
    ))
}

/// Writes a grid as a PNG file atomically.
pub fn write_png(path: &Path, grid: &GridImage, prov: &Provenance) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    crate::io::write_atomic(path, &encode_png(grid, prov)?)
}

/// Reads one PNG/JPEG file as a (1, C, size, size) tensor in `[0, 1]` (centre-cropped and
/// resized like a dataset folder). Errors name the file.
pub fn read_image(path: &Path, size: usize, channels: usize) -> Result<Tensor> {
    if !path.is_file() {
        return Err(Error::input(format!(
            "{}: no such image file",
            path.display()
        )));
    }
    let px = super::decode_image(path, size, channels)?;
    let data: Vec<f32> = px.iter().map(|&p| p as f32 / 255.0).collect();
    Ok(Tensor::from_vec(
        data,
        (1, channels, size, size),
        &candle_core::Device::Cpu,
    )?)
}

/// Inserts `tEXt` chunks and the XMP `iTXt` chunk right after IHDR (the first chunk, ending at
/// byte 33).
fn insert_text_chunks(png: &[u8], texts: &[(&str, &str)], xmp: &str) -> Vec<u8> {
    const IHDR_END: usize = 8 + 12 + 13;
    let mut out = Vec::with_capacity(png.len() + xmp.len() + 256);
    out.extend_from_slice(&png[..IHDR_END]);
    for (key, text) in texts {
        // tEXt is Latin-1; keep the notice ASCII.
        let mut data = key.as_bytes().to_vec();
        data.push(0);
        data.extend(
            text.chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' }),
        );
        push_chunk(&mut out, b"tEXt", &data);
    }
    // iTXt: keyword, NUL, uncompressed (0, method 0), no language tag, no translated keyword,
    // then the UTF-8 text.
    let mut data = XMP_KEYWORD.as_bytes().to_vec();
    data.extend_from_slice(&[0, 0, 0, 0, 0]);
    data.extend_from_slice(xmp.as_bytes());
    push_chunk(&mut out, b"iTXt", &data);
    out.extend_from_slice(&png[IHDR_END..]);
    out
}

/// Appends one chunk: length, type, data, CRC of type and data.
fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32(&typed).to_be_bytes());
}

/// CRC-32 (IEEE, reflected 0xEDB88320), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_png_spec_example() {
        // CRC of the IEND chunk type, present at the end of every PNG.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn grid_layout_and_notice() {
        let imgs = Tensor::ones((3, 1, 2, 2), DType::F32, &candle_core::Device::Cpu).unwrap();
        let g = make_grid(&imgs, 2).unwrap();
        assert_eq!((g.width, g.height), (2 * 4 + 2, 2 * 4 + 2));
        assert_eq!(g.pixels[2 * g.width + 2], 255);
        assert_eq!(g.pixels[0], BORDER);
        let png = encode_png(&g, &Provenance::default().caption("step 5")).unwrap();
        let meta = super::super::png_meta::read_png_metadata(&png).unwrap();
        assert!(
            meta.xmp
                .is_some_and(|x| x.contains("trainedAlgorithmicMedia"))
        );
        assert!(meta.texts.iter().any(|(k, v)| k == "Comment"
            && v.contains(crate::AI_GENERATED_NOTICE)
            && v.contains("step 5")));
        let back = image::load_from_memory(&png).unwrap().to_luma8();
        assert_eq!(back.width() as usize, g.width);
        assert_eq!(back.into_raw(), g.pixels);
    }
}
