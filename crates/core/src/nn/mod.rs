//! Neural-network building blocks shared by every model family.
//!
//! `ops` holds the fused CPU kernels (each a candle `CustomOp` with its backward, tested
//! against the composed candle ops it replaces); the rest are small layers and helpers.

pub mod attention;
pub mod batch_norm;
pub mod conv;
pub mod cross_attention;
pub mod dropout;
pub mod group_norm;
pub mod init;
pub mod kv_cache;
pub mod layers;
pub mod lora;
pub mod noise;
pub mod ops;
pub mod spatial_attention;
pub mod timestep;

pub use batch_norm::{BatchNorm2d, NormMode};
pub use conv::{Conv2d, ConvTranspose2d};
pub use cross_attention::{SpatialCrossAttention, TextContext};
pub use dropout::Dropout;
pub use group_norm::GroupNorm;
pub use init::{Init, init_varmap};
pub use kv_cache::KvCache;
pub use layers::{Embedding, LayerNorm, Linear, RmsNorm};
pub use ops::upsample_nearest2x;
pub use spatial_attention::SpatialSelfAttention;
pub use timestep::timestep_embedding;
