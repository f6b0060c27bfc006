//! The engine thread's loop: open the models, then answer jobs. Text requests are continuously
//! batched: every request that arrives joins the running set at once (up to `max_batch`
//! choices), and each turn of the loop gives every running choice one token, the choices of
//! one model sharing a single forward pass. Embedding and image jobs run whole between two
//! turns. A request whose client has gone is dropped at the next turn; a panic fails only the
//! work it happened in, and the engine goes on.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use muse_core::run::generation::Watermark;
use muse_core::run::{ServedModel, TextGeneration, TextJob, finish_reason, open_served};
use tokio::sync::mpsc;

use super::{EngineConfig, Job, ModelInfo, Prompt, TextEvent, TextRequest, TokenLogprobs};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// New tokens a completion gets when the request does not say (OpenAI's default).
const DEFAULT_COMPLETION_TOKENS: usize = 16;

type Ready = std::sync::mpsc::Sender<muse_core::Result<Vec<ModelInfo>>>;

pub(super) fn run(
    paths: Vec<(String, PathBuf)>,
    cfg: EngineConfig,
    jobs: mpsc::Receiver<Job>,
    ready: Ready,
    metrics: Arc<Metrics>,
) {
    let mut models = Vec::new();
    let mut infos = Vec::new();
    for (name, path) in paths {
        match open_served(&path, &cfg.device) {
            Ok(m) => {
                tracing::info!(
                    "{name}: {} ({} model) from {}",
                    m.family,
                    m.kind().as_str(),
                    path.display()
                );
                infos.push(ModelInfo {
                    name,
                    kind: m.kind(),
                    family: m.family.clone(),
                    context_len: m.context_len(),
                });
                models.push(m);
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    }
    if ready.send(Ok(infos)).is_err() {
        return;
    }
    Batcher {
        models: &models,
        metrics: &metrics,
        watermark: cfg.watermark.as_ref(),
        max_batch: cfg.max_batch.max(1),
        requests: HashMap::new(),
        running: Vec::new(),
        next_id: 0,
    }
    .serve(jobs);
}

/// A text request being answered: where its events go and its token timing.
struct Request {
    events: mpsc::UnboundedSender<TextEvent>,
    received: Instant,
    last_token: Option<Instant>,
    /// Its choices still running.
    left: usize,
}

/// One choice of a request, generating.
struct Choice<'m> {
    request: u64,
    index: usize,
    model: usize,
    generation: TextGeneration<'m>,
}

/// The continuous batch: requests by id, and their running choices.
struct Batcher<'m> {
    models: &'m [ServedModel],
    metrics: &'m Metrics,
    watermark: Option<&'m Watermark>,
    max_batch: usize,
    requests: HashMap<u64, Request>,
    running: Vec<Choice<'m>>,
    next_id: u64,
}

impl<'m> Batcher<'m> {
    /// Until the queue closes (shutdown) and the last running choice is done.
    fn serve(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut open = true;
        loop {
            if self.running.is_empty() {
                match jobs.blocking_recv() {
                    Some(job) => self.admit(job),
                    None => return,
                }
            }
            // Whatever else is queued joins now, while the batch has room; the rest waits in
            // the bounded queue (full: 429).
            while open && self.running.len() < self.max_batch {
                match jobs.try_recv() {
                    Ok(job) => self.admit(job),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            if !open && self.running.is_empty() {
                return;
            }
            self.turn();
        }
    }

    /// Starts a text request (its choices join the batch) or runs any other job whole.
    fn admit(&mut self, job: Job) {
        match job {
            Job::Text { req, events } => {
                if events.is_closed() {
                    return;
                }
                let started = catch_unwind(AssertUnwindSafe(|| self.start(&req)));
                let choices = match started {
                    Ok(Ok(choices)) => choices,
                    Ok(Err(e)) => {
                        let _ = events.send(TextEvent::Failed(ApiError::from(e)));
                        return;
                    }
                    Err(panic) => {
                        let _ = events.send(TextEvent::Failed(panicked(panic)));
                        return;
                    }
                };
                let id = self.next_id;
                self.next_id += 1;
                let prompt_tokens = choices[0].1;
                self.metrics
                    .add_prompt_tokens(prompt_tokens * choices.len());
                self.metrics.set_prompt_tokens_reused(
                    self.models.iter().map(|m| m.reused_prompt_tokens()).sum(),
                );
                if events.send(TextEvent::Started { prompt_tokens }).is_err() {
                    return;
                }
                self.requests.insert(
                    id,
                    Request {
                        events,
                        received: req.received,
                        last_token: None,
                        left: choices.len(),
                    },
                );
                for (index, (generation, _)) in choices.into_iter().enumerate() {
                    self.running.push(Choice {
                        request: id,
                        index,
                        model: req.model,
                        generation,
                    });
                }
            }
            Job::Embed {
                model,
                texts,
                reply,
            } => {
                if reply.is_closed() {
                    return;
                }
                let out = catch_unwind(AssertUnwindSafe(|| self.models[model].embed(&texts)))
                    .map_err(panicked)
                    .and_then(|r| r.map_err(ApiError::from));
                let _ = reply.send(out);
            }
            Job::Images { model, job, reply } => {
                if reply.is_closed() {
                    return;
                }
                let out = catch_unwind(AssertUnwindSafe(|| self.models[model].images(&job)))
                    .map_err(panicked)
                    .and_then(|r| r.map_err(ApiError::from));
                if let Ok(images) = &out {
                    self.metrics.add_images(images.images.len());
                }
                let _ = reply.send(out);
            }
        }
    }

    /// The request's prompt as ids and a started generation per choice (with the prompt's
    /// length), or why it cannot run: checked before `Started`, so that the client gets a
    /// 400 rather than a broken stream.
    fn start(&self, req: &TextRequest) -> muse_core::Result<Vec<(TextGeneration<'m>, usize)>> {
        let model = &self.models[req.model];
        let s = &req.settings;
        let (prompt_ids, template_stop) = match &req.prompt {
            Prompt::Text(text) => (model.encode_prompt(text)?, Vec::new()),
            Prompt::Chat(messages) => {
                let p = model.chat_prompt(messages)?;
                (p.ids, p.stop)
            }
        };
        let context = model.context_len().unwrap_or(0);
        if prompt_ids.len() >= context {
            return Err(muse_core::Error::usage(format!(
                "the prompt has {} tokens and the model's context is {context}: no room is left \
                 for a reply; shorten the prompt",
                prompt_ids.len()
            )));
        }
        let room = context - prompt_ids.len();
        let max_tokens = s.max_tokens.unwrap_or(match req.prompt {
            Prompt::Text(_) => DEFAULT_COMPLETION_TOKENS.min(room),
            Prompt::Chat(_) => room,
        });
        if max_tokens > room {
            return Err(muse_core::Error::usage(format!(
                "the prompt has {} tokens and max_tokens is {max_tokens}: together more than the \
                 model's context of {context} tokens; shorten the prompt or ask for at most \
                 {room} tokens",
                prompt_ids.len()
            )));
        }
        let mut stop = s.stop.clone();
        stop.extend(template_stop);
        (0..s.n)
            .map(|choice| {
                let job = TextJob {
                    prompt_ids: prompt_ids.clone(),
                    params: s.params.clone(),
                    seed: s.seed.wrapping_add(choice as u64),
                    max_tokens,
                    stop: stop.clone(),
                    top_logprobs: s.top_logprobs,
                    watermark: self.watermark.cloned(),
                };
                Ok((model.start_text(&job)?, prompt_ids.len()))
            })
            .collect()
    }

    /// One token for every running choice, one batched step per model; then the finished,
    /// failed and abandoned choices leave the batch.
    fn turn(&mut self) {
        // A client that has gone takes its request and its choices with it.
        self.requests.retain(|_, r| !r.events.is_closed());
        let requests = &self.requests;
        self.running.retain(|c| requests.contains_key(&c.request));
        let mut failed: HashMap<u64, Option<ApiError>> = HashMap::new();
        let mut served: Vec<usize> = self.running.iter().map(|c| c.model).collect();
        served.sort_unstable();
        served.dedup();
        for model in served {
            let (requests, metrics) = (&mut self.requests, self.metrics);
            let mut batch: Vec<&mut Choice<'m>> = self
                .running
                .iter_mut()
                .filter(|c| c.model == model)
                .collect();
            let owners: Vec<(u64, usize)> = batch.iter().map(|c| (c.request, c.index)).collect();
            metrics.add_batch_step(owners.len());
            let mut gens: Vec<&mut TextGeneration<'m>> =
                batch.iter_mut().map(|c| &mut c.generation).collect();
            let step = catch_unwind(AssertUnwindSafe(|| {
                self.models[model].step_texts(&mut gens, &mut |i, t| {
                    let (request, choice) = owners[i];
                    let Some(r) = requests.get_mut(&request) else {
                        return Err(muse_core::Error::Interrupted);
                    };
                    metrics.add_tokens(1);
                    let now = Instant::now();
                    match r.last_token {
                        None => metrics.first_token.observe(now - r.received),
                        Some(before) => metrics.per_token.observe(now - before),
                    }
                    r.last_token = Some(now);
                    if t.text.is_empty() && t.probs.is_none() {
                        return Ok(());
                    }
                    let probs = t.probs.map(|p| TokenLogprobs {
                        token: p.token,
                        prob: p.prob,
                        top: p.top.to_vec(),
                    });
                    r.events
                        .send(TextEvent::Token {
                            choice,
                            text: t.text.to_string(),
                            probs,
                        })
                        .map_err(|_| muse_core::Error::Interrupted)
                })
            }));
            match step {
                Ok(Ok(outcomes)) => {
                    for ((request, _), outcome) in owners.iter().zip(outcomes) {
                        match outcome {
                            Ok(()) => {}
                            Err(muse_core::Error::Interrupted) => {
                                failed.entry(*request).or_insert(None);
                            }
                            Err(e) => {
                                failed.insert(*request, Some(ApiError::from(e)));
                            }
                        }
                    }
                }
                // The forward pass itself failed: every request in this batch fails with it.
                Ok(Err(e)) => {
                    let e = ApiError::from(e);
                    for (request, _) in &owners {
                        failed.insert(*request, Some(e.clone()));
                    }
                }
                Err(panic) => {
                    let e = panicked(panic);
                    for (request, _) in &owners {
                        failed.insert(*request, Some(e.clone()));
                    }
                }
            }
        }
        self.settle(failed);
    }

    /// Sends `Failed` to the failed requests and drops all their choices; sends `Done` for
    /// every finished choice; forgets requests with no choice left (closing their stream).
    fn settle(&mut self, failed: HashMap<u64, Option<ApiError>>) {
        for (request, error) in failed {
            if let (Some(r), Some(e)) = (self.requests.get(&request), error) {
                let _ = r.events.send(TextEvent::Failed(e));
            }
            self.requests.remove(&request);
        }
        let mut kept = Vec::with_capacity(self.running.len());
        for c in self.running.drain(..) {
            let Some(r) = self.requests.get_mut(&c.request) else {
                continue;
            };
            if !c.generation.is_finished() {
                kept.push(c);
                continue;
            }
            let generated = c.generation.finish();
            let _ = r.events.send(TextEvent::Done {
                choice: c.index,
                finish_reason: finish_reason(&generated),
                completion_tokens: generated.ids.len(),
            });
            r.left -= 1;
            if r.left == 0 {
                self.requests.remove(&c.request);
            }
        }
        self.running = kept;
    }
}

/// A panic inside a job, as a 500 (the panic message is already logged by the hook).
fn panicked(panic: Box<dyn std::any::Any + Send>) -> ApiError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    ApiError::internal(format!(
        "the engine failed on this request ({what}); the server goes on"
    ))
}
