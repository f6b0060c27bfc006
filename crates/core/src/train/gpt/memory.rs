//! The memory a GPT training step needs, estimated before anything is allocated, so a context
//! of 100,000 is refused with a figure instead of being killed by the kernel mid-run.

use crate::models::gpt::GptConfig;

/// Bytes of one f32 training step of `model` on `batch` sequences of `model.n_positions`
/// tokens, roughly (a lower bound: allocator slack and the data are not counted):
/// - 16 bytes per parameter: the weights, their gradients and AdamW's two moments;
/// - the activations kept for the backward pass, s·b·(34·h + 5·a·s) per layer at 2 bytes
///   (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
///   Models", section 4.1), doubled for f32; the 5·a·s term is attention's scores;
/// - the logits, their softmax and their gradient: 12 bytes per vocabulary entry and token.
pub fn training_bytes(model: &GptConfig, batch: usize) -> u64 {
    let (s, b) = (model.n_positions as u64, batch as u64);
    let (h, a, l) = (
        model.n_embd as u64,
        model.n_head as u64,
        model.n_layer as u64,
    );
    let v = model.vocab_size.max(256) as u64;
    let params = l * 12 * h * h + (v + s) * h;
    let activations = l * 2 * s * b * (34 * h + 5 * a * s);
    let logits = 12 * s * b * v;
    16 * params + activations + logits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baby_gpt_fits_and_a_context_of_100000_does_not() {
        let mut cfg = GptConfig::char_baby();
        cfg.vocab_size = 65;
        // Batch 12: about 49 MB (the benchmark's peak RSS, binary and data included: 108 MB).
        let baby = training_bytes(&cfg, 12);
        assert!((40e6..60e6).contains(&(baby as f64)), "{baby}");
        cfg.n_positions = 100_000;
        assert!(training_bytes(&cfg, 12) as f64 > 1e13);
    }
}
