//! The GraphQL wire types every stage shares: the client request, the response and its errors.
//!
//! # Layout
//!
//! - this module: [`GraphQLRequest`], [`OperationKind`], [`GraphQLError`] and its paths.
//! - `response`: [`GraphQLResponse`], the one response every stage hands on, from the
//!   request path to the HTTP layer, its body as values or as the bytes already written.
//! - `incremental`: [`IncrementalFormat`] and [`IncrementalParts`], the later payloads of a
//!   response delivered in parts (`@defer`).

mod incremental;
mod response;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use self::incremental::{IncrementalFormat, IncrementalParts};
pub use self::response::{GraphQLResponse, ResponseBody};

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
