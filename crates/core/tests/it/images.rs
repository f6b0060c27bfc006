//! Image datasets: MNIST / Fashion-MNIST IDX files from the shared data, folders of PNG and
//! JPEG images, damaged inputs, and the PNG grid writer.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use muse_core::Error;
use muse_core::data::images::{self, EpochBatches, ImageOptions, Scale, Split, grid, load_images};

use crate::common::dataset;

fn mnist(split: Split) -> images::ImageDataset {
    let dir = dataset("mnist");
    load_images(dir.to_str().unwrap(), split, &ImageOptions::default()).unwrap()
}

#[test]
fn mnist_train_and_test_splits_with_labels() {
    let train = mnist(Split::Train);
    assert_eq!((train.len(), train.shape()), (60000, (1, 28, 28)));
    assert_eq!(train.n_classes, 10);
    let mut hist = [0usize; 10];
    for &l in train.labels.as_ref().unwrap() {
        hist[l as usize] += 1;
    }
    assert_eq!(
        hist,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let test = mnist(Split::Test);
    assert_eq!(test.len(), 10000);
    let x = test.batch(&[0, 1], Scale::Unit, &Device::Cpu).unwrap();
    assert_eq!(x.dims(), &[2, 1, 28, 28]);
    let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|p| (0.0..=1.0).contains(p)) && v.contains(&1.0));
    let s: Vec<f32> = test
        .batch(&[0], Scale::Signed, &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(s.iter().cloned().fold(f32::INFINITY, f32::min), -1.0);
    // The first MNIST test digit is a 7.
    let y = test.labels_at(&[0], &Device::Cpu).unwrap().unwrap();
    assert_eq!(y.to_vec1::<u32>().unwrap(), vec![7]);
}

#[test]
fn fashion_mnist_resized_to_rgb_32() {
    let dir = dataset("fashion-mnist");
    let opts = ImageOptions {
        image_size: Some(32),
        channels: Some(3),
    };
    let test = load_images(dir.to_str().unwrap(), Split::Test, &opts)
        .unwrap()
        .take(5);
    assert_eq!((test.len(), test.shape()), (5, (3, 32, 32)));
    // Grey replicated into three equal channels.
    let img = test.image(0);
    assert_eq!(img[..1024], img[1024..2048]);
}

#[test]
fn seeded_epoch_batches_cover_the_data() {
    let mut b = EpochBatches::new(1000, 128, 3).unwrap();
    assert_eq!(b.steps_per_epoch(), 8);
    let mut all: Vec<usize> = (8..16).flat_map(|s| b.indices(s)).collect();
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
}

fn write_idx(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn truncated_or_wrong_magic_idx_files_are_input_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    // Truncated: the header announces 2 images of 4x4 but 20 pixels follow.
    let mut bytes = images::IMAGES_MAGIC.to_be_bytes().to_vec();
    for d in [2u32, 4, 4] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend(std::iter::repeat_n(0u8, 20));
    let f = tmp.path().join("train-images-idx3-ubyte");
    write_idx(&f, &bytes);
    let err = load_images(
        tmp.path().to_str().unwrap(),
        Split::Train,
        &Default::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("truncated"),
        "{msg}"
    );
    // Wrong magic: a label file where images are expected.
    let mut lab = images::LABELS_MAGIC.to_be_bytes().to_vec();
    lab.extend_from_slice(&[0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0]);
    write_idx(&f, &lab);
    let err = images::read_idx_images(&f).unwrap_err().to_string();
    assert!(err.contains("wrong magic number 2049"), "{err}");
    // A gzip file cut short.
    let gz = tmp.path().join("t10k-images-idx3-ubyte.gz");
    let full = std::fs::read(dataset("mnist").join("t10k-labels-idx1-ubyte.gz")).unwrap();
    write_idx(&gz, &full[..full.len() / 2]);
    let err = images::read_idx_images(&gz).unwrap_err().to_string();
    assert!(err.contains("t10k-images-idx3-ubyte.gz"), "{err}");
}

fn save_png(path: &Path, w: u32, h: u32, value: u8) {
    image::RgbImage::from_pixel(w, h, image::Rgb([value, value / 2, 0]))
        .save(path)
        .unwrap();
}

#[test]
fn image_folders_with_classes_png_and_jpeg() {
    let tmp = tempfile::tempdir().unwrap();
    for (class, value) in [("cats", 200u8), ("dogs", 40)] {
        let d = tmp.path().join(class);
        std::fs::create_dir(&d).unwrap();
        for i in 0..10 {
            save_png(&d.join(format!("{i}.png")), 12, 10, value);
        }
        image::RgbImage::from_pixel(9, 9, image::Rgb([value, value, value]))
            .save(d.join("x.jpg"))
            .unwrap();
        std::fs::write(d.join("notes.txt"), "not an image").unwrap();
    }
    let opts = ImageOptions {
        image_size: Some(8),
        channels: Some(3),
    };
    let train = load_images(tmp.path().to_str().unwrap(), Split::Train, &opts).unwrap();
    let test = load_images(tmp.path().to_str().unwrap(), Split::Test, &opts).unwrap();
    assert_eq!(train.len() + test.len(), 22);
    assert_eq!(test.len(), 2);
    assert_eq!(train.class_names, vec!["cats", "dogs"]);
    assert_eq!(train.n_classes, 2);
    assert_eq!(train.shape(), (3, 8, 8));
    let labels = train.labels.as_ref().unwrap();
    let first_dog = labels.iter().position(|&l| l == 1).unwrap();
    assert_eq!(train.image(0)[0], 200);
    assert_eq!(train.image(first_dog)[0], 40);
    // Grey conversion keeps one channel.
    let grey = load_images(
        tmp.path().to_str().unwrap(),
        Split::Train,
        &ImageOptions {
            image_size: Some(8),
            channels: Some(1),
        },
    )
    .unwrap();
    assert_eq!(grey.shape(), (1, 8, 8));
    // An image file that does not decode is an input error naming it.
    std::fs::write(tmp.path().join("dogs/broken.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
    let err = load_images(tmp.path().to_str().unwrap(), Split::Train, &opts).unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err:?}");
    assert!(err.to_string().contains("broken.png"), "{err}");
    // An empty folder says so.
    let empty = tempfile::tempdir().unwrap();
    let err = load_images(empty.path().to_str().unwrap(), Split::Train, &opts).unwrap_err();
    assert!(err.to_string().contains("no PNG or JPEG"), "{err}");
}

#[test]
fn grids_and_strips_are_pngs_labelled_ai_generated() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = Tensor::rand(0f32, 1f32, (10, 3, 6, 6), &Device::Cpu).unwrap();
    let path = tmp.path().join("sub/grid.png");
    grid::write_grid(&path, &imgs, 4, &Default::default()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let meta = images::png_meta::read_png_metadata(&bytes).unwrap();
    assert!(
        meta.xmp
            .is_some_and(|x| x.contains("trainedAlgorithmicMedia"))
    );
    let texts = meta.texts;
    assert!(
        texts
            .iter()
            .any(|(k, v)| k == "Comment" && v == muse_core::AI_GENERATED_NOTICE),
        "{texts:?}"
    );
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (4 * 8 + 2, 3 * 8 + 2));
    let rows = vec![
        Tensor::zeros((5, 1, 4, 4), DType::F32, &Device::Cpu).unwrap(),
        Tensor::ones((5, 1, 4, 4), DType::F32, &Device::Cpu).unwrap(),
    ];
    let strip = tmp.path().join("strip.png");
    let prov = images::provenance::Provenance::default().caption("interpolation");
    grid::write_strip(&strip, &rows, &prov).unwrap();
    let img = image::open(&strip).unwrap().to_luma8();
    assert_eq!((img.width(), img.height()), (5 * 6 + 2, 2 * 6 + 2));
    assert_eq!(img.get_pixel(2, 2).0[0], 0);
    assert_eq!(img.get_pixel(2, 8).0[0], 255);
    // Reading an image back as a model input.
    let x = grid::read_image(&strip, 8, 1).unwrap();
    assert_eq!(x.dims(), &[1, 1, 8, 8]);
}
