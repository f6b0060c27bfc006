//! The Fréchet distance between two Gaussians fitted to feature sets (Heusel et al., "GANs
//! Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", 2017 — FID):
//!
//! ```text
//! d² = |mu1 - mu2|² + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))
//! ```
//!
//! pytorch-fid computes the last term with `scipy.linalg.sqrtm(S1 @ S2)`. `S1 S2` is similar to
//! the symmetric `S1^(1/2) S2 S1^(1/2)` (AB and BA share eigenvalues), so here both square
//! roots come from symmetric eigendecompositions (cyclic Jacobi, in f64), which needs no complex
//! arithmetic and stays stable when the covariances are singular.

/// Mean and covariance of a set of feature vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussian {
    /// Feature dimension.
    pub dim: usize,
    /// (dim,)
    pub mean: Vec<f64>,
    /// (dim, dim), row-major; unbiased (divided by n - 1, as `numpy.cov`).
    pub cov: Vec<f64>,
    /// Number of vectors it was fitted to.
    pub count: usize,
}

impl Gaussian {
    /// Fits mean and covariance to `n = features.len() / dim` row vectors.
    ///
    /// # Shapes
    /// `features`: (n, dim) row-major.
    pub fn fit(features: &[f32], dim: usize) -> Self {
        assert!(
            dim > 0 && features.len().is_multiple_of(dim),
            "features are (n, dim)"
        );
        let n = features.len() / dim;
        let mut mean = vec![0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let mut cov = vec![0f64; dim * dim];
        let mut centred = vec![0f64; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &x), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = x as f64 - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                if ci == 0.0 {
                    continue;
                }
                let out = &mut cov[i * dim..(i + 1) * dim];
                for (o, &cj) in out[i..].iter_mut().zip(&centred[i..]) {
                    *o += ci * cj;
                }
            }
        }
        let denom = (n.max(2) - 1) as f64;
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / denom;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Self {
            dim,
            mean,
            cov,
            count: n,
        }
    }
}

/// The Fréchet distance between two fitted Gaussians (FID when the features are a classifier's).
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    assert_eq!(a.dim, b.dim, "feature dimensions differ");
    let d = a.dim;
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
    let covmean_trace = trace_sqrt_product(&a.cov, &b.cov, d);
    mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * covmean_trace
}

/// `Tr((S1 S2)^(1/2))` for symmetric positive semi-definite S1, S2 (d x d).
pub fn trace_sqrt_product(s1: &[f64], s2: &[f64], d: usize) -> f64 {
    let root = sqrt_psd(s1, d);
    let m = matmul(&matmul(&root, s2, d), &root, d);
    let (values, _) = symmetric_eigen(&symmetrise(&m, d), d);
    values.iter().map(|&l| l.max(0.0).sqrt()).sum()
}

/// The symmetric square root of a PSD matrix (negative eigenvalues from rounding set to 0).
pub fn sqrt_psd(s: &[f64], d: usize) -> Vec<f64> {
    let (values, vectors) = symmetric_eigen(s, d);
    let mut out = vec![0f64; d * d];
    for (k, &l) in values.iter().enumerate() {
        let r = l.max(0.0).sqrt();
        if r == 0.0 {
            continue;
        }
        for i in 0..d {
            let vi = vectors[i * d + k] * r;
            for j in 0..d {
                out[i * d + j] += vi * vectors[j * d + k];
            }
        }
    }
    out
}

/// Eigenvalues and eigenvectors (columns of the returned row-major matrix) of a symmetric
/// matrix, by cyclic Jacobi rotations until the off-diagonal mass is negligible.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum();
        if off <= 1e-30 * total.max(1e-300) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let (app, aqq) = (a[p * d + p], a[q * d + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A <- J^T A J on rows/columns p and q.
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0f64; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            if aik == 0.0 {
                continue;
            }
            let row = &b[k * d..(k + 1) * d];
            for (o, &bkj) in out[i * d..(i + 1) * d].iter_mut().zip(row) {
                *o += aik * bkj;
            }
        }
    }
    out
}

fn symmetrise(m: &[f64], d: usize) -> Vec<f64> {
    let mut out = m.to_vec();
    for i in 0..d {
        for j in i + 1..d {
            let v = 0.5 * (m[i * d + j] + m[j * d + i]);
            out[i * d + j] = v;
            out[j * d + i] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_of_a_known_matrix() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let (mut vals, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        vals.sort_by(f64::total_cmp);
        assert!((vals[0] - 1.0).abs() < 1e-12 && (vals[1] - 3.0).abs() < 1e-12);
        let r = sqrt_psd(&[4.0, 0.0, 0.0, 9.0], 2);
        assert!((r[0] - 2.0).abs() < 1e-12 && (r[3] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn identical_sets_are_at_distance_zero() {
        let f: Vec<f32> = (0..60).map(|i| ((i * 37) % 11) as f32).collect();
        let g = Gaussian::fit(&f, 3);
        assert!(frechet_distance(&g, &g).abs() < 1e-9);
    }
}
