//! The HTTP handlers: parse and check the request, hand the work to the engine, shape the
//! answer. None of them touches a tensor.

pub mod chat;
pub mod completions;
pub mod info;
pub mod media;
pub mod page;
pub mod stream;
pub mod text_job;
