//! Finding and reading an image dataset: a registry name, a folder of IDX files or a folder
//! of images, one split of it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::idx::{read_idx_images, read_idx_labels};
use super::{ImageDataset, ImageOptions, Split, check_options, folder};
use crate::data::locate::dataset_dir;
use crate::data::registry::{DatasetKind, spec};
use crate::error::{Error, Result};
use crate::run_dir::DatasetRecord;

/// Splits `mnist:test` into (`mnist`, Some(Test)). A value that is an existing path is taken
/// whole, so paths containing ':' still work.
pub fn parse_data_split(data: &str) -> (String, Option<Split>) {
    if Path::new(data).exists() {
        return (data.to_string(), None);
    }
    match data.rsplit_once(':') {
        Some((name, s)) if Split::parse(s).is_some() => (name.to_string(), Split::parse(s)),
        _ => (data.to_string(), None),
    }
}

/// Loads split `split` of `data`: a registry name (`mnist`, `fashion-mnist`), a folder holding
/// IDX files (`train-images-idx3-ubyte[.gz]`, ...), or a folder of PNG/JPEG images.
pub fn load_images(data: &str, split: Split, opts: &ImageOptions) -> Result<ImageDataset> {
    if data.trim().is_empty() {
        return Err(Error::usage(
            "--data is empty: pass mnist, fashion-mnist or a folder of PNG/JPEG images",
        ));
    }
    let path = Path::new(data);
    if path.is_dir() {
        return match find_idx(path, split) {
            Some((images, labels)) => load_idx(data, &images, labels.as_deref(), None, split)
                .and_then(|d| d.conformed(opts)),
            None => load_image_folder(path, split, opts),
        };
    }
    if let Some(spec) = spec(data) {
        if spec.kind != DatasetKind::Images {
            return Err(Error::usage(format!(
                "dataset '{data}' holds {}, not images; image datasets: {}",
                spec.kind,
                image_dataset_names()
            )));
        }
        let dir = dataset_dir(data)?;
        let (images, labels) = find_idx(&dir, split).ok_or_else(|| {
            Error::input(format!(
                "{} has no IDX {} files; run `muse data verify {data}`",
                dir.display(),
                split.as_str()
            ))
        })?;
        let registered = spec
            .files
            .iter()
            .find(|f| dir.join(f.path) == images)
            .map(|f| f.sha256.to_string());
        return load_idx(data, &images, labels.as_deref(), registered, split)
            .and_then(|d| d.conformed(opts));
    }
    if path.is_file() {
        return Err(Error::usage(format!(
            "{data} is a file; pass a folder of PNG/JPEG images, a folder of IDX files, or an \
             image dataset ({})",
            image_dataset_names()
        )));
    }
    Err(Error::usage(format!(
        "--data {data}: no such folder and no image dataset of that name; image datasets: {} \
         (see `muse data list`), or pass a folder of PNG/JPEG images",
        image_dataset_names()
    )))
}

fn image_dataset_names() -> String {
    crate::data::registry::registry()
        .iter()
        .filter(|s| s.kind == DatasetKind::Images)
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(images, labels)` IDX files of `split` in `dir` (`train-*` or `t10k-*`, raw or `.gz`).
fn find_idx(dir: &Path, split: Split) -> Option<(PathBuf, Option<PathBuf>)> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let find = |kind: &str| {
        [
            format!("{prefix}-{kind}.gz"),
            format!("{prefix}-{kind}"),
            format!("{prefix}-{}.gz", kind.replace('-', ".")),
            format!("{prefix}-{}", kind.replace('-', ".")),
        ]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
    };
    Some((find("images-idx3-ubyte")?, find("labels-idx1-ubyte")))
}

fn load_idx(
    name: &str,
    images: &Path,
    labels: Option<&Path>,
    sha256: Option<String>,
    split: Split,
) -> Result<ImageDataset> {
    let img = read_idx_images(images)?;
    let labels = labels.map(read_idx_labels).transpose()?;
    if let Some(l) = &labels
        && l.len() != img.n
    {
        return Err(Error::input(format!(
            "{} has {} images but its label file has {} labels",
            images.display(),
            img.n,
            l.len()
        )));
    }
    let sha256 = match sha256 {
        Some(s) => s,
        None => fingerprint(&img.pixels, labels.as_deref()),
    };
    let record = DatasetRecord {
        name: Path::new(name)
            .file_name()
            .map_or(name.to_string(), |n| n.to_string_lossy().into_owned()),
        path: images.display().to_string(),
        sha256,
    };
    ImageDataset::from_parts(
        img.pixels,
        labels,
        (1, img.height, img.width),
        record,
        split,
    )
}

fn load_image_folder(dir: &Path, split: Split, opts: &ImageOptions) -> Result<ImageDataset> {
    let size = opts.image_size.unwrap_or(32);
    let channels = opts.channels.unwrap_or(3);
    check_options(size, channels)?;
    let all = folder::load_folder(dir, size, channels)?;
    let per = channels * size * size;
    let keep: Vec<usize> = (0..all.paths.len())
        .filter(|i| (i % 10 == 9) == (split == Split::Test))
        .collect();
    if keep.is_empty() {
        return Err(Error::input(format!(
            "{} has {} images, too few for a {} split (every tenth image is the test split)",
            dir.display(),
            all.paths.len(),
            split.as_str()
        )));
    }
    let mut images = Vec::with_capacity(keep.len() * per);
    for &i in &keep {
        images.extend_from_slice(&all.pixels[i * per..(i + 1) * per]);
    }
    let labels = all
        .labels
        .as_ref()
        .map(|l| keep.iter().map(|&i| l[i]).collect::<Vec<u8>>());
    let record = DatasetRecord {
        name: dir
            .file_name()
            .map_or("images".into(), |n| n.to_string_lossy().into_owned()),
        path: dir.display().to_string(),
        sha256: fingerprint(&all.pixels, all.labels.as_deref()),
    };
    let mut ds = ImageDataset::from_parts(images, labels, (channels, size, size), record, split)?;
    if !all.class_names.is_empty() {
        ds.n_classes = all.class_names.len();
        ds.class_names = all.class_names;
    }
    Ok(ds)
}

/// sha256 of the decoded pixels and labels: what a model trained on.
fn fingerprint(pixels: &[u8], labels: Option<&[u8]>) -> String {
    let mut h = Sha256::new();
    h.update(pixels);
    if let Some(l) = labels {
        h.update(l);
    }
    format!("{:x}", h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_split_suffix() {
        assert_eq!(
            parse_data_split("mnist:test"),
            ("mnist".into(), Some(Split::Test))
        );
        assert_eq!(
            parse_data_split("fashion-mnist"),
            ("fashion-mnist".into(), None)
        );
        assert_eq!(parse_data_split("x:y"), ("x:y".into(), None));
    }
}
