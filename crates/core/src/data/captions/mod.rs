//! Captioned colour images for text-to-image training, made from a labelled grey dataset
//! (MNIST or Fashion-MNIST): every image is tinted with one of eight named colours and
//! described by a sentence drawn from templates with synonyms ("a red sneaker", "crimson
//! running shoe", "a picture of a pair of trainers in scarlet").
//!
//! The point is that the text must matter beyond a class label: the colour is only in the
//! caption. Some (class, colour) pairs and some wordings (templates and synonyms) never occur
//! in training, so evaluation can ask whether the model generalises to new combinations and
//! to new words (through the frozen pretrained text encoder).
//!
//! Tinting (documented in docs/diffusion.md): the grey intensity `v` in [0, 1] of each pixel
//! becomes `v * colour` on the black background, and every palette colour has a largest
//! channel of 1, so the grey image is recovered exactly as the largest channel of each pixel
//! ([`grey_of`]). The colour of training image `i` is a pure function of (seed, i), drawn
//! uniformly among the colours allowed for its class.

mod palette;
mod wording;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use palette::{COLOURS, Colour, dominant_colour, hue_of};
pub use wording::{CaptionSet, Wording, WordingSplit, caption, is_held_out_pair};

use crate::data::images::ImageDataset;
use crate::error::{Error, Result};

/// Random stream of the colour assignment (apart from every training stream).
const TINT_STREAM: u64 = 0x5449_4e54; // "TINT"

/// A grey dataset tinted per image, with the colour index of each image.
#[derive(Clone, Debug)]
pub struct TintedDataset {
    /// RGB images (N, 3, H, W), with the grey dataset's labels.
    pub images: ImageDataset,
    /// Index into [`COLOURS`] of each image.
    pub colours: Vec<u8>,
    pub set: CaptionSet,
}

impl TintedDataset {
    /// Colours every image of the grey, labelled `ds`. Without `allow_all` (training) no image
    /// gets a held-out (class, colour) pair; with it (a test split) every pair occurs.
    pub fn new(ds: &ImageDataset, set: CaptionSet, seed: u64, allow_all: bool) -> Result<Self> {
        let labels = ds.labels.as_ref().ok_or_else(|| {
            Error::input(format!(
                "{} has no labels: captions name the class, so text-to-image needs a labelled \
                 dataset (mnist or fashion-mnist)",
                ds.record.name
            ))
        })?;
        if ds.channels != 1 {
            return Err(Error::input(format!(
                "{} has {} channels: tinting starts from grey images",
                ds.record.name, ds.channels
            )));
        }
        if ds.n_classes > set.classes() {
            return Err(Error::input(format!(
                "{} has {} classes but the {} captions name {}",
                ds.record.name,
                ds.n_classes,
                set.name(),
                set.classes()
            )));
        }
        let colours: Vec<u8> = labels
            .iter()
            .enumerate()
            .map(|(i, &class)| colour_for(seed, i, class as usize, allow_all))
            .collect();
        let hw = ds.height * ds.width;
        let mut pixels = Vec::with_capacity(ds.images.len() * 3);
        for (i, &k) in colours.iter().enumerate() {
            let rgb = COLOURS[k as usize].rgb;
            for c in rgb {
                pixels.extend(
                    ds.image(i)[..hw]
                        .iter()
                        .map(|&v| (v as f32 * c).round() as u8),
                );
            }
        }
        let mut record = ds.record.clone();
        record.name = format!("{}-tinted", ds.record.name);
        let mut images = ImageDataset::from_parts(
            pixels,
            Some(labels.clone()),
            (3, ds.height, ds.width),
            record,
            ds.split,
        )?;
        images.n_classes = ds.n_classes;
        images.class_names = ds.class_names.clone();
        Ok(Self {
            images,
            colours,
            set,
        })
    }

    pub fn len(&self) -> usize {
        self.colours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.colours.is_empty()
    }

    /// The class label of image `i`.
    pub fn class(&self, i: usize) -> usize {
        self.images.labels.as_ref().map_or(0, |l| l[i] as usize)
    }
}

/// The colour of image `i` of class `class`: uniform over the colours allowed for the class
/// (all of them with `allow_all`), from the stream of (seed, i).
pub fn colour_for(seed: u64, i: usize, class: usize, allow_all: bool) -> u8 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ TINT_STREAM);
    rng.set_stream(i as u64);
    let allowed: Vec<usize> = (0..COLOURS.len())
        .filter(|&k| allow_all || !is_held_out_pair(class, k))
        .collect();
    allowed[rng.random_range(0..allowed.len())] as u8
}

/// The grey image behind a tinted one: the largest channel of each pixel.
///
/// # Shapes
/// `rgb`: (N, 3, H, W) in [0, 1] -> (N, 1, H, W).
pub fn grey_of(rgb: &candle_core::Tensor) -> Result<candle_core::Tensor> {
    Ok(rgb.max_keepdim(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::{Scale, Split};
    use crate::run_dir::DatasetRecord;

    fn grey(n: usize) -> ImageDataset {
        let pixels: Vec<u8> = (0..n * 16).map(|i| ((i * 37) % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let record = DatasetRecord {
            name: "fashion-mnist".into(),
            path: "synthetic".into(),
            sha256: String::new(),
        };
        ImageDataset::from_parts(pixels, Some(labels), (1, 4, 4), record, Split::Train).unwrap()
    }

    #[test]
    fn tinting_keeps_the_grey_image_and_avoids_held_out_pairs() {
        let ds = grey(400);
        let t = TintedDataset::new(&ds, CaptionSet::Fashion, 5, false).unwrap();
        assert_eq!(t.images.shape(), (3, 4, 4));
        assert_eq!(t.images.labels, ds.labels);
        let dev = candle_core::Device::Cpu;
        let idx: Vec<usize> = (0..ds.len()).collect();
        let rgb = t.images.batch(&idx, Scale::Unit, &dev).unwrap();
        let back = grey_of(&rgb).unwrap();
        let orig = ds.batch(&idx, Scale::Unit, &dev).unwrap();
        let err = (back - orig).unwrap().abs().unwrap().max_all().unwrap();
        assert!(err.to_scalar::<f32>().unwrap() <= 0.5 / 255.0 + 1e-6);
        for i in 0..t.len() {
            assert!(
                !is_held_out_pair(t.class(i), t.colours[i] as usize),
                "image {i}"
            );
        }
        // Every allowed colour occurs, and the same seed gives the same tints.
        let used: std::collections::BTreeSet<u8> = t.colours.iter().copied().collect();
        assert_eq!(used.len(), COLOURS.len());
        let again = TintedDataset::new(&ds, CaptionSet::Fashion, 5, false).unwrap();
        assert_eq!(again.colours, t.colours);
        // A test split gets every pair, held-out ones too.
        let test = TintedDataset::new(&ds, CaptionSet::Fashion, 5, true).unwrap();
        assert!((0..test.len()).any(|i| is_held_out_pair(test.class(i), test.colours[i] as usize)));
        // Tinted images are judged as the colour they were given.
        let judged = dominant_colour(&rgb.narrow(0, 1, 8).unwrap()).unwrap();
        for (j, k) in judged.iter().enumerate() {
            assert_eq!(*k, Some(t.colours[1 + j] as usize));
        }
    }

    #[test]
    fn unlabelled_or_colour_data_is_refused() {
        let mut ds = grey(10);
        ds.labels = None;
        let err = TintedDataset::new(&ds, CaptionSet::Mnist, 1, false).unwrap_err();
        assert!(err.to_string().contains("labelled"), "{err}");
        assert_eq!(
            CaptionSet::for_dataset("/x/fashion-mnist/"),
            Some(CaptionSet::Fashion)
        );
        assert_eq!(CaptionSet::for_dataset("mnist"), Some(CaptionSet::Mnist));
        assert_eq!(CaptionSet::for_dataset("cifar"), None);
    }
}
