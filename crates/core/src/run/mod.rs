//! The one API the CLI and the server call: open any model folder or file, resolve a training
//! configuration, dispatch on the family. Family dispatch happens here and nowhere else.
//!
//! Adding a family: its model in `models/`, its loop in `train/`, its sampler in `sample/`,
//! its figures in `eval/`; then a [`Family`] variant, its line in [`family::TRAINABLE`] and its
//! arm in [`train::train`] (plus `sample`/`eval` arms here). The CLI only gains its flags.

pub mod audit;
mod audit_images;
pub mod diffusion;
pub mod family;
pub mod resolve;
pub mod train;
pub mod translate;
pub mod tune;

pub use audit::{AuditReport, AuditRequest, audit};
pub use family::{Family, detect};
pub use resolve::{ConfigRequest, FlagSet, StartMode};
pub use train::{ClassifierChoice, TrainOutcome, TrainRequest, TrainSummary, train};
pub use translate::{
    TranslateInput, TranslateOptions, TranslateReport, TranslateRequest, Translator, translate,
};
pub use tune::{Method, TuneRequest, tune};
pub mod sample;
pub use sample::{
    DiffusionRequest, ImageRequest, SamplePlan, SampleRequest, TextRequest, TextSession, sample,
};
pub mod eval;
mod eval_diffusion;
mod eval_files;
pub use eval::{EvalReport, EvalRequest, eval};
pub use eval_files::eval_files;
pub mod bench;
pub use bench::{
    BenchRequest, GenerateBenchOptions, WatermarkBenchOptions, bench, bench_generate,
    bench_watermark,
};
pub mod chat;
pub use chat::{ChatRequest, ChatSession, open_chat};
pub mod inspect;
pub mod pairs;
pub use pairs::{SplitReport, SplitRequest, split_corpus};
pub mod score;
pub mod watermark;
pub use inspect::{ImageProvenance, InspectRequest, Inspection, TextProvenance, inspect};
pub use score::{ScoreRequest, score};
pub use watermark::{DetectReport, DetectRequest, Verdict, detect_watermark};
pub mod serve_api;
mod serve_images;
mod serve_text;
pub use serve_api::{
    ChatPrompt, ChatRole, GeneratedImages, ImageJob, ServedKind, ServedModel, TextGeneration,
    TextJob, TokenOut, TokenProbs, finish_reason, open_served,
};

/// Ctrl-C: the binary's handler asks the running loop to checkpoint and stop.
pub mod interrupt {
    pub use crate::train::interrupt::{request_stop, stop_requested};
}

/// Token-by-token generation, for callers that stream a [`TextSession`] or a chat.
pub mod generation {
    pub use crate::sample::watermark::{Detection, Scheme, Watermark};
    pub use crate::sample::{
        GenerateOptions, Generated, Sampler, SamplingParams, StopReason, TokenEvent, generate,
    };
}
pub use crate::eval::image::FID_SAMPLES;

/// The dataset registry: names, where each is found, download and verification.
pub mod data {
    pub use crate::data::{
        DatasetSpec, FileStatus, Presence, cache_root, dataset_dir, fetch, locate, locate_in,
        missing_message, registry, require_spec, search_dirs, verify,
    };
}
pub mod export;
pub use export::{export_gguf, export_hf};

/// Sentence embeddings (`muse embed`, the server's `/v1/embeddings`).
pub mod embed {
    pub use crate::embed::{
        DEFAULT_BATCH_SIZE, SentenceEncoder, cosine, default_model_dir, encoder_dir,
    };
}
