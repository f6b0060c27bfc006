//! The engine: one thread that owns every model. Handlers send a [`Job`] through a bounded
//! queue (full: 429) and read the results from the job's own channel; a handler that goes
//! away drops that channel, and the engine stops the job at the next token. Text requests are
//! continuously batched (see [`worker`]).

mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use muse_core::device::Device;
use muse_core::run::{ChatRole, GeneratedImages, ImageJob, ServedKind};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// A model as the handlers know it: its name and what it answers, never its tensors.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// The folder or file stem it was given as (what requests name in `model`).
    pub name: String,
    pub kind: ServedKind,
    pub family: String,
    pub context_len: Option<usize>,
}

/// The prompt of a text job.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// `/v1/completions`: text to continue.
    Text(String),
    /// `/v1/chat/completions`: messages rendered by the model's chat template.
    Chat(Vec<(ChatRole, String)>),
}

/// A text request: its choices share the prompt.
#[derive(Clone, Debug)]
pub struct TextRequest {
    /// When the request arrived (for the time to first token).
    pub received: std::time::Instant,
    pub model: usize,
    pub prompt: Prompt,
    pub settings: crate::wire::sampling::TextSettings,
}

/// A generated token's probability and its likeliest alternatives (`logprobs`).
#[derive(Clone, Debug)]
pub struct TokenLogprobs {
    pub token: String,
    pub prob: f32,
    /// (token, probability), likeliest first.
    pub top: Vec<(String, f32)>,
}

/// Embedding vectors in input order, and the tokens they held.
pub type Embedded = (Vec<Vec<f32>>, usize);

/// What a text job sends back, in order: `Started`, then `Token`s and one `Done` per choice;
/// or `Failed` at any point.
#[derive(Clone, Debug)]
pub enum TextEvent {
    Started {
        prompt_tokens: usize,
    },
    Token {
        choice: usize,
        text: String,
        /// With `logprobs`.
        probs: Option<TokenLogprobs>,
    },
    Done {
        choice: usize,
        finish_reason: &'static str,
        completion_tokens: usize,
    },
    Failed(ApiError),
}

/// A unit of work for the engine thread.
pub enum Job {
    Text {
        req: TextRequest,
        events: mpsc::UnboundedSender<TextEvent>,
    },
    Embed {
        model: usize,
        texts: Vec<String>,
        reply: oneshot::Sender<Result<Embedded, ApiError>>,
    },
    Images {
        model: usize,
        job: ImageJob,
        reply: oneshot::Sender<Result<GeneratedImages, ApiError>>,
    },
}

/// The handlers' side of the engine: the queue.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: mpsc::Sender<Job>,
    capacity: usize,
}

impl EngineHandle {
    /// Queues `job`, or answers 429 when the queue is full (503 once the engine stopped).
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::busy(self.capacity),
            mpsc::error::TrySendError::Closed(_) => ApiError::unavailable(),
        })
    }

    /// Jobs waiting (the one running is not counted).
    pub fn queued(&self) -> usize {
        self.capacity - self.jobs.capacity()
    }

    /// A handle whose jobs nobody runs: the caller holds the queue (tests of the queue limit
    /// and of the router without models).
    pub fn detached(capacity: usize) -> (Self, mpsc::Receiver<Job>) {
        let (jobs, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                jobs,
                capacity: capacity.max(1),
            },
            rx,
        )
    }
}

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub device: Device,
    /// Jobs that may wait; more are answered 429.
    pub queue: usize,
    /// Text choices generated together, one forward pass per model per token; requests
    /// beyond it wait in the queue.
    pub max_batch: usize,
    /// Watermark every generated text with this key (Kirchenbauer et al. 2023).
    pub watermark: Option<muse_core::run::generation::Watermark>,
}

impl EngineConfig {
    /// The defaults of `muse serve` on `device`.
    pub fn new(device: Device) -> Self {
        Self {
            device,
            queue: crate::serve::DEFAULT_QUEUE,
            max_batch: crate::serve::DEFAULT_MAX_BATCH,
            watermark: None,
        }
    }
}

/// Opens every model on the engine thread (models stay on the thread that made them) and
/// starts answering jobs. Returns once all are open, or with the first that failed.
pub fn start(
    paths: Vec<(String, PathBuf)>,
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
) -> muse_core::Result<(EngineHandle, Vec<ModelInfo>)> {
    let (handle, jobs) = EngineHandle::detached(cfg.queue);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("muse-engine".into())
        .spawn(move || {
            // The engine loop runs on a kernel worker, so each kernel it calls starts on this
            // thread instead of waking the pool and sleeping until it is done.
            let fallback = ready_tx.clone();
            let started = muse_core::device::on_own_kernel_pool(move || {
                worker::run(paths, cfg, jobs, ready_tx, metrics)
            });
            if let Err(e) = started {
                let _ = fallback.send(Err(e));
            }
        })
        .map_err(muse_core::Error::io("the engine thread"))?;
    let infos = ready_rx.recv().map_err(|_| {
        muse_core::Error::input("the engine thread stopped while opening the models")
    })??;
    Ok((handle, infos))
}
