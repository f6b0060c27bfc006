//! `muse eval RUN` for a diffusion model: FID, class coverage and label accuracy of DDIM
//! samples through the reference classifier (as for GANs and VAEs); and for text-to-image
//! (or a label-only model trained on the same tinted images), class and colour accuracy on
//! training wordings, held-out wordings and held-out (class, colour) pairs, next to chance.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use serde::Serialize;

use super::image::{FloorFrom, ImageMetrics, Reconstruct, image_metrics};
use crate::data::captions::{
    COLOURS, CaptionSet, Wording, WordingSplit, caption, dominant_colour, grey_of, is_held_out_pair,
};
use crate::data::images::ImageDataset;
use crate::embed::SentenceEncoder;
use crate::error::{Error, Result};
use crate::models::classifier::Classifier;
use crate::sample::diffusion::{
    Conditioning, DiffusionRun, ImageSpace, PromptStates, SampleOptions, labels_for, sample,
};
use crate::train::progress::Progress;

/// How to sample for an evaluation.
#[derive(Clone, Debug)]
pub struct DiffusionEvalOptions {
    pub samples: usize,
    /// DDIM steps (eta 0).
    pub steps: usize,
    /// Guidance weight of a conditional model.
    pub guidance: f64,
    pub seed: u64,
    /// Images per sampling call.
    pub batch: usize,
}

/// FID and coverage (and label accuracy) of `run`'s samples against `reference`, with the floor
/// of as many images of `train` (and, for a latent model, of their reconstructions by its VAE).
pub fn diffusion_image_metrics(
    run: &DiffusionRun,
    classifier: &Classifier,
    classifier_dir: &std::path::Path,
    reference: &ImageDataset,
    train: &ImageDataset,
    o: &DiffusionEvalOptions,
    device: &Device,
) -> Result<ImageMetrics> {
    let cfg = run.model.config();
    let progress = Progress::new("eval", 0, o.samples as u64);
    let mut done = 0;
    let mut generate = |i: usize, count: usize| -> Result<(Tensor, Option<Vec<u32>>)> {
        let mut opts = SampleOptions::ddim(o.steps, o.seed.wrapping_add(i as u64));
        // Classes in turn, continuing across batches.
        let labels = labels_for(cfg, done + count, None)?.map(|l| l[done..].to_vec());
        opts.condition = Conditioning::labels(labels.clone());
        opts.guidance = o.guidance;
        let images = sample(&run.model, &run.space, &run.schedule, count, &opts, device)?.images;
        done += count;
        progress.set(done as u64);
        Ok((images, labels))
    };
    // A latent model's images can be no better than its VAE's reconstructions.
    let through_vae = match &run.space {
        ImageSpace::Latent(codec) => {
            Some(|x: &Tensor| -> Result<Tensor> { Ok(codec.decode(&codec.posterior(x)?.0)?) })
        }
        ImageSpace::Pixels => None,
    };
    let from = FloorFrom {
        train,
        reconstruct: through_vae.as_ref().map(|f| f as &Reconstruct),
    };
    let m = image_metrics(
        classifier,
        classifier_dir,
        reference,
        o.samples,
        o.batch,
        Some((from, o.seed)),
        device,
        &mut generate,
    )?;
    progress.finish();
    Ok(m)
}

/// Which requests a text-to-image evaluation makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSplit {
    /// Pairs and wordings training saw.
    Training,
    /// Pairs training saw, in the held-out templates and synonyms.
    HeldOutWordings,
    /// The held-out (class, colour) pairs, in training wordings.
    HeldOutPairs,
}

impl PromptSplit {
    pub const ALL: [PromptSplit; 3] = [Self::Training, Self::HeldOutWordings, Self::HeldOutPairs];

    pub fn describe(self) -> &'static str {
        match self {
            Self::Training => "training pairs, training wordings",
            Self::HeldOutWordings => "training pairs, held-out wordings",
            Self::HeldOutPairs => "held-out pairs, training wordings",
        }
    }

    /// The (class, colour) pairs asked, in turn.
    fn pairs(self, set: CaptionSet) -> Vec<(usize, usize)> {
        let held = self == Self::HeldOutPairs;
        (0..set.classes())
            .flat_map(|c| (0..COLOURS.len()).map(move |k| (c, k)))
            .filter(|&(c, k)| is_held_out_pair(c, k) == held)
            .collect()
    }
}

/// Class and colour accuracy of one split.
#[derive(Clone, Debug, Serialize)]
pub struct PromptAccuracy {
    pub split: PromptSplit,
    pub samples: usize,
    /// The classifier's class of the grey version of each sample equals the class asked.
    pub class_accuracy: f64,
    /// The sample's dominant hue is nearest the colour asked.
    pub colour_accuracy: f64,
    /// A few of the prompts used.
    pub examples: Vec<String>,
}

/// How the model is told what to draw.
pub enum Asking<'a> {
    /// Text-to-image: a caption of the pair.
    Prompt(&'a SentenceEncoder),
    /// A label-only model: the class alone (the colour cannot be asked).
    Label,
}

/// Samples `o.samples` images for `split` (pairs in turn, wordings drawn from the split's
/// templates and synonyms) and judges class and colour.
pub fn prompt_accuracy(
    run: &DiffusionRun,
    set: CaptionSet,
    asking: &Asking,
    classifier: &Classifier,
    split: PromptSplit,
    o: &DiffusionEvalOptions,
    device: &Device,
) -> Result<PromptAccuracy> {
    if o.samples == 0 {
        return Err(Error::usage("--samples must be at least 1"));
    }
    let pairs = split.pairs(set);
    let wording = match split {
        PromptSplit::HeldOutWordings => WordingSplit::HeldOut,
        _ => WordingSplit::Train,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed);
    let asked: Vec<(usize, usize, String)> = (0..o.samples)
        .map(|i| {
            let (c, k) = pairs[i % pairs.len()];
            (c, k, caption(set, c, k, Wording::draw(wording, &mut rng)))
        })
        .collect();
    let progress = Progress::new(split.describe(), 0, o.samples as u64);
    let (mut class_ok, mut colour_ok) = (0usize, 0usize);
    for (b, chunk) in asked.chunks(o.batch.max(1)).enumerate() {
        let mut opts = SampleOptions::ddim(o.steps, o.seed.wrapping_add(b as u64));
        opts.guidance = o.guidance;
        opts.condition = match asking {
            Asking::Prompt(encoder) => {
                let prompts: Vec<String> = chunk.iter().map(|a| a.2.clone()).collect();
                Conditioning::Text(PromptStates::encode(encoder, &prompts)?)
            }
            Asking::Label => Conditioning::Labels(chunk.iter().map(|a| a.0 as u32).collect()),
        };
        let images = sample(
            &run.model,
            &run.space,
            &run.schedule,
            chunk.len(),
            &opts,
            device,
        )?
        .images;
        let classes = classifier.predict(&grey_of(&images)?)?;
        let colours = dominant_colour(&images)?;
        for ((c, k, _), (got_c, got_k)) in chunk.iter().zip(classes.iter().zip(&colours)) {
            class_ok += (*got_c as usize == *c) as usize;
            colour_ok += (*got_k == Some(*k)) as usize;
        }
        progress.set(((b + 1) * o.batch).min(o.samples) as u64);
    }
    progress.finish();
    let n = o.samples as f64;
    Ok(PromptAccuracy {
        split,
        samples: o.samples,
        class_accuracy: class_ok as f64 / n,
        colour_accuracy: colour_ok as f64 / n,
        examples: asked.iter().take(3).map(|a| a.2.clone()).collect(),
    })
}
