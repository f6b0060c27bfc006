//! Applying a drawn dropout mask, forward and backward in one pass each, reading the mask's bits.
//!
//! Composed from candle ops (`x * mask`, see [`reference::dropout`]) this costs a float copy of
//! the mask, and candle's backward of a product also computes, stores and sums the gradient of
//! the mask itself (two more full-size passes and a zeroed buffer), which nothing reads.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

use super::cpu::{CpuRead, f32_slice, map_chunks, rows_per_task, tensor};
use super::{fast_path, reference};
use crate::nn::dropout::KeepMask;

/// `x` times the mask's factors (`1 / (1 - p)` where kept, 0 where dropped).
///
/// # Shapes
/// `x`: any, with `mask.len()` elements -> same shape.
pub fn dropout(x: &Tensor, mask: KeepMask) -> Result<Tensor> {
    if x.elem_count() != mask.len() {
        bail!(
            "dropout mask of {} elements does not fit {:?}",
            mask.len(),
            x.shape()
        )
    }
    if !fast_path(&[x]) {
        return reference::dropout(x, &mask);
    }
    x.contiguous()?.apply_op1(DropoutOp { mask })
}

struct DropoutOp {
    mask: KeepMask,
}

const NAME: &str = "muse-dropout";

/// `y[i] = x[i] * factor(64 * first_word + i)`: a run of the input that starts at mask word
/// `first_word`.
fn kernel(mask: &KeepMask, first_word: usize, x: &[f32], y: &mut [MaybeUninit<f32>]) {
    let scale = mask.scale();
    for (w, (xs, ys)) in x.chunks(64).zip(y.chunks_mut(64)).enumerate() {
        let word = mask.word(first_word + w);
        for (j, (y, &x)) in ys.iter_mut().zip(xs).enumerate() {
            // Branch-free, so the loop vectorises.
            let keep = (word >> j & 1) as f32;
            y.write(x * (keep * scale));
        }
    }
}

/// The kernel over all of `x`, in whole-word chunks split across threads.
fn run(mask: &KeepMask, x: &[f32]) -> Vec<f32> {
    let words = x.len().div_ceil(64);
    let chunk = 64 * rows_per_task(words, 64 * 2);
    // SAFETY: the kernel writes every element of its chunk.
    unsafe { map_chunks(x, chunk, |i, x, y| kernel(mask, i * chunk / 64, x, y)) }
}

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = run(&self.mask, f32_slice(s, l, NAME)?);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// `dx = dy * factor`: the same masking of the incoming gradient.
    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let dyr = CpuRead::new(&dy, NAME)?;
        Ok(Some(tensor(run(&self.mask, dyr.slice()), x.shape())?))
    }
}
