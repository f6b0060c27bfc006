//! Where the loops' per-step randomness comes from: seeds that are pure functions of (run
//! seed, step, micro-batch, stream), so a resumed run draws what the uninterrupted one would.

/// The dropout streams of the text loops, apart from each other's.
pub const GPT_DROPOUT_STREAM: u64 = 0xD5;
pub const SFT_DROPOUT_STREAM: u64 = 0x5F7;
pub const DPO_DROPOUT_STREAM: u64 = 0xD90;
pub const SEQ2SEQ_DROPOUT_STREAM: u64 = 0x525;

/// The dropout seed of micro-batch `micro` of `step`.
pub fn dropout_seed(seed: u64, step: u64, micro: u64, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step << 16) ^ micro ^ stream
}
