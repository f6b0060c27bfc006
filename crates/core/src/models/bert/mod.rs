//! The BERT family: configuration, encoder, and loading from a Hugging Face folder.

mod config;
mod load;
mod model;

pub use config::{BERT_MODEL_TYPES, BertConfig};
pub use load::load_bert;
pub use model::{BertModel, DTYPE};
