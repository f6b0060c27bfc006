//! The key/value cache for token-by-token decoding.
//!
//! Generation owns the cache and passes it to the model by `&mut`; the model never hides state
//! inside itself, so a training forward and a cached forward can share the same weights.
//! Buffers are allocated once at full capacity and written in place, so each new token costs
//! the same whatever the context length so far.

use candle_core::{DType, Device, Result, Tensor};

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
        let alloc = || Tensor::zeros((batch, capacity, dim), dtype, device);
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
        let (len, spare) = (self.len, self.capacity - self.len);
        for buf in self.keys.iter_mut().chain(self.values.iter_mut()) {
            // Only the stored positions are gathered; the rest of the buffer is fresh zeros.
            let kept = buf.narrow(1, 0, len)?.contiguous()?.index_select(rows, 0)?; // (N, len, dim)
            *buf = kept.pad_with_zeros(1, 0, spare)?.contiguous()?; // (N, capacity, dim)
        }
        Ok(())
    }

    /// Marks `t_new` positions as stored, after every layer appended them.
    pub fn advance(&mut self, t_new: usize) {
        self.len += t_new;
    }
}
