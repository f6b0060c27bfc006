//! The encoder-decoder transformer family ("Attention Is All You Need", Vaswani et al. 2017):
//! configuration, layers, model, and loading from a run folder.

mod config;
mod layers;
mod load;
mod model;

pub use config::Seq2SeqConfig;
pub use layers::MASKED;
pub use load::{load_seq2seq, read_config, save_config};
pub use model::{
    DTYPE, EncoderMemory, Seq2Seq, label_smoothed_cross_entropy, parameter_count, seq2seq_init,
    sinusoidal_positions,
};
