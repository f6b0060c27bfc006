//! Server-sent events: the engine's text events turned into `data: {json}` frames by an
//! endpoint's [`Chunker`], ending with `data: [DONE]`. A client that disconnects drops the
//! stream, which drops the engine's channel and so stops generation at the next token.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use crate::engine::TextEvent;

/// Frames waiting to be written to one client before the engine's events back up.
const FRAMES_BUFFERED: usize = 64;

/// Turns one endpoint's events into JSON frames.
pub trait Chunker: Send + 'static {
    /// Frames for one event (never `Failed`, which the stream handles).
    fn on_event(&mut self, event: TextEvent) -> Vec<String>;
    /// Frames after the last event, before `[DONE]` (usage).
    fn on_end(&mut self) -> Vec<String>;
}

/// The SSE response: frames from `chunker`, `data: [DONE]` last. A failure mid-stream is
/// sent as an OpenAI error object and ends the stream without `[DONE]`.
pub fn sse(
    mut events: mpsc::UnboundedReceiver<TextEvent>,
    mut chunker: impl Chunker,
    first: Vec<String>,
) -> Response {
    let (tx, rx) = mpsc::channel::<String>(FRAMES_BUFFERED);
    tokio::spawn(async move {
        for frame in first {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        while let Some(event) = events.recv().await {
            let frames = match event {
                TextEvent::Failed(e) => {
                    let _ = tx.send(e.body().to_string()).await;
                    return;
                }
                other => chunker.on_event(other),
            };
            for frame in frames {
                // The client went away: returning drops `events`, which cancels the job.
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        }
        for frame in chunker.on_end() {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        let _ = tx.send("[DONE]".to_string()).await;
    });
    let stream =
        ReceiverStream::new(rx).map(|data| Ok::<_, Infallible>(Event::default().data(data)));
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `value` as a JSON string (our response types always serialise).
pub fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
