//! A folder of PNG / JPEG images as a dataset (torchvision's `ImageFolder` convention).
//!
//! Images directly in the folder are unlabelled; when the images live in subfolders instead,
//! each subfolder is a class (sorted by name, label 0, 1, ...). Every image is centre-cropped to
//! a square, resized to `size` x `size` (triangle filter) and converted to grey (1 channel) or
//! RGB (3 channels). Files with other extensions are skipped; an image that does not decode is
//! an error naming the file.

use std::path::{Path, PathBuf};

use image::{DynamicImage, imageops::FilterType};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Decoded pixels of a folder, (N, C, H, W) u8, in sorted path order.
pub struct FolderImages {
    pub pixels: Vec<u8>,
    pub labels: Option<Vec<u8>>,
    pub class_names: Vec<String>,
    pub paths: Vec<PathBuf>,
}

/// True for the file extensions Muse decodes (png, jpg, jpeg; any case).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// Reads every image of `dir` (see the module docs).
pub fn load_folder(dir: &Path, size: usize, channels: usize) -> Result<FolderImages> {
    let (root_files, classes) = scan(dir)?;
    let (paths, labels, class_names) = match (root_files.is_empty(), classes.is_empty()) {
        (true, true) => {
            return Err(Error::input(format!(
                "{} holds no PNG or JPEG images (looked in the folder and its subfolders)",
                dir.display()
            )));
        }
        (false, _) => (root_files, None, Vec::new()),
        (true, false) => {
            if classes.len() > 256 {
                return Err(Error::input(format!(
                    "{} has {} class subfolders; at most 256 are supported",
                    dir.display(),
                    classes.len()
                )));
            }
            let mut paths = Vec::new();
            let mut labels = Vec::new();
            let mut names = Vec::new();
            for (label, (name, files)) in classes.into_iter().enumerate() {
                labels.extend(std::iter::repeat_n(label as u8, files.len()));
                paths.extend(files);
                names.push(name);
            }
            (paths, Some(labels), names)
        }
    };
    let per_image = channels * size * size;
    let decoded: Vec<Vec<u8>> = paths
        .par_iter()
        .map(|p| decode_image(p, size, channels))
        .collect::<Result<_>>()?;
    let mut pixels = Vec::with_capacity(per_image * decoded.len());
    for d in decoded {
        pixels.extend_from_slice(&d);
    }
    Ok(FolderImages {
        pixels,
        labels,
        class_names,
        paths,
    })
}

/// Decodes one PNG/JPEG file into (C, size, size) u8 pixels.
pub fn decode_image(path: &Path, size: usize, channels: usize) -> Result<Vec<u8>> {
    let img = image::ImageReader::open(path)
        .map_err(Error::io(path))?
        .with_guessed_format()
        .map_err(Error::io(path))?
        .decode()
        .map_err(|e| {
            Error::input(format!(
                "{}: cannot decode the image ({e}); remove it or replace it with a valid PNG or \
                 JPEG file",
                path.display()
            ))
        })?;
    Ok(conform(&img, size, channels))
}

/// Centre-crops to a square, resizes to `size` and lays the pixels out as (C, H, W).
pub fn conform(img: &DynamicImage, size: usize, channels: usize) -> Vec<u8> {
    let (w, h) = (img.width(), img.height());
    let side = w.min(h);
    let square = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    let resized = if side as usize == size {
        square
    } else {
        square.resize_exact(size as u32, size as u32, FilterType::Triangle)
    };
    if channels == 1 {
        return resized.to_luma8().into_raw();
    }
    rgb_planes(&resized.to_rgb8().into_raw())
}

/// Interleaved RGB pixels (H, W, 3) as three planes (3, H, W).
pub fn rgb_planes(rgb: &[u8]) -> Vec<u8> {
    let hw = rgb.len() / 3;
    let mut chw = vec![0u8; 3 * hw];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * hw + i] = px[c];
        }
    }
    chw
}

type Classes = Vec<(String, Vec<PathBuf>)>;

/// The image files directly in `dir`, and the subfolders holding images (sorted).
fn scan(dir: &Path) -> Result<(Vec<PathBuf>, Classes)> {
    let mut root_files = Vec::new();
    let mut classes = Vec::new();
    for entry in sorted_entries(dir)? {
        if entry.is_dir() {
            let files: Vec<PathBuf> = sorted_entries(&entry)?
                .into_iter()
                .filter(|p| p.is_file() && is_image_file(p))
                .collect();
            if !files.is_empty() {
                let name = entry
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                classes.push((name, files));
            }
        } else if entry.is_file() && is_image_file(&entry) {
            root_files.push(entry);
        }
    }
    Ok((root_files, classes))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    out.sort();
    Ok(out)
}
