//! Copying in generated images: each sample's nearest training image (L2, in pixels or in
//! classifier features), against the same nearest-training distances of held-out test images.
//! A model that gives back training images makes samples much closer to the training set than
//! unseen real images are; the share of samples closer than the test images' 1st percentile
//! is the signal (about 1% for a model that copies nothing).

use candle_core::{D, DType, Device, Tensor};
use serde::Serialize;

use crate::error::Result;

/// Training rows compared per matrix product.
const CHUNK: usize = 8192;

/// The nearest reference row of each query row: (exact L2 distance, reference index).
///
/// `queries` is (n, d) and `refs` (m, d), both row-major f32. Distances come from one matrix
/// product per chunk of references (|q|^2 + |r|^2 - 2 q.r), and the winner's distance is then
/// recomputed exactly, so a duplicate reads 0.
pub fn nearest(
    queries: &[f32],
    refs: &[f32],
    d: usize,
    device: &Device,
) -> Result<Vec<(f64, usize)>> {
    let n = queries.len() / d;
    let m = refs.len() / d;
    if n == 0 || m == 0 {
        return Ok(Vec::new());
    }
    let q = Tensor::from_slice(queries, (n, d), device)?;
    let qn = q.sqr()?.sum_keepdim(1)?; // (n, 1)
    let mut best = vec![(f32::INFINITY, 0usize); n];
    for start in (0..m).step_by(CHUNK) {
        let rows = CHUNK.min(m - start);
        let r = Tensor::from_slice(&refs[start * d..(start + rows) * d], (rows, d), device)?;
        let rn = r.sqr()?.sum_keepdim(1)?.t()?; // (1, rows)
        let d2 = qn.broadcast_add(&rn)?.sub(&(q.matmul(&r.t()?)? * 2.0)?)?; // (n, rows)
        let min = d2.min(D::Minus1)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let arg = d2.argmin(D::Minus1)?.to_vec1::<u32>()?;
        for (i, (v, a)) in min.into_iter().zip(arg).enumerate() {
            if v < best[i].0 {
                best[i] = (v, start + a as usize);
            }
        }
    }
    Ok(best
        .into_iter()
        .enumerate()
        .map(|(i, (_, j))| {
            let a = &queries[i * d..(i + 1) * d];
            let b = &refs[j * d..(j + 1) * d];
            let s: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
            (s.sqrt(), j)
        })
        .collect())
}

/// Quantiles of a set of distances.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Quantiles {
    pub min: f64,
    pub p01: f64,
    pub p05: f64,
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
}

impl Quantiles {
    /// Quantiles with linear interpolation between order statistics; `values` must not be
    /// empty.
    pub fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let x = p * (v.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
        };
        Self {
            min: v[0],
            p01: q(0.01),
            p05: q(0.05),
            p25: q(0.25),
            median: q(0.5),
            p75: q(0.75),
        }
    }
}

/// One space's verdict: samples' and test images' distances to their nearest training image.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct NearestAudit {
    /// `pixels` (L2 over pixels in [0, 1]) or `features` (the classifier's penultimate layer).
    pub space: String,
    pub samples: Quantiles,
    pub test: Quantiles,
    /// The test images' 1st percentile: a sample closer than this is suspiciously close.
    pub threshold: f64,
    /// Share of samples closer than `threshold` (about 0.01 when nothing is copied).
    pub share_below: f64,
    /// The samples closest to a training image, closest first: (sample, training image,
    /// distance).
    pub closest: Vec<(usize, usize, f64)>,
}

/// Compares the samples' and the test images' nearest-training distances.
pub fn judge(space: &str, samples: &[(f64, usize)], test: &[(f64, usize)]) -> NearestAudit {
    let ds: Vec<f64> = samples.iter().map(|x| x.0).collect();
    let dt: Vec<f64> = test.iter().map(|x| x.0).collect();
    let test_q = Quantiles::of(&dt);
    let threshold = test_q.p01;
    let below = ds.iter().filter(|&&x| x < threshold).count();
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by(|&a, &b| ds[a].total_cmp(&ds[b]));
    NearestAudit {
        space: space.to_string(),
        samples: Quantiles::of(&ds),
        test: test_q,
        threshold,
        share_below: below as f64 / ds.len() as f64,
        closest: order
            .into_iter()
            .take(3)
            .map(|i| (i, samples[i].1, ds[i]))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(q: &[f32], r: &[f32], d: usize) -> Vec<(f64, usize)> {
        q.chunks(d)
            .map(|a| {
                r.chunks(d)
                    .enumerate()
                    .map(|(j, b)| {
                        let s: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
                        (s.sqrt(), j)
                    })
                    .min_by(|x, y| x.0.total_cmp(&y.0))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn nearest_agrees_with_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let d = 17;
        let r: Vec<f32> = (0..(CHUNK + 50) * d).map(|_| rng.random()).collect();
        let mut q: Vec<f32> = (0..9 * d).map(|_| rng.random()).collect();
        q[..d].copy_from_slice(&r[(CHUNK + 7) * d..(CHUNK + 8) * d]);
        let got = nearest(&q, &r, d, &Device::Cpu).unwrap();
        let want = brute(&q, &r, d);
        assert_eq!(got[0], (0.0, CHUNK + 7));
        for (g, w) in got.iter().zip(&want) {
            assert!((g.0 - w.0).abs() < 1e-6, "{g:?} vs {w:?}");
        }
    }

    #[test]
    fn quantiles_interpolate() {
        let q = Quantiles::of(&[4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!((q.min, q.p25, q.median, q.p75), (1.0, 2.0, 3.0, 4.0));
        assert!((q.p01 - 1.04).abs() < 1e-12);
    }
}
