//! Writing models out in other tools' formats. Today: Hugging Face folders that
//! `transformers.AutoModelForCausalLM` and `AutoTokenizer` load ([`hf::export_hf`]).
//!
//! Layer: beside `train` and `sample` (reads run folders through `models` and `tokenizer`).

pub mod hf;

pub use hf::{HfExport, export_hf, export_hf_with};
