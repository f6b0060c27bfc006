//! The server in-process, on tiny models: every endpoint in the OpenAI wire format, streaming
//! framing, keys, limits, the queue and bad requests, each answered with OpenAI error JSON.

mod bench;
mod common;
mod errors;
mod media;
mod page;
mod security;
mod text;
