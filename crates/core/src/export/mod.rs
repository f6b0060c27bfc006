//! Writing models out in other tools' formats: Hugging Face folders that
//! `transformers.AutoModelForCausalLM` and `AutoTokenizer` load ([`hf::export_hf`]), and GGUF
//! files that llama.cpp loads ([`gguf::export_gguf`]).
//!
//! Layer: beside `train` and `sample` (reads run folders through `models` and `tokenizer`).

pub mod gguf;
pub mod hf;

pub use gguf::{GgufExport, GgufQuant, export_gguf};
pub use hf::{HfExport, export_hf, export_hf_with};
