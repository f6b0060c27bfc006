//! Fused CPU kernels for the hot ops of transformer training: layer/RMS norm, causal
//! self-attention, linear (plain and LoRA-adapted), GELU, ReLU, softmax, dropout, cross-entropy and the
//! AdamW step; and those of the image models: convolutions, GroupNorm, nearest upsampling.
//!
//! candle composes these from many small tensor ops, each allocating its output, and its own
//! fused `candle_nn` kernels have no backward. Each op here is a candle `CustomOp` whose
//! forward and backward are single passes over contiguous f32 rows, parallelised over rows (or
//! heads) on rayon's global pool (`MUSE_OPS_POOL=candle` selects candle's barrier pool), with
//! matmuls going straight to the `gemm` crate, split across the same pool.
//!
//! Every public function takes the fast path for F32 tensors on the CPU and otherwise falls back
//! to [`reference`](mod@reference), the same maths composed from candle ops (what runs on CUDA). Tests compare
//! the two, values and gradients.

mod activation;
mod adamw;
mod attention;
pub mod batch_norm;
mod biased;
pub mod conv;
mod cpu;
mod cross_entropy;
pub mod decode_attention;
mod dropout;
mod gelu;
mod gemv;
pub mod group_norm;
mod layer_norm;
mod linear;
mod lora_linear;
mod math;
mod matmul;
pub mod q4_1;
pub mod q8_0;
mod quant_rows;
pub mod reference;
mod rms_norm;
pub mod row_chunks;
mod softmax;
mod swiglu;
mod upsample;
pub mod vae_loss;
pub mod vae_mlp;

use candle_core::{DType, Device, Tensor};

pub use activation::{Activation, activation, leaky_relu, relu};
pub use adamw::{AdamWHyper, adamw_update};
pub use attention::causal_self_attention;
pub use batch_norm::{BatchStats, batch_norm_train};
pub use conv::{FrozenWeights, conv_transpose2d, conv_transpose2d_act, conv2d, conv2d_act};
pub use cross_entropy::{IGNORE_INDEX, cross_entropy};
pub use dropout::dropout;
pub use gelu::{GeluKind, gelu};
pub use group_norm::group_norm_act;
pub use layer_norm::layer_norm;
pub use linear::{WeightLayout, linear};
pub use lora_linear::{LoraUpdate, lora_linear};
pub use rms_norm::rms_norm;
pub use softmax::{softmax_last_dim, softmax_last_dim_scaled};
pub use swiglu::swiglu;
pub use upsample::upsample_nearest2x;

/// True when every tensor is F32 on the CPU, i.e. the fused kernels apply.
fn fast_path(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32)
}
