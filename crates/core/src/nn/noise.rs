//! Seeded Gaussian noise tensors (candle's CPU generator cannot be seeded): reparameterisation
//! noise, latent batches, input corruption. The values are a pure function of (seed, stream),
//! so a resumed run draws what the uninterrupted one drew.

use candle_core::{Device, Result, Shape, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// A tensor of independent N(0, 1) values drawn from the ChaCha stream (seed, stream).
pub fn standard_normal(
    shape: impl Into<Shape>,
    seed: u64,
    stream: u64,
    device: &Device,
) -> Result<Tensor> {
    let shape = shape.into();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let values: Vec<f32> = (0..shape.elem_count())
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_vec(values, shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_roughly_standard() {
        let a = standard_normal((100, 100), 3, 1, &Device::Cpu).unwrap();
        let b = standard_normal((100, 100), 3, 1, &Device::Cpu).unwrap();
        let c = standard_normal((100, 100), 3, 2, &Device::Cpu).unwrap();
        let (a, b, c): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            a.flatten_all().unwrap().to_vec1().unwrap(),
            b.flatten_all().unwrap().to_vec1().unwrap(),
            c.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
