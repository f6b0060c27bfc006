//! Transformed kernels kept between calls while the weights are known not to change.
//!
//! Sampling runs the same convolutions with the same weights 50 or 1,000 times, and redoing
//! [`filters`] every call cost 5% of a DDIM run. Whether a weight can change is not visible
//! from the tensor: the model that draws a training run's progress grids holds detached
//! tensors that share the storage of the `Var`s the optimizer writes in place. So the caller
//! says so: while a [`FrozenWeights`] guard lives, this thread keys transformed kernels by
//! the weight tensor's id (ids are never reused), and the guard's drop forgets them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use candle_core::TensorId;

use super::filters;

/// At most this many floats of transformed kernels per scope (256 MiB); past it the scope
/// starts over (a model that made new weight tensors every call would only grow it).
const MAX_FLOATS: usize = 64 << 20;

#[derive(Default)]
struct Cache {
    by_weight: HashMap<(TensorId, bool), Arc<Vec<f32>>>,
    floats: usize,
}

thread_local! {
    /// `Some` while a [`FrozenWeights`] guard of this thread lives.
    static SCOPE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// While this lives, no weight that the convolutions of this thread read changes, so their
/// transformed kernels are computed once and reused (sampling loops hold one).
#[must_use = "the weights count as frozen only while the guard lives"]
pub struct FrozenWeights {
    /// The guard that opened the scope (an inner one leaves it to the outer).
    opened: bool,
}

impl FrozenWeights {
    pub fn begin() -> Self {
        let opened = SCOPE.with_borrow_mut(|s| {
            let fresh = s.is_none();
            if fresh {
                *s = Some(Cache::default());
            }
            fresh
        });
        FrozenWeights { opened }
    }
}

impl Drop for FrozenWeights {
    fn drop(&mut self) {
        if self.opened {
            SCOPE.with_borrow_mut(|s| *s = None);
        }
    }
}

/// [`filters`] of the weight `id` (data `w`): from this thread's scope when one is open.
pub(in super::super) fn filters_of(
    w: &[f32],
    co: usize,
    ci: usize,
    flipped: bool,
    id: TensorId,
) -> Arc<Vec<f32>> {
    let key = (id, flipped);
    let cached = SCOPE.with_borrow(|s| s.as_ref().map(|c| c.by_weight.get(&key).cloned()));
    match cached {
        None => Arc::new(filters(w, co, ci, flipped)),
        Some(Some(u)) => u,
        Some(None) => {
            let u = Arc::new(filters(w, co, ci, flipped));
            SCOPE.with_borrow_mut(|s| {
                if let Some(cache) = s {
                    if cache.floats + u.len() > MAX_FLOATS {
                        *cache = Cache::default();
                    }
                    cache.floats += u.len();
                    cache.by_weight.insert(key, u.clone());
                }
            });
            u
        }
    }
}
