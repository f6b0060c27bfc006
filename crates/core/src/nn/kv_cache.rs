//! The key/value cache for token-by-token decoding.
//!
//! Generation owns the cache and passes it to the model by `&mut`; the model never hides state
//! inside itself, so a training forward and a cached forward can share the same weights.
//! Buffers are written in place, so each new token costs the same whatever the context length
//! so far. They start at [`INITIAL_POSITIONS`] and double (up to the capacity) when a token
//! needs more: a full-context buffer for SmolLM2's 8192 positions is 377 MB that the kernel
//! would map and zero before the first token of even a short reply.

use candle_core::{DType, Device, Result, Tensor};

/// Positions a fresh cache holds before it first grows.
pub const INITIAL_POSITIONS: usize = 256;

/// Keys and values of every layer for the positions seen so far.
#[derive(Clone, Debug)]
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `n_layer` layers holding up to `capacity` positions of width `dim`
    /// (n_kv_heads * head_size) for a batch of `batch`.
    pub fn new(
        n_layer: usize,
        batch: usize,
        capacity: usize,
        dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let alloc = || Tensor::zeros((batch, capacity.min(INITIAL_POSITIONS), dim), dtype, device);
        Ok(Self {
            keys: (0..n_layer).map(|_| alloc()).collect::<Result<_>>()?,
            values: (0..n_layer).map(|_| alloc()).collect::<Result<_>>()?,
            len: 0,
            capacity,
        })
    }

    /// Positions stored so far (the offset of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position (the buffers are kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Writes the keys and values of `t_new` new positions for `layer` and returns the keys and
    /// values of all positions so far. Call [`KvCache::advance`] once all layers are written.
    ///
    /// # Shapes
    /// `k`, `v`: (B, T_new, dim) -> (B, len + T_new, dim) each.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t_new = k.dim(1)?;
        if self.len + t_new > self.capacity {
            candle_core::bail!(
                "kv cache holds {} positions; {} + {t_new} asked",
                self.capacity,
                self.len
            );
        }
        let needed = self.len + t_new;
        grow(&mut self.keys[layer], self.len, needed, self.capacity)?;
        grow(&mut self.values[layer], self.len, needed, self.capacity)?;
        self.keys[layer].slice_set(&k.contiguous()?, 1, self.len)?;
        self.values[layer].slice_set(&v.contiguous()?, 1, self.len)?;
        let total = self.len + t_new;
        Ok((
            self.keys[layer].narrow(1, 0, total)?,
            self.values[layer].narrow(1, 0, total)?,
        ))
    }

    /// Keeps rows `rows` of the batch (indices, repeats allowed) in that order: how beam search
    /// follows its hypotheses from step to step. The batch becomes `rows.len()`.
    ///
    /// # Shapes
    /// `rows`: (N) u32.
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        let len = self.len;
        for buf in self.keys.iter_mut().chain(self.values.iter_mut()) {
            // Only the stored positions are gathered; the rest of the buffer is fresh zeros.
            let spare = buf.dim(1)? - len;
            let kept = buf.narrow(1, 0, len)?.contiguous()?.index_select(rows, 0)?; // (N, len, dim)
            *buf = kept.pad_with_zeros(1, 0, spare)?.contiguous()?; // (N, allocated, dim)
        }
        Ok(())
    }

    /// A separate cache holding this one's first `len` positions (the buffers are copied, so
    /// that writing to either leaves the other as it was).
    pub fn copy_prefix(&self, len: usize) -> Result<Self> {
        if len > self.len {
            candle_core::bail!("a copy of {len} positions from a cache of {}", self.len);
        }
        let copy = |buf: &Tensor| -> Result<Tensor> {
            let fresh = buf.zeros_like()?;
            if len > 0 {
                fresh.slice_set(&buf.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
            }
            Ok(fresh)
        };
        Ok(Self {
            keys: self.keys.iter().map(copy).collect::<Result<_>>()?,
            values: self.values.iter().map(copy).collect::<Result<_>>()?,
            len,
            capacity: self.capacity,
        })
    }

    /// Marks `t_new` positions as stored, after every layer appended them.
    pub fn advance(&mut self, t_new: usize) {
        self.len += t_new;
    }
}

/// Makes `buf` (B, allocated, dim) hold at least `needed` positions, doubling it (at most to
/// `capacity`) and keeping its first `len`.
fn grow(buf: &mut Tensor, len: usize, needed: usize, capacity: usize) -> Result<()> {
    let (b, allocated, dim) = buf.dims3()?;
    if needed <= allocated {
        return Ok(());
    }
    let bigger = Tensor::zeros(
        (b, needed.max(2 * allocated).min(capacity), dim),
        buf.dtype(),
        buf.device(),
    )?;
    if len > 0 {
        bigger.slice_set(&buf.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
    }
    *buf = bigger;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends past the first allocation, one position and several at a time, keep every
    /// stored position, and the capacity still bounds the cache.
    #[test]
    fn growing_keeps_every_position() {
        let dev = Device::Cpu;
        let (b, dim, cap) = (2, 3, 600);
        let mut cache = KvCache::new(1, b, cap, dim, DType::F32, &dev).unwrap();
        let all = Tensor::randn(0f32, 1.0, (b, cap, dim), &dev).unwrap();
        let mut at = 0;
        for step in [1, 7, INITIAL_POSITIONS, 1, 300, 1] {
            let new = all.narrow(1, at, step).unwrap();
            let (k, v) = cache.append(0, &new, &(&new * 2.0).unwrap()).unwrap();
            cache.advance(step);
            at += step;
            let want = all.narrow(1, 0, at).unwrap();
            let diff = |a: &Tensor, b: &Tensor| {
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            assert_eq!(k.dims(), &[b, at, dim]);
            assert_eq!(diff(&k, &want), 0.0, "keys after {at} positions");
            assert_eq!(
                diff(&v, &(&want * 2.0).unwrap()),
                0.0,
                "values after {at} positions"
            );
        }
        assert_eq!(at, 566);
        let one = all.narrow(1, 0, 40).unwrap();
        assert!(cache.append(0, &one, &one).is_err(), "past the capacity");
    }
}
