//! The reference image classifier: a small CNN in the shape of the PyTorch examples MNIST
//! network (LeCun et al. 1998; `pytorch/examples/mnist/main.py`), used to judge generated
//! images (FID on its penultimate features, class coverage, conditional accuracy).
//!
//! ```text
//! x in [0,1] -> 2x - 1 -> conv1 3x3 (32) -> ReLU -> maxpool 2
//!                      -> conv2 3x3 (64) -> ReLU -> maxpool 2
//!                      -> flatten -> fc1 (128) -> ReLU = features -> dropout -> fc2 -> logits
//! ```

use std::path::Path;

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::nn::conv::Conv2d;
use crate::nn::ops::WeightLayout;
use crate::nn::{Dropout, Linear};

/// Architecture of the classifier, stored as `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Input channels (1 grey, 3 RGB).
    pub channels: usize,
    /// Side of the square input images.
    pub image_size: usize,
    /// Output classes.
    pub n_classes: usize,
    /// Filters of the first convolution.
    pub conv1: usize,
    /// Filters of the second convolution.
    pub conv2: usize,
    /// Width of the penultimate layer (the features FID uses).
    pub hidden: usize,
    /// Dropout before the output layer while training.
    pub dropout: f32,
}

impl ClassifierConfig {
    /// The MNIST / Fashion-MNIST network: 28x28 grey, 10 classes, 32/64 filters, 128 features.
    pub fn mnist() -> Self {
        Self {
            channels: 1,
            image_size: 28,
            n_classes: 10,
            conv1: 32,
            conv2: 64,
            hidden: 128,
            dropout: 0.5,
        }
    }

    /// Checks the values once.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.channels != 1 && self.channels != 3 {
            return Err("channels must be 1 or 3".into());
        }
        if self.image_size < 4 {
            return Err("image_size must be at least 4".into());
        }
        if self.n_classes < 2 {
            return Err("n_classes must be at least 2 (the data needs labels)".into());
        }
        if self.conv1 == 0 || self.conv2 == 0 || self.hidden == 0 {
            return Err("conv1, conv2 and hidden must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err("dropout must be in [0, 1)".into());
        }
        Ok(())
    }

    /// Side of the feature map after the two poolings.
    fn pooled(&self) -> usize {
        self.image_size / 4
    }

    /// Number of parameters.
    pub fn parameter_count(&self) -> usize {
        let flat = self.conv2 * self.pooled() * self.pooled();
        (self.channels * 9 + 1) * self.conv1
            + (self.conv1 * 9 + 1) * self.conv2
            + (flat + 1) * self.hidden
            + (self.hidden + 1) * self.n_classes
    }
}

/// The CNN classifier. Tensor names follow the PyTorch module: `conv1.weight`, ..., `fc2.bias`.
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    cfg: ClassifierConfig,
}

impl Classifier {
    pub fn new(cfg: &ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        let flat = cfg.conv2 * cfg.pooled() * cfg.pooled();
        Ok(Self {
            conv1: Conv2d::new(cfg.channels, cfg.conv1, 3, 1, 1, vb.pp("conv1"))?,
            conv2: Conv2d::new(cfg.conv1, cfg.conv2, 3, 1, 1, vb.pp("conv2"))?,
            fc1: Linear::new(flat, cfg.hidden, true, WeightLayout::OutIn, vb.pp("fc1"))?,
            fc2: Linear::new(
                cfg.hidden,
                cfg.n_classes,
                true,
                WeightLayout::OutIn,
                vb.pp("fc2"),
            )?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// The penultimate activations (after ReLU): what FID compares.
    ///
    /// # Shapes
    /// `x`: (N, C, H, W) in [0, 1] -> (N, hidden).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let x = x.affine(2.0, -1.0)?; // [-1, 1]
        let x = self.conv1.forward(&x)?.relu()?.max_pool2d(2)?; // (N, conv1, H/2, W/2)
        let x = self.conv2.forward(&x)?.relu()?.max_pool2d(2)?; // (N, conv2, H/4, W/4)
        let x = x.reshape((n, ()))?; // (N, conv2 * H/4 * W/4)
        self.fc1.forward(&x)?.relu() // (N, hidden)
    }

    /// Class logits, with dropout on the features when `dropout` is active.
    ///
    /// # Shapes
    /// `x`: (N, C, H, W) in [0, 1] -> (N, n_classes).
    pub fn forward(&self, x: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let h = dropout.apply(&self.features(x)?)?;
        self.fc2.forward(&h)
    }

    /// Features and class probabilities of a batch (no dropout).
    ///
    /// # Shapes
    /// `x`: (N, C, H, W) in [0, 1] -> ((N, hidden), (N, n_classes)).
    pub fn features_and_probs(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.features(x)?;
        let probs = candle_nn::ops::softmax_last_dim(&self.fc2.forward(&h)?)?;
        Ok((h, probs))
    }

    /// Mean cross-entropy of the logits against `labels` (u32).
    ///
    /// # Shapes
    /// `x`: (N, C, H, W), `labels`: (N,) -> scalar.
    pub fn loss(&self, x: &Tensor, labels: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        crate::nn::ops::cross_entropy(&self.forward(x, dropout)?, labels)
    }
}

/// Reads `config.json` and `model.safetensors` of a classifier run.
pub fn load_classifier(dir: &Path, device: &Device) -> Result<Classifier> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", cfg_path.display())))?;
    let cfg: ClassifierConfig = serde_json::from_str(&text).map_err(|e| {
        candle_core::Error::msg(format!(
            "{} is not a classifier config: {e}",
            cfg_path.display()
        ))
    })?;
    let weights = dir.join("model.safetensors");
    // SAFETY: the file is memory-mapped read-only and not modified while the model lives.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[&weights], candle_core::DType::F32, device)?
    };
    Classifier::new(&cfg, vb)
}

impl Classifier {
    /// The class the classifier picks for each image, in batches of 500.
    ///
    /// # Shapes
    /// `images`: (N, C, H, W) in `[0, 1]` -> N labels.
    pub fn predict(&self, images: &Tensor) -> Result<Vec<u32>> {
        let n = images.dim(0)?;
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(500) {
            let m = 500.min(n - start);
            let (_, probs) = self.features_and_probs(&images.narrow(0, start, m)?)?;
            out.extend(probs.argmax(1)?.to_vec1::<u32>()?);
        }
        Ok(out)
    }
}

/// Which classes the classifier finds among samples.
#[derive(Clone, Debug, Serialize)]
pub struct Coverage {
    /// Samples assigned to each class.
    pub histogram: Vec<usize>,
    /// Classes holding at least a tenth of their uniform share (`0.1 * n / K` samples).
    pub classes_found: usize,
    pub n_classes: usize,
    /// Entropy of the histogram, bits (at most `log2 K`, reached by a uniform spread).
    pub entropy_bits: f64,
    /// `log2 K`.
    pub max_entropy_bits: f64,
}

/// Class coverage of predictions over `n_classes` classes.
pub fn class_coverage(predictions: &[u32], n_classes: usize) -> Coverage {
    let mut histogram = vec![0usize; n_classes];
    for &p in predictions {
        if let Some(h) = histogram.get_mut(p as usize) {
            *h += 1;
        }
    }
    let n = predictions.len().max(1) as f64;
    let threshold = 0.1 * n / n_classes.max(1) as f64;
    // p log2 p summed, then negated: one class alone gives +0, not -0.
    let entropy_bits = 0.0
        - histogram
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / n;
                p * p.log2()
            })
            .sum::<f64>();
    Coverage {
        classes_found: histogram
            .iter()
            .filter(|&&c| c as f64 >= threshold && c > 0)
            .count(),
        histogram,
        n_classes,
        entropy_bits,
        max_entropy_bits: (n_classes.max(1) as f64).log2(),
    }
}
