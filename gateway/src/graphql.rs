//! The GraphQL wire types every stage shares: the client request, the response and its errors.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A GraphQL request as the client sent it (a POST body, a GET query string, one item of
/// a batch), the one request type of every stage: `query` may be absent when
/// `extensions.persistedQuery` (APQ) or `documentId` (a persisted-operation manifest) names
/// the document instead, until the persisted-query step fills it in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphQLRequest {
    pub query: Option<String>,
    pub operation_name: Option<String>,
    /// `None` when absent or `null`: no variables.
    pub variables: Option<Map<String, Value>>,
    pub extensions: Option<Map<String, Value>>,
    pub document_id: Option<String>,
}

/// The variables of a request that sent none.
static NO_VARIABLES: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl GraphQLRequest {
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: Some(query.into()),
            ..Self::default()
        }
    }

    pub fn with_variables(mut self, variables: Value) -> Self {
        if let Value::Object(map) = variables {
            self.variables = Some(map);
        }
        self
    }

    pub fn with_operation_name(mut self, name: impl Into<String>) -> Self {
        self.operation_name = Some(name.into());
        self
    }

    /// The document's text; empty when the request names none (nothing parses it then).
    pub fn text(&self) -> &str {
        self.query.as_deref().unwrap_or_default()
    }

    /// The variables, empty when the request sent none.
    pub fn variables(&self) -> &Map<String, Value> {
        self.variables.as_ref().unwrap_or(&NO_VARIABLES)
    }

    /// Whether the request names its document some other way than `query`; only then may
    /// `query` be missing.
    pub fn names_persisted_document(&self) -> bool {
        self.document_id.is_some()
            || self
                .extensions
                .as_ref()
                .is_some_and(|extensions| extensions.contains_key("persistedQuery"))
    }
}

/// The kind of operation a request selects: known once the document is prepared, and
/// handed to every stage that needs it (GET refuses mutations, the cache stores queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

/// One step of a response path: an object key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

impl PathSegment {
    /// Reads a path segment from JSON (as found in a subgraph error's `path`).
    pub fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::String(key) => Some(Self::Key(key.clone())),
            Value::Number(n) => n.as_u64().map(|i| Self::Index(i as usize)),
            _ => None,
        }
    }
}

impl From<&str> for PathSegment {
    fn from(key: &str) -> Self {
        Self::Key(key.to_string())
    }
}

impl From<usize> for PathSegment {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

/// A position in the client's operation text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// An error as the client sees it in `errors[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphQLError {
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<PathSegment>>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extensions: Map<String, Value>,
}

impl GraphQLError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            locations: Vec::new(),
            path: None,
            extensions: Map::new(),
        }
    }

    /// An error carrying a stable `extensions.code`, which clients branch on.
    pub fn with_code(message: impl Into<String>, code: &str) -> Self {
        Self::new(message).extension("code", Value::String(code.to_string()))
    }

    pub fn extension(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.to_string(), value);
        self
    }

    pub fn at(mut self, path: Vec<PathSegment>) -> Self {
        self.path = Some(path);
        self
    }

    pub fn code(&self) -> Option<&str> {
        self.extensions.get("code").and_then(Value::as_str)
    }
}

/// The response sent back to the client.
///
/// `data` is `None` for request errors (parse, validation, variables: nothing was executed)
/// and `Some(Value::Null)` when execution ran but a null bubbled up to the root; the HTTP
/// layer needs that distinction for GraphQL-over-HTTP status codes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphQLResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<GraphQLError>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extensions: Map<String, Value>,
    /// `Cache-Control` values of every subgraph response that contributed, one per fetch
    /// (empty when that fetch had no hint); the HTTP layer derives the response's own
    /// policy from them. Not serialized.
    #[serde(skip)]
    pub subgraph_cache_control: Vec<String>,
    /// Subgraph response headers the header rules pass on to the client. Not serialized.
    #[serde(skip)]
    pub subgraph_headers: reqwest::header::HeaderMap,
}

impl GraphQLResponse {
    /// A request error: nothing was executed, so there is no `data` key.
    pub fn request_errors(errors: Vec<GraphQLError>) -> Self {
        Self {
            errors,
            ..Self::default()
        }
    }

    /// The response as JSON, as the client would receive it.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// [`GraphQLResponse::to_json`] without copying: the data tree moves into the body.
    pub fn into_json(self) -> Value {
        let mut body = Map::new();
        if let Some(data) = self.data {
            body.insert("data".into(), data);
        }
        if !self.errors.is_empty() {
            body.insert(
                "errors".into(),
                serde_json::to_value(self.errors).unwrap_or(Value::Null),
            );
        }
        if !self.extensions.is_empty() {
            body.insert("extensions".into(), Value::Object(self.extensions));
        }
        Value::Object(body)
    }
}

/// A response the request path wrote for the client: its body as it goes on the wire, and
/// what the stages after execution decide on (whether it executed, its errors, the subgraphs'
/// cache hints and headers). The data was written straight to bytes: no JSON tree of it
/// exists (the response module writes it).
#[derive(Debug, Clone, Default)]
pub struct WrittenResponse {
    /// `{"data":…,"errors":[…]}` (no `data` for request errors), as sent.
    pub body: Vec<u8>,
    /// Whether the body has a `data` entry, even `null`: the operation executed.
    pub executed: bool,
    /// The errors the body carries, in its order.
    pub errors: Vec<GraphQLError>,
    /// As [`GraphQLResponse::subgraph_cache_control`].
    pub subgraph_cache_control: Vec<String>,
    /// As [`GraphQLResponse::subgraph_headers`].
    pub subgraph_headers: reqwest::header::HeaderMap,
}

impl WrittenResponse {
    /// The start of an executed response's body: its `data` is written next.
    pub fn body_start(capacity: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(capacity);
        body.extend_from_slice(b"{\"data\":");
        body
    }

    /// An executed response: `body` is [`WrittenResponse::body_start`] followed by the data;
    /// the errors are added and the body closed.
    pub fn executed(mut body: Vec<u8>, errors: Vec<GraphQLError>) -> Self {
        if !errors.is_empty() {
            let start = body.len();
            body.extend_from_slice(b",\"errors\":");
            if serde_json::to_writer(&mut body, &errors).is_err() {
                tracing::error!("the errors of a response could not be written");
                body.truncate(start);
            }
        }
        body.push(b'}');
        Self {
            body,
            executed: true,
            errors,
            ..Self::default()
        }
    }

    /// A request error: nothing was executed, so there is no `data` key.
    pub fn request_errors(errors: Vec<GraphQLError>) -> Self {
        let body = serde_json::to_vec(&GraphQLResponse::request_errors(errors.clone()))
            .unwrap_or_else(|error| {
                tracing::error!(%error, "the errors of a response could not be written");
                br#"{"errors":[{"message":"Internal server error"}]}"#.to_vec()
            });
        Self {
            body,
            executed: false,
            errors,
            ..Self::default()
        }
    }

    /// Whether one of the errors carries `code`.
    pub fn has_error_code(&self, code: &str) -> bool {
        self.errors.iter().any(|error| error.code() == Some(code))
    }

    /// The response as a JSON tree, read back from the body: for the paths that need the
    /// tree (deferred parts, tests).
    pub fn into_response(self) -> GraphQLResponse {
        let data = if self.executed {
            let mut body: Map<String, Value> =
                serde_json::from_slice(&self.body).unwrap_or_else(|error| {
                    tracing::error!(%error, "a written response is not a JSON object");
                    Map::new()
                });
            Some(body.remove("data").unwrap_or(Value::Null))
        } else {
            None
        };
        GraphQLResponse {
            data,
            errors: self.errors,
            extensions: Map::new(),
            subgraph_cache_control: self.subgraph_cache_control,
            subgraph_headers: self.subgraph_headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn into_json_gives_the_body_to_json_gives() {
        let mut error = GraphQLError::with_code("Not found", "NOT_FOUND");
        error.path = Some(vec!["post".into()]);
        let mut extensions = Map::new();
        extensions.insert("cost".into(), json!(3));
        let responses = [
            GraphQLResponse {
                data: Some(json!({ "post": null, "me": { "id": "u1" } })),
                errors: vec![error],
                extensions,
                subgraph_cache_control: vec!["max-age=30".into()],
                ..GraphQLResponse::default()
            },
            GraphQLResponse::request_errors(vec![GraphQLError::new("Syntax error")]),
            GraphQLResponse {
                data: Some(Value::Null),
                ..GraphQLResponse::default()
            },
        ];
        for response in responses {
            let expected = response.to_json();
            let body = response.into_json();
            assert_eq!(body, expected);
            assert_eq!(body.to_string(), expected.to_string(), "same key order");
        }
    }
}
