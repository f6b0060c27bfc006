//! Sinusoidal embedding of diffusion timesteps (Ho et al. 2020, after the positional encoding
//! of Vaswani et al. 2017), as `shared/bench/pytorch/ddpm_unet28.py`: `[sin(t f), cos(t f)]`
//! with `f_i = exp(-ln(10000) i / half)`, `i < half = dim / 2`.

use candle_core::{DType, Result, Tensor};

/// The embedding of each timestep, computed in f64 on the host (sin of an argument near 1000
/// loses 1e-4 in f32) and returned as f32.
///
/// # Shapes
/// `t`: (N) (any numeric dtype) -> (N, dim) f32, `dim` even.
pub fn timestep_embedding(t: &Tensor, dim: usize) -> Result<Tensor> {
    if dim < 2 || !dim.is_multiple_of(2) {
        candle_core::bail!("timestep_embedding: dim {dim} must be even and at least 2")
    }
    let half = dim / 2;
    let ts = t.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let mut out = Vec::with_capacity(ts.len() * dim);
    for &t in &ts {
        let args = (0..half).map(|i| t * (-(10000f64.ln()) * i as f64 / half as f64).exp());
        out.extend(args.clone().map(|a| a.sin() as f32));
        out.extend(args.map(|a| a.cos() as f32));
    }
    Tensor::from_vec(out, (ts.len(), dim), t.device()) // (N, dim)
}
