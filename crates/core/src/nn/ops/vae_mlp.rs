//! One training step's loss and gradients of the fully connected VAE (the PyTorch examples
//! `vae/main.py` network: fc1 -> ReLU -> (fc21, fc22) -> z = mu + eps * exp(logvar / 2) ->
//! fc3 -> ReLU -> fc4 -> Bernoulli logits; loss = BCE + beta * KL, summed), forward and
//! backward written out by hand on the CPU.
//!
//! Through candle's autograd this network is five large matrix products and about forty small
//! tensor operations, and every gradient (the two 314k-element weight gradients included) is
//! accumulated into a freshly zeroed tensor; with `--threads 2` that bookkeeping took as long
//! as the matrix products. Here the same five products go straight to `gemm` and everything
//! else is a handful of passes over `(batch, width)` rows. `tests/it/vae.rs` checks loss and
//! every gradient against the autograd path.

use std::sync::Mutex;

use candle_core::{Result, Tensor, bail};

use super::cpu::{CpuRead, matmul, matmul_new, run_tasks, tensor, threads};
use super::matmul::{Mat, extent, gemm};

/// The weights and biases, `nn.Linear` layout `(out, in)`: fc1, fc21, fc22, fc3, fc4.
pub struct MlpVaeParams<'a> {
    pub w1: &'a Tensor,
    pub b1: &'a Tensor,
    pub w21: &'a Tensor,
    pub b21: &'a Tensor,
    pub w22: &'a Tensor,
    pub b22: &'a Tensor,
    pub w3: &'a Tensor,
    pub b3: &'a Tensor,
    pub w4: &'a Tensor,
    pub b4: &'a Tensor,
}

/// Loss terms (summed over the batch) and the gradient of `bce + beta * kl` for each parameter,
/// in the order of [`MlpVaeParams`].
pub struct MlpVaeStep {
    pub bce: f64,
    pub kl: f64,
    pub grads: Vec<Tensor>,
}

/// Forward and backward of the MLP VAE for inputs `x_in` reconstructing `target`, with noise
/// `eps`. Needs contiguous f32 CPU tensors (the caller falls back to autograd otherwise).
///
/// # Shapes
/// `x_in`, `target`: (N, P); `eps`: (N, L); weights as `nn.Linear` with hidden width H.
pub fn mlp_vae_step(
    p: &MlpVaeParams,
    x_in: &Tensor,
    target: &Tensor,
    eps: &Tensor,
    beta: f64,
) -> Result<MlpVaeStep> {
    let (n, px) = x_in.dims2()?;
    let (h, w1_in) = p.w1.dims2()?;
    let l = p.w21.dims2()?.0;
    if w1_in != px || target.dims2()? != (n, px) || eps.dims2()? != (n, l) {
        bail!(
            "mlp_vae_step: x {:?}, target {:?}, eps {:?} do not fit fc1 {:?} / fc21 {:?}",
            x_in.shape(),
            target.shape(),
            eps.shape(),
            p.w1.shape(),
            p.w21.shape()
        )
    }
    let read = |t: &Tensor| -> Result<Tensor> { t.contiguous() };
    let all = [
        read(x_in)?,
        read(target)?,
        read(eps)?,
        read(p.w1)?,
        read(p.b1)?,
        read(p.w21)?,
        read(p.b21)?,
        read(p.w22)?,
        read(p.b22)?,
        read(p.w3)?,
        read(p.b3)?,
        read(p.w4)?,
        read(p.b4)?,
    ];
    let r: Vec<CpuRead> = all
        .iter()
        .map(|t| CpuRead::new(t, "muse-mlp-vae"))
        .collect::<Result<_>>()?;
    let s: Vec<&[f32]> = r.iter().map(CpuRead::slice).collect();
    let (x, t, e) = (s[0], s[1], s[2]);
    let (w1, b1, w21, b21, w22, b22, w3, b3, w4, b4) = (
        s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12],
    );

    // Forward. `y = a @ W^T + b` with W (out, in): W^T read in place as (in, out), strides (1, in).
    let dense = |a: &[f32], rows: usize, w: &[f32], b: &[f32], i: usize, o: usize| {
        let mut y = Vec::with_capacity(rows * o);
        for _ in 0..rows {
            y.extend_from_slice(b);
        }
        matmul(rows, o, i, &mut y, true, (a, i, 1), (w, 1, i));
        y
    };
    let mut h1 = dense(x, n, w1, b1, px, h); // (N, H)
    relu(&mut h1);
    let mu = dense(&h1, n, w21, b21, h, l); // (N, L)
    let lv = dense(&h1, n, w22, b22, h, l); // (N, L)
    let std: Vec<f32> = lv.iter().map(|v| (0.5 * v).exp()).collect();
    let z: Vec<f32> = (0..n * l).map(|i| mu[i] + e[i] * std[i]).collect(); // (N, L)
    let mut h3 = dense(&z, n, w3, b3, l, h); // (N, H)
    relu(&mut h3);
    let logits = dense(&h3, n, w4, b4, h, px); // (N, P)
    let mut dlogits = vec![0f32; n * px];
    let bce = super::vae_loss::bce_forward(&logits, t, &mut dlogits);
    let kl = -0.5
        * (0..n * l)
            .map(|i| (1.0 + lv[i] - mu[i] * mu[i] - std[i] * std[i]) as f64)
            .sum::<f64>();

    // Backward of bce + beta * kl; `dlogits = sigmoid(logits) - target` already.
    let beta = beta as f32;
    // dW (out, in) = dy^T (out, N) @ a (N, in); db = column sums of dy.
    let weight_grad =
        |dy: &[f32], a: &[f32], o: usize, i: usize| matmul_new(o, i, n, (dy, 1, o), (a, i, 1));
    // The two large products of fc4's backward are independent: one per thread rather than
    // each split in two (no duplicated packing, no second hand-off).
    // da (N, in) = dy (N, out) @ W (out, in).
    let (dw4, mut dh3) = pair(
        || weight_grad_single(&dlogits, &h3, n, px, h),
        || product_single(n, h, px, (&dlogits, px, 1), (w4, h, 1)),
    );
    let db4 = col_sums(&dlogits, px);
    relu_backward(&mut dh3, &h3);
    let dw3 = weight_grad(&dh3, &z, h, l);
    let db3 = col_sums(&dh3, h);
    let dz = matmul_new(n, l, h, (&dh3, h, 1), (w3, l, 1)); // (N, L)
    let dmu: Vec<f32> = (0..n * l).map(|i| dz[i] + beta * mu[i]).collect();
    let dlv: Vec<f32> = (0..n * l)
        .map(|i| 0.5 * dz[i] * e[i] * std[i] + 0.5 * beta * (std[i] * std[i] - 1.0))
        .collect();
    let dw21 = weight_grad(&dmu, &h1, l, h);
    let db21 = col_sums(&dmu, l);
    let dw22 = weight_grad(&dlv, &h1, l, h);
    let db22 = col_sums(&dlv, l);
    let mut dh1 = matmul_new(n, h, l, (&dmu, l, 1), (w21, h, 1));
    matmul(n, h, l, &mut dh1, true, (&dlv, l, 1), (w22, h, 1));
    relu_backward(&mut dh1, &h1);
    let dw1 = weight_grad(&dh1, x, h, px);
    let db1 = col_sums(&dh1, h);

    let grads = vec![
        tensor(dw1, (h, px))?,
        tensor(db1, h)?,
        tensor(dw21, (l, h))?,
        tensor(db21, l)?,
        tensor(dw22, (l, h))?,
        tensor(db22, l)?,
        tensor(dw3, (h, l))?,
        tensor(db3, h)?,
        tensor(dw4, (px, h))?,
        tensor(db4, px)?,
    ];
    Ok(MlpVaeStep { bce, kl, grads })
}

/// Runs `a` and `b` on two threads of the pool when it has two, else one after the other.
fn pair<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    if threads() < 2 {
        return (a(), b());
    }
    let (ra, rb) = (Mutex::new(None), Mutex::new(None));
    let (fa, fb) = (Mutex::new(Some(a)), Mutex::new(Some(b)));
    run_tasks(vec![0usize, 1], |i| {
        if i == 0 {
            let f = fa.lock().unwrap_or_else(|e| e.into_inner()).take();
            *ra.lock().unwrap_or_else(|e| e.into_inner()) = f.map(|f| f());
        } else {
            let f = fb.lock().unwrap_or_else(|e| e.into_inner()).take();
            *rb.lock().unwrap_or_else(|e| e.into_inner()) = f.map(|f| f());
        }
    });
    let a = ra.into_inner().unwrap_or_else(|e| e.into_inner());
    let b = rb.into_inner().unwrap_or_else(|e| e.into_inner());
    (a.expect("task 0 ran"), b.expect("task 1 ran"))
}

/// `lhs (m x k) @ rhs (k x n)` on the calling thread, into a new row-major vector.
fn product_single(
    m: usize,
    n: usize,
    k: usize,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) -> Vec<f32> {
    assert!(lhs.0.len() >= extent(m, k, lhs.1, lhs.2), "lhs too small");
    assert!(rhs.0.len() >= extent(k, n, rhs.1, rhs.2), "rhs too small");
    let mut out = vec![0f32; m * n];
    let mat = |(s, rs, cs): (&[f32], usize, usize)| Mat {
        ptr: s.as_ptr(),
        rs: rs as isize,
        cs: cs as isize,
    };
    // SAFETY: operand extents asserted above; `out` is a fresh m x n buffer.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            n as isize,
            1,
            false,
            mat(lhs),
            mat(rhs),
            1.0,
        )
    };
    out
}

/// dW (out, in) = dy^T (out, N) @ a (N, in) on the calling thread.
fn weight_grad_single(dy: &[f32], a: &[f32], n: usize, o: usize, i: usize) -> Vec<f32> {
    product_single(o, i, n, (dy, 1, o), (a, i, 1))
}

fn relu(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = x.max(0.0));
}

/// Zeroes the gradient where the ReLU output was 0 (PyTorch's convention at 0).
fn relu_backward(d: &mut [f32], out: &[f32]) {
    d.iter_mut()
        .zip(out)
        .for_each(|(d, &o)| *d = if o > 0.0 { *d } else { 0.0 });
}

fn col_sums(m: &[f32], cols: usize) -> Vec<f32> {
    let mut s = vec![0f32; cols];
    for row in m.chunks_exact(cols) {
        s.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
    s
}
