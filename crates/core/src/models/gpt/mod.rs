//! The GPT family: configuration, model, and loading from a run or Hugging Face folder.

mod config;
mod load;
mod model;

pub use config::{Activation, GptConfig};
pub use load::{load_gpt, save_config};
pub use model::{DTYPE, Gpt, gpt2_init, parameter_count};
