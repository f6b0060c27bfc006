//! Causal attention of a few new query positions over the keys and values in a KV cache: the
//! attention step of token-by-token decoding ("Attention Is All You Need", Vaswani et al.
//! 2017), fused for the CPU.
//!
//! The composed path ([`crate::nn::attention::causal_attention`]) copies the whole cache into
//! (B, nh, T, hs) heads and runs small matmuls and a softmax for every new token. Here each
//! (batch, head) task reads its queries and streams the cached keys and values where they lie,
//! (B, T, n_kv_head * hs) with any batch and position strides: scores, softmax and weighted sum
//! in one pass, no copies. Grouped-query heads read their shared key/value head. Forward only:
//! [`applies`] admits tensors that track no gradient.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::cpu::{rows_per_task, run_tasks};
use super::fast_path;
use super::math::{Fma, LANES, exp, simd_dispatch};

/// At most this many new query positions take the fused kernel, whole prompts included:
/// candle's composed path (matmul, mask, softmax) runs on one thread with a libm `expf` per
/// score, and the kernel, split over heads, beat it on a 512-token prompt (`muse bench
/// generate` pp512 on SmolLM2 Q4_1, 1 thread, AMD EPYC: 261 to 289 tokens/s).
pub const MAX_QUERIES: usize = 4096;

/// True when [`decode_attention`] can run: F32 CPU tensors tracking no gradient, at most
/// [`MAX_QUERIES`] queries, unit stride along the feature dimension.
pub fn applies(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    let unit_last = |t: &Tensor| t.rank() == 3 && t.layout().stride()[2] == 1;
    fast_path(&[q, k, v])
        && !(q.track_op() || k.track_op() || v.track_op())
        && q.dim(1).is_ok_and(|t| t <= MAX_QUERIES)
        && unit_last(q)
        && unit_last(k)
        && unit_last(v)
}

/// Causal attention of `q` over `k`, `v`: query `i` sits at position `Tk - Tq + i` and sees
/// keys `0..=Tk - Tq + i`. Same result as [`crate::nn::attention::causal_attention`] without
/// dropout.
///
/// # Shapes
/// `q`: (B, Tq, n_head * hs); `k`, `v`: (B, Tk, n_kv_head * hs), Tk >= Tq
/// -> (B, Tq, n_head * hs), contiguous.
pub fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    n_head: usize,
    n_kv_head: usize,
) -> Result<Tensor> {
    let (b, tq, c) = q.dims3()?;
    let (bk, tk, ckv) = k.dims3()?;
    if n_head == 0
        || n_kv_head == 0
        || !n_head.is_multiple_of(n_kv_head)
        || !c.is_multiple_of(n_head)
    {
        bail!("decode_attention: {n_head} heads over {n_kv_head} kv heads, width {c}")
    }
    let hs = c / n_head;
    if bk != b || v.dims() != k.dims() || ckv != n_kv_head * hs || tk < tq {
        bail!(
            "decode_attention: q {:?}, k {:?}, v {:?} do not fit {n_head}/{n_kv_head} heads",
            q.shape(),
            k.shape(),
            v.shape()
        )
    }
    q.apply_op3_no_bwd(
        k,
        v,
        &DecodeAttention {
            n_head,
            n_kv_head,
            hs,
        },
    )
}

struct DecodeAttention {
    n_head: usize,
    n_kv_head: usize,
    hs: usize,
}

const NAME: &str = "muse-decode-attention";

/// A strided (B, T, D) f32 view with unit stride along D.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    start: usize,
    sb: usize,
    st: usize,
}

impl<'a> View<'a> {
    fn new(s: &'a CpuStorage, l: &Layout) -> Result<Self> {
        let data = s.as_slice::<f32>()?;
        let st = l.stride();
        if st.len() != 3 || st[2] != 1 {
            bail!("{NAME}: expected (B, T, D) with unit stride along D")
        }
        Ok(Self {
            data,
            start: l.start_offset(),
            sb: st[0],
            st: st[1],
        })
    }

    /// `len` features of (batch, position) from feature `from`.
    #[inline(always)]
    fn row(&self, b: usize, t: usize, from: usize, len: usize) -> &'a [f32] {
        let at = self.start + b * self.sb + t * self.st + from;
        &self.data[at..at + len]
    }
}

/// Sizes of one head's work: Tq queries over Tk cached rows `key_stride` apart, width hs.
#[derive(Clone, Copy)]
struct HeadDims {
    key_stride: usize,
    tq: usize,
    tk: usize,
    hs: usize,
}

/// One (batch, head): every query of the head against its cached keys and values. `out`
/// holds (Tq, hs); `scores` has room for Tk.
#[inline(always)]
fn head<F: Fma>(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    d: HeadDims,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let HeadDims {
        key_stride,
        tq,
        tk,
        hs,
    } = d;
    let scale = 1.0 / (hs as f32).sqrt();
    let offset = tk - tq;
    for i in 0..tq {
        let qi = &q[i * hs..(i + 1) * hs];
        let n = offset + i + 1;
        let mut max = f32::NEG_INFINITY;
        for (t, s) in scores[..n].iter_mut().enumerate() {
            let kt = &keys[t * key_stride..t * key_stride + hs];
            *s = dot::<F>(qi, kt) * scale;
            max = max.max(*s);
        }
        let mut sum = 0.0;
        for s in &mut scores[..n] {
            *s = exp::<F>(*s - max);
            sum += *s;
        }
        let o = &mut out[i * hs..(i + 1) * hs];
        o.fill(0.0);
        for (t, &p) in scores[..n].iter().enumerate() {
            let vt = &values[t * key_stride..t * key_stride + hs];
            for (od, &vd) in o.iter_mut().zip(vt) {
                *od = F::fma(p, vd, *od);
            }
        }
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|x| *x *= inv);
    }
}
simd_dispatch!(fn head_simd(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    d: HeadDims,
    scores: &mut [f32],
    out: &mut [f32],
) = head);

/// Dot product with `LANES` independent accumulators (vectorises).
#[inline(always)]
fn dot<F: Fma>(a: &[f32], b: &[f32]) -> f32 {
    let full = a.len() - a.len() % LANES;
    let mut acc = [0f32; LANES];
    for (ac, bc) in a[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] = F::fma(ac[l], bc[l], acc[l]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in full..a.len() {
        s = F::fma(a[i], b[i], s);
    }
    s
}

impl CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (View::new(s1, l1)?, View::new(s2, l2)?, View::new(s3, l3)?);
        let (b, tq, c) = l1.shape().dims3()?;
        let tk = l2.shape().dims3()?.1;
        let (nh, hs) = (self.n_head, self.hs);
        if k.st != v.st || k.sb != v.sb {
            bail!("{NAME}: keys and values must share a layout")
        }
        // Per (batch, head): its queries gathered (Tq, hs), then its output (Tq, hs).
        // Heads are grouped so a task is worth handing to another thread (short caches run
        // inline).
        let mut buf = vec![0f32; b * nh * tq * hs];
        let per = rows_per_task(b * nh, 4 * tq * tk * hs);
        let tasks: Vec<(usize, &mut [f32])> = buf.chunks_mut(per * tq * hs).enumerate().collect();
        run_tasks(tasks, |(first, outs)| {
            for (j, out) in outs.chunks_mut(tq * hs).enumerate() {
                self.one_head(first * per + j, out, (&q, &k, &v), tq, tk);
            }
        });
        // (B, nh, Tq, hs) -> (B, Tq, nh * hs)
        let mut y = vec![0f32; b * tq * c];
        for (task, chunk) in buf.chunks(tq * hs).enumerate() {
            let (bi, h) = (task / nh, task % nh);
            for i in 0..tq {
                let at = (bi * tq + i) * c + h * hs;
                y[at..at + hs].copy_from_slice(&chunk[i * hs..(i + 1) * hs]);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((b, tq, c))))
    }
}

impl DecodeAttention {
    /// Head `task` (= batch * n_head + head) into `out` (Tq, hs).
    fn one_head(
        &self,
        task: usize,
        out: &mut [f32],
        (q, k, v): (&View, &View, &View),
        tq: usize,
        tk: usize,
    ) {
        let (nh, hs) = (self.n_head, self.hs);
        let group = nh / self.n_kv_head;
        let (bi, h) = (task / nh, task % nh);
        let kvh = h / group;
        let qh: Vec<f32> = (0..tq)
            .flat_map(|i| q.row(bi, i, h * hs, hs).iter().copied())
            .collect();
        // Keys and values of this kv head from position 0 on, rows `st` apart.
        let span = (tk - 1) * k.st + hs;
        let keys = &k.data[k.start + bi * k.sb + kvh * hs..][..span];
        let values = &v.data[v.start + bi * v.sb + kvh * hs..][..span];
        let mut scores = vec![0f32; tk];
        let dims = HeadDims {
            key_stride: k.st,
            tq,
            tk,
            hs,
        };
        head_simd(&qh, keys, values, dims, &mut scores, out);
    }
}
