//! The memorisation audit (`muse audit`): how much of what a model generates it copied from
//! its training data. Text: verbatim spans found through a suffix array of the training text
//! ([`suffix`], [`text`]). Images: distances to the nearest training image against those of
//! held-out images ([`images`]).

pub mod cache;
pub mod images;
pub mod suffix;
pub mod text;

pub use cache::{IndexInfo, cached_index};
pub use images::{NearestAudit, Quantiles, judge, nearest};
pub use suffix::SuffixArray;
pub use text::{CopiedSpan, SpanStats, span_stats};
