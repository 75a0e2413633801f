//! The response every stage hands on, from the stage that makes it to the HTTP layer that
//! sends it: its GraphQL body, what the executor reports about the subgraphs behind it, and
//! what the HTTP response around it carries.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::graphql::{GraphQLError, IncrementalParts};

/// A GraphQL response: made once (by the request path, the response cache, a refusing
/// stage, an executor of the HTTP layer's), then handed on as it is; each stage fills in
/// what it decides.
#[derive(Debug, Clone, Default)]
pub struct GraphQLResponse {
    /// The GraphQL body, in the one form its maker has it in.
    pub body: ResponseBody,
    /// `Cache-Control` values of every subgraph response that contributed, one per fetch
    /// (empty when that fetch had no hint): the response cache derives the response's own
    /// policy from them. Never sent.
    pub subgraph_cache_control: Vec<String>,
    /// Subgraph response headers the header rules pass on to the client; the response
    /// cache moves them into `extra_headers` for the request that ran the operation.
    pub subgraph_headers: HeaderMap,
    /// A status the HTTP layer sends whatever the media type (e.g. `429` when rate limited,
    /// `503` when no supergraph is loaded). `None` for GraphQL errors: the layer derives
    /// `200`/`400` from the media type and whether the operation executed.
    pub http_status_hint: Option<StatusCode>,
    /// Sent as `Cache-Control` (for cacheable GET queries). `None`: no `Cache-Control`
    /// header.
    pub cache_control: Option<String>,
    /// Added to the HTTP response as they are.
    pub extra_headers: HeaderMap,
    /// The name of the operation that ran, when the client did not name it in
    /// `operationName` and the executor knows it: for the access log and request metrics.
    pub operation_name: Option<String>,
    /// The payloads that follow `body`, when the response is delivered incrementally
    /// (`@defer`): then `body` is the first payload, and all of them go out as the parts of
    /// one `multipart/mixed` response.
    pub incremental: Option<IncrementalParts>,
}

/// The GraphQL body of a response.
#[derive(Debug, Clone)]
pub enum ResponseBody {
    /// `data`, `errors` and `extensions` as values, written when the response is sent
    /// (request errors, subscription events). `data` is `None` for a request that never
    /// executed (parse, validation, variables) and `Some(Value::Null)` when execution ran
    /// but a null bubbled up to the root: the HTTP layer's status codes depend on it.
    Values {
        data: Option<Value>,
        errors: Vec<GraphQLError>,
        extensions: Map<String, Value>,
    },
    /// The body as it goes on the wire, already written (the request path writes the data
    /// straight to bytes, the response cache keeps them): sent as it is, never read back
    /// and written again.
    Written {
        bytes: Bytes,
        /// Whether the body has a `data` entry, even `null`: the operation executed.
        executed: bool,
        /// The errors the body carries, in its order, for the stages that decide on them
        /// (cache policy, status codes). None for a body the response cache kept: it keeps
        /// none with errors.
        errors: Vec<GraphQLError>,
    },
}

impl Default for ResponseBody {
    fn default() -> Self {
        Self::Values {
            data: None,
            errors: Vec::new(),
            extensions: Map::new(),
        }
    }
}

impl ResponseBody {
    /// Whether the operation executed: the body has a `data` entry, even `null`.
    pub fn executed(&self) -> bool {
        match self {
            Self::Values { data, .. } => data.is_some(),
            Self::Written { executed, .. } => *executed,
        }
    }

    /// The errors the body carries.
    pub fn errors(&self) -> &[GraphQLError] {
        match self {
            Self::Values { errors, .. } | Self::Written { errors, .. } => errors,
        }
    }

    /// The body's bytes, when it is written already.
    pub fn written(&self) -> Option<&Bytes> {
        match self {
            Self::Values { .. } => None,
            Self::Written { bytes, .. } => Some(bytes),
        }
    }

    /// Appends the body as it goes on the wire to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Self::Values {
                data,
                errors,
                extensions,
            } => {
                let mut serializer = serde_json::Serializer::new(out);
                let mut body = (&mut serializer).serialize_map(None)?;
                if let Some(data) = data {
                    body.serialize_entry("data", data)?;
                }
                if !errors.is_empty() {
                    body.serialize_entry("errors", errors)?;
                }
                if !extensions.is_empty() {
                    body.serialize_entry("extensions", extensions)?;
                }
                body.end()
            }
            Self::Written { bytes, .. } => {
                out.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// The body as it goes on the wire: written bytes as they are, values written now.
    pub fn into_bytes(self) -> serde_json::Result<Bytes> {
        match self {
            Self::Written { bytes, .. } => Ok(bytes),
            values => {
                let mut out = Vec::new();
                values.write_to(&mut out)?;
                Ok(Bytes::from(out))
            }
        }
    }

    /// The body as a JSON tree, as the client reads it (written bytes are read back).
    pub fn to_json(&self) -> Value {
        match self {
            Self::Values { .. } => self.clone().into_json(),
            Self::Written { bytes, .. } => read_back(bytes),
        }
    }

    /// [`ResponseBody::to_json`] without copying: the data tree moves into the body.
    pub fn into_json(self) -> Value {
        match self {
            Self::Values {
                data,
                errors,
                extensions,
            } => {
                let mut body = Map::new();
                if let Some(data) = data {
                    body.insert("data".into(), data);
                }
                if !errors.is_empty() {
                    body.insert(
                        "errors".into(),
                        serde_json::to_value(errors).unwrap_or(Value::Null),
                    );
                }
                if !extensions.is_empty() {
                    body.insert("extensions".into(), Value::Object(extensions));
                }
                Value::Object(body)
            }
            Self::Written { bytes, .. } => read_back(&bytes),
        }
    }

    /// The body as values: a written one's `data` read back, its errors as they are. For
    /// the paths that work on the data tree (the parts of a deferred query).
    pub fn into_values(self) -> Self {
        match self {
            values @ Self::Values { .. } => values,
            Self::Written {
                bytes,
                executed,
                errors,
            } => {
                let data = executed.then(|| match read_back(&bytes) {
                    Value::Object(mut body) => body.remove("data").unwrap_or(Value::Null),
                    _ => Value::Null,
                });
                Self::Values {
                    data,
                    errors,
                    extensions: Map::new(),
                }
            }
        }
    }
}

/// Written JSON as a tree: `null` (logged) when it is none, which the gateway never writes.
fn read_back(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|error| {
        tracing::error!(%error, "a written response is not JSON");
        Value::Null
    })
}

impl GraphQLResponse {
    fn with_body(body: ResponseBody) -> Self {
        Self {
            body,
            ..Self::default()
        }
    }

    /// A body an executor has as a JSON tree (`{data?, errors?, extensions?}`, or a first
    /// incremental payload): written now, as the HTTP layer would. Leave `data` out for a
    /// request that never executed (parse, validation, variable coercion, persisted query
    /// not found): the layer answers those with `400` under
    /// `application/graphql-response+json`.
    pub fn new(body: Value) -> Self {
        let executed = body.get("data").is_some();
        let errors = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|error| GraphQLError::deserialize(error).ok())
                    .collect()
            })
            .unwrap_or_default();
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|error| {
            tracing::error!(%error, "a response could not be written");
            br#"{"errors":[{"message":"Internal server error"}]}"#.to_vec()
        });
        Self::with_body(ResponseBody::Written {
            bytes: Bytes::from(bytes),
            executed,
            errors,
        })
    }

    /// A request error: nothing was executed, so there is no `data` key.
    pub fn request_errors(errors: Vec<GraphQLError>) -> Self {
        Self::with_body(ResponseBody::Values {
            data: None,
            errors,
            extensions: Map::new(),
        })
    }

    /// A request error (nothing executed, so no `data`) with a stable `extensions.code`.
    pub fn request_error(message: impl Into<String>, code: &str) -> Self {
        Self::request_errors(vec![GraphQLError::with_code(message, code)])
    }

    /// An executed operation's `data` and errors, as values.
    pub fn executed(data: Value, errors: Vec<GraphQLError>) -> Self {
        Self::with_body(ResponseBody::Values {
            data: Some(data),
            errors,
            extensions: Map::new(),
        })
    }

    /// The start of an executed response's body: its `data` is written next, then the
    /// body goes to [`GraphQLResponse::written`].
    pub fn body_start(capacity: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(capacity);
        body.extend_from_slice(b"{\"data\":");
        body
    }

    /// An executed response written to bytes: `body` is [`GraphQLResponse::body_start`]
    /// followed by the data; the errors are added and the body closed.
    pub fn written(mut body: Vec<u8>, errors: Vec<GraphQLError>) -> Self {
        if !errors.is_empty() {
            let start = body.len();
            body.extend_from_slice(b",\"errors\":");
            if serde_json::to_writer(&mut body, &errors).is_err() {
                tracing::error!("the errors of a response could not be written");
                body.truncate(start);
            }
        }
        body.push(b'}');
        Self::with_body(ResponseBody::Written {
            bytes: Bytes::from(body),
            executed: true,
            errors,
        })
    }

    /// A response that executed, as the bytes it was kept as (a cached response).
    pub fn from_serialized(bytes: Bytes) -> Self {
        Self::with_body(ResponseBody::Written {
            bytes,
            executed: true,
            errors: Vec::new(),
        })
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.http_status_hint = Some(status);
        self
    }

    /// Whether the operation executed (the body has a `data` entry, even `null`).
    pub fn has_data(&self) -> bool {
        self.body.executed()
    }

    /// The errors the body carries.
    pub fn errors(&self) -> &[GraphQLError] {
        self.body.errors()
    }

    /// Whether one of the errors carries `code`.
    pub fn has_error_code(&self, code: &str) -> bool {
        self.errors().iter().any(|error| error.code() == Some(code))
    }

    /// The body as JSON, as the client would receive it.
    pub fn to_json(&self) -> Value {
        self.body.to_json()
    }

    /// [`GraphQLResponse::to_json`] without copying the data.
    pub fn into_json(self) -> Value {
        self.body.into_json()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn written(body: &ResponseBody) -> Vec<u8> {
        let mut out = Vec::new();
        body.write_to(&mut out).expect("writes");
        out
    }

    #[test]
    fn into_json_gives_the_body_to_json_gives() {
        let mut error = GraphQLError::with_code("Not found", "NOT_FOUND");
        error.path = Some(vec!["post".into()]);
        let mut extensions = Map::new();
        extensions.insert("cost".into(), json!(3));
        let responses = [
            GraphQLResponse::with_body(ResponseBody::Values {
                data: Some(json!({ "post": null, "me": { "id": "u1" } })),
                errors: vec![error],
                extensions,
            }),
            GraphQLResponse::request_errors(vec![GraphQLError::new("Syntax error")]),
            GraphQLResponse::executed(Value::Null, Vec::new()),
        ];
        for response in responses {
            let expected = response.to_json();
            let sent = written(&response.body);
            let body = response.into_json();
            assert_eq!(body, expected);
            assert_eq!(body.to_string(), expected.to_string(), "same key order");
            assert_eq!(sent, body.to_string().into_bytes(), "as written");
        }
    }

    #[test]
    fn a_written_body_goes_out_as_it_was_written() {
        let mut body = GraphQLResponse::body_start(16);
        body.extend_from_slice(br#"{"n":1.0}"#);
        let response = GraphQLResponse::written(body, vec![GraphQLError::new("partial")]);
        assert!(response.has_data());
        assert_eq!(
            written(&response.body),
            br#"{"data":{"n":1.0},"errors":[{"message":"partial"}]}"#
        );
        assert_eq!(
            response.body.into_values().into_json(),
            json!({ "data": { "n": 1.0 }, "errors": [{ "message": "partial" }] })
        );
    }

    #[test]
    fn a_json_body_keeps_its_keys_and_tells_whether_it_executed() {
        let refused = GraphQLResponse::new(json!({
            "errors": [{ "message": "Slow down", "extensions": { "code": "RATE_LIMITED" } }]
        }));
        assert!(!refused.has_data());
        assert!(refused.has_error_code("RATE_LIMITED"));
        let first = json!({ "data": { "a": 1 }, "hasNext": true });
        let payload = GraphQLResponse::new(first.clone());
        assert!(payload.has_data());
        assert_eq!(written(&payload.body), first.to_string().into_bytes());
    }
}
