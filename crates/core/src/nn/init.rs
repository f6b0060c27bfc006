//! Seeded weight initialisation.
//!
//! candle's own initialisers draw from an unseedable CPU generator. Models are therefore built
//! on a `VarMap` (zeros), then every variable is filled here from a ChaCha stream seeded by
//! (seed, variable name), so the result depends only on the seed and the names, not on the
//! order in which layers were created.

use candle_core::{Result, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// How one variable starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Normal(0, std).
    Normal(f64),
    /// Uniform(-a, a).
    Uniform(f64),
    /// Every element equal to this value.
    Const(f64),
}

/// Fills every variable of `varmap` according to `rule(name, dims)`.
pub fn init_varmap(
    varmap: &VarMap,
    seed: u64,
    rule: impl Fn(&str, &[usize]) -> Init,
) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock is never poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n = var.elem_count();
        let values: Vec<f32> = match rule(name, &dims) {
            Init::Const(c) => vec![c as f32; n],
            Init::Normal(std) => {
                let mut rng = rng_for(seed, name);
                let normal = Normal::new(0.0, std).expect("std is finite and non-negative");
                (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
            }
            Init::Uniform(a) => {
                let mut rng = rng_for(seed, name);
                let uniform = rand_distr::Uniform::new_inclusive(-a, a).expect("bounds are finite");
                (0..n).map(|_| uniform.sample(&mut rng) as f32).collect()
            }
        };
        let t = Tensor::from_vec(values, dims.as_slice(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// A generator seeded by the run seed and a stable hash of the variable name (FNV-1a).
fn rng_for(seed: u64, name: &str) -> ChaCha8Rng {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    ChaCha8Rng::seed_from_u64(seed ^ hash)
}
