//! The engine thread's loop: open the models, then run one job at a time. A job whose client
//! has gone is skipped or stopped at its next token; a panic inside one job fails that job
//! only, and the engine goes on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;

use muse_core::device::Device;
use muse_core::run::{ServedModel, TextJob, finish_reason, open_served};
use tokio::sync::mpsc;

use super::{Job, ModelInfo, Prompt, TextEvent, TextRequest, TokenLogprobs};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// New tokens a completion gets when the request does not say (OpenAI's default).
const DEFAULT_COMPLETION_TOKENS: usize = 16;

type Ready = std::sync::mpsc::Sender<muse_core::Result<Vec<ModelInfo>>>;

pub(super) fn run(
    paths: Vec<(String, PathBuf)>,
    device: Device,
    mut jobs: mpsc::Receiver<Job>,
    ready: Ready,
    metrics: Arc<Metrics>,
    watermark: Option<muse_core::run::generation::Watermark>,
) {
    let mut models = Vec::new();
    let mut infos = Vec::new();
    for (name, path) in paths {
        match open_served(&path, &device) {
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
    while let Some(job) = jobs.blocking_recv() {
        run_job(&models, job, &metrics, watermark.as_ref());
    }
}

fn run_job(
    models: &[ServedModel],
    job: Job,
    metrics: &Metrics,
    watermark: Option<&muse_core::run::generation::Watermark>,
) {
    match job {
        Job::Text { req, events } => {
            if events.is_closed() {
                return;
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                text(&models[req.model], &req, &events, metrics, watermark)
            }));
            let failed = match outcome {
                Ok(Ok(())) | Ok(Err(muse_core::Error::Interrupted)) => return,
                Ok(Err(e)) => ApiError::from(e),
                Err(panic) => panicked(panic),
            };
            let _ = events.send(TextEvent::Failed(failed));
        }
        Job::Embed {
            model,
            texts,
            reply,
        } => {
            if reply.is_closed() {
                return;
            }
            let out = catch_unwind(AssertUnwindSafe(|| models[model].embed(&texts)))
                .map_err(panicked)
                .and_then(|r| r.map_err(ApiError::from));
            let _ = reply.send(out);
        }
        Job::Images { model, job, reply } => {
            if reply.is_closed() {
                return;
            }
            let out = catch_unwind(AssertUnwindSafe(|| models[model].images(&job)))
                .map_err(panicked)
                .and_then(|r| r.map_err(ApiError::from));
            if let Ok(images) = &out {
                metrics.add_images(images.images.len());
            }
            let _ = reply.send(out);
        }
    }
}

/// Runs every choice of a text request, streaming its events; `Interrupted` when the client
/// went away.
fn text(
    model: &ServedModel,
    req: &TextRequest,
    events: &mpsc::UnboundedSender<TextEvent>,
    metrics: &Metrics,
    watermark: Option<&muse_core::run::generation::Watermark>,
) -> muse_core::Result<()> {
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
            "the prompt has {} tokens and the model's context is {context}: no room is left for \
             a reply; shorten the prompt",
            prompt_ids.len()
        )));
    }
    let room = context - prompt_ids.len();
    let max_tokens = s.max_tokens.unwrap_or(match req.prompt {
        Prompt::Text(_) => DEFAULT_COMPLETION_TOKENS.min(room),
        Prompt::Chat(_) => room,
    });
    // Checked before `Started`, so that the client gets a 400 rather than a broken stream.
    if max_tokens > room {
        return Err(muse_core::Error::usage(format!(
            "the prompt has {} tokens and max_tokens is {max_tokens}: together more than the \
             model's context of {context} tokens; shorten the prompt or ask for at most {room} \
             tokens",
            prompt_ids.len()
        )));
    }
    let mut stop = s.stop.clone();
    stop.extend(template_stop);
    let gone = || muse_core::Error::Interrupted;
    metrics.add_prompt_tokens(prompt_ids.len() * s.n);
    let mut last_token: Option<std::time::Instant> = None;
    events
        .send(TextEvent::Started {
            prompt_tokens: prompt_ids.len(),
        })
        .map_err(|_| gone())?;
    for choice in 0..s.n {
        let job = TextJob {
            prompt_ids: prompt_ids.clone(),
            params: s.params.clone(),
            seed: s.seed.wrapping_add(choice as u64),
            max_tokens,
            stop: stop.clone(),
            top_logprobs: s.top_logprobs,
            watermark: watermark.cloned(),
        };
        let generated = model.generate(&job, &mut |t| {
            metrics.add_tokens(1);
            let now = std::time::Instant::now();
            match last_token {
                None => metrics.first_token.observe(now - req.received),
                Some(before) => metrics.per_token.observe(now - before),
            }
            last_token = Some(now);
            let probs = t.probs.map(|p| TokenLogprobs {
                token: p.token,
                prob: p.prob,
                top: p.top.to_vec(),
            });
            if t.text.is_empty() && probs.is_none() {
                // Nothing to send; still notice a client that has gone.
                return if events.is_closed() {
                    Err(gone())
                } else {
                    Ok(())
                };
            }
            events
                .send(TextEvent::Token {
                    choice,
                    text: t.text.to_string(),
                    probs,
                })
                .map_err(|_| gone())
        })?;
        events
            .send(TextEvent::Done {
                choice,
                finish_reason: finish_reason(&generated),
                completion_tokens: generated.ids.len(),
            })
            .map_err(|_| gone())?;
    }
    Ok(())
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
