//! Turning a subgraph's errors into client errors: paths translated from the subgraph's
//! response shape to the client's, and transport failures into `SUBGRAPH_ERROR`.

use serde_json::{Map, Value};

use super::entities::EntityBatch;
use crate::graphql::{GraphQLError, PathSegment};
use crate::transport::TransportError;

pub const SUBGRAPH_ERROR: &str = "SUBGRAPH_ERROR";

/// Where a subgraph response's data sits in the client response.
pub enum ResponseOrigin<'a> {
    /// A root fetch: subgraph paths are client paths.
    Root,
    /// `_entities` calls, keyed by their response key (`_entities` or a batch alias).
    Entities(Vec<(&'a str, &'a EntityBatch<'a>)>),
}

/// A subgraph error as the client sees it. An error on a representation shared by several
/// entities (deduplicated) is reported at each of their paths.
pub fn translate_error(
    service: &str,
    raw: &Value,
    origin: &ResponseOrigin<'_>,
) -> Vec<GraphQLError> {
    let message = raw
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("Subgraph error")
        .to_string();
    let mut error = GraphQLError::new(message);
    if let Some(Value::Object(extensions)) = raw.get("extensions") {
        error.extensions = extensions.clone();
    }
    error
        .extensions
        .entry("serviceName")
        .or_insert_with(|| Value::String(service.to_string()));
    let path: Option<Vec<PathSegment>> = raw
        .get("path")
        .and_then(Value::as_array)
        .map(|path| path.iter().filter_map(PathSegment::from_json).collect());
    let paths = path
        .map(|path| client_paths(&path, origin))
        .unwrap_or_default();
    if paths.is_empty() {
        return vec![error];
    }
    paths
        .into_iter()
        .map(|path| GraphQLError {
            path: Some(path),
            ..error.clone()
        })
        .collect()
}

fn client_paths(path: &[PathSegment], origin: &ResponseOrigin<'_>) -> Vec<Vec<PathSegment>> {
    match origin {
        ResponseOrigin::Root => vec![path.to_vec()],
        ResponseOrigin::Entities(batches) => {
            let [PathSegment::Key(key), PathSegment::Index(index), rest @ ..] = path else {
                return Vec::new();
            };
            let Some((_, batch)) = batches.iter().find(|(name, _)| name == key) else {
                return Vec::new();
            };
            batch
                .paths_of(*index)
                .map(|mut translated| {
                    translated.extend_from_slice(rest);
                    translated
                })
                .collect()
        }
    }
}

/// The code of a fetch whose answer was longer than `--max-response-bytes` (and of a
/// response to the client that would be).
pub const RESPONSE_TOO_LARGE: &str = "RESPONSE_TOO_LARGE";

/// The client error for a subgraph that could not be reached or answered garbage. The cause
/// is logged, not shown; an answer over the size limit says so, with the limit.
pub fn transport_error(service: &str, error: &TransportError) -> GraphQLError {
    tracing::warn!(subgraph = service, error = %error, "subgraph request failed");
    if let TransportError::ResponseTooLarge { limit } = error {
        return GraphQLError::with_code(
            format!(
                "The answer of subgraph \"{service}\" is larger than the limit of {limit} bytes."
            ),
            RESPONSE_TOO_LARGE,
        )
        .extension("serviceName", Value::String(service.into()))
        .extension("limit", Value::from(*limit));
    }
    let mut extensions = Map::new();
    extensions.insert("code".into(), Value::String(SUBGRAPH_ERROR.into()));
    extensions.insert("serviceName".into(), Value::String(service.into()));
    GraphQLError {
        extensions,
        ..GraphQLError::new(format!("Request to subgraph \"{service}\" failed."))
    }
}
