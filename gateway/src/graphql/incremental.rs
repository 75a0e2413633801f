//! Incremental delivery (`@defer`): the formats a response in parts can take, and the parts
//! that follow its first payload.

use std::sync::{Arc, Mutex, PoisonError};

use futures::stream::BoxStream;
use serde_json::Value;

/// An incremental-delivery format (`@defer`), sent as `multipart/mixed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrementalFormat {
    /// `deferSpec=20220824`, what Apollo Client and Relay speak: the first part
    /// `{data, hasNext}`, then `{incremental: [{data, path, label}], hasNext}`. Also what a
    /// plain `multipart/mixed` gets.
    DeferSpec20220824,
    /// `incrementalSpec=v0.2`, the current incremental-delivery RFC (graphql-js 17): the
    /// first part announces `pending: [{id, path, label}]`, later ones carry
    /// `incremental: [{id, data}]` and `completed: [{id}]`.
    IncrementalV02,
}

impl IncrementalFormat {
    /// The boundary every part ends with; JSON never contains it at a line start.
    pub const BOUNDARY: &'static str = "graphql";

    pub fn content_type(self) -> &'static str {
        match self {
            Self::DeferSpec20220824 => "multipart/mixed; boundary=\"graphql\"; deferSpec=20220824",
            Self::IncrementalV02 => "multipart/mixed; boundary=\"graphql\"; incrementalSpec=v0.2",
        }
    }
}

/// The later payloads of an incrementally delivered response, in the format the client
/// asked for. Taken once, by whoever writes the response.
#[derive(Clone)]
pub struct IncrementalParts {
    pub format: IncrementalFormat,
    parts: Arc<Mutex<Option<BoxStream<'static, Value>>>>,
}

impl IncrementalParts {
    pub fn new(format: IncrementalFormat, parts: BoxStream<'static, Value>) -> Self {
        Self {
            format,
            parts: Arc::new(Mutex::new(Some(parts))),
        }
    }

    /// The payloads, unless they were taken already.
    pub fn take(&self) -> Option<BoxStream<'static, Value>> {
        self.parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl std::fmt::Debug for IncrementalParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncrementalParts")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}
