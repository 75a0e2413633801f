//! How the gateway reaches a subgraph. The executor only sees [`SubgraphTransport`]; whether
//! the subgraph is a separate process (HTTP) or a `Schema` in this process is a wiring choice.
//! Wrappers add behaviour around any transport: [`MeasuredTransport`] (metrics and a span
//! per fetch, closest to the wire), [`DedupTransport`] (in-flight de-duplication) and the
//! entity cache. [`SubgraphSubscriber`] subscribes to a subgraph in this process.

mod dedup;
mod http;
mod in_process;
mod measured;
mod tls;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

pub use crate::fetch::{EntityCall, EntityCalls};
use crate::graphql::OperationKind;

pub use self::dedup::DedupTransport;
pub use self::http::{DEFAULT_MAX_RESPONSE_BYTES, HttpTransport, HttpTransportConfig};
pub use self::in_process::InProcessTransport;
pub use self::measured::MeasuredTransport;
pub use self::tls::{ClientTls, ClientTlsError, ClientTlsFiles};

/// One GraphQL request to one subgraph.
#[derive(Clone)]
pub struct SubgraphRequest {
    pub subgraph_name: String,
    /// The operation text, shared with the plan that wrote it (and every other request of
    /// that fetch).
    pub query: Arc<str>,
    /// What the plan node says the fetch is: wrappers decide on it (a mutation is never
    /// shared, only queries are cached), never on the text of `query`.
    pub kind: OperationKind,
    /// The `_entities` calls of an entity fetch, from its plan node (one for a flattened
    /// fetch, one per alias for a batch); empty for a root fetch.
    pub entity_calls: EntityCalls,
    pub operation_name: Option<String>,
    pub variables: Map<String, Value>,
    /// Client headers forwarded to subgraphs (e.g. `Authorization`).
    pub headers: HeaderMap,
    /// Sent as the request body's `extensions` when not empty.
    pub extensions: Map<String, Value>,
    /// Opaque per-request data for in-process transports (e.g. an already verified identity);
    /// the gateway never looks inside.
    pub context: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for SubgraphRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubgraphRequest")
            .field("subgraph_name", &self.subgraph_name)
            .field("query", &self.query)
            .field("kind", &self.kind)
            .field("entity_calls", &self.entity_calls)
            .field("operation_name", &self.operation_name)
            .field("variables", &self.variables)
            .finish_non_exhaustive()
    }
}

impl SubgraphRequest {
    /// The JSON body of the request, as sent over HTTP: serialized straight from the request's
    /// parts (the representations of an entity fetch are not copied into a second tree).
    pub fn body(&self) -> RequestBody<'_> {
        RequestBody {
            query: &self.query[..],
            operation_name: self.operation_name.as_deref(),
            variables: (!self.variables.is_empty()).then_some(&self.variables),
            extensions: (!self.extensions.is_empty()).then_some(&self.extensions),
        }
    }
}

/// A subgraph request's JSON body, borrowed from the [`SubgraphRequest`].
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestBody<'a> {
    pub query: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<&'a Map<String, Value>>,
}

/// A subgraph's answer. `errors` are kept as raw JSON: the executor rewrites their paths.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubgraphResponse {
    pub data: Option<Value>,
    pub errors: Vec<Value>,
    /// The response's `Cache-Control` header, if the subgraph sent one.
    pub cache_control: Option<String>,
    /// Response headers for the client: every header of the HTTP answer as the transport
    /// read it, then only those the response header rules allow (the header-rules
    /// transport wrapped around this one). Empty for in-process subgraphs.
    pub headers: HeaderMap,
}

impl SubgraphResponse {
    /// Reads a GraphQL response body (`{"data": ..., "errors": [...]}`).
    pub fn from_json(body: Value) -> Result<Self, TransportError> {
        let Value::Object(mut body) = body else {
            return Err(TransportError::InvalidResponse(
                "the body is not a JSON object".into(),
            ));
        };
        let data = body.remove("data").filter(|data| !data.is_null());
        let errors = match body.remove("errors") {
            Some(Value::Array(errors)) => errors,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(TransportError::InvalidResponse(
                    "`errors` is not a list".into(),
                ));
            }
        };
        Ok(Self {
            data,
            errors,
            cache_control: None,
            headers: HeaderMap::new(),
        })
    }
}

/// Why a subgraph could not be asked or did not answer. Internal: logged, and the client gets
/// a generic `SUBGRAPH_ERROR`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("no transport is configured for subgraph `{0}`")]
    UnknownSubgraph(String),
    #[error("the request timed out")]
    Timeout,
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("the subgraph answered HTTP {status}")]
    Status { status: u16 },
    #[error("the subgraph's response is not a GraphQL response: {0}")]
    InvalidResponse(String),
    /// The answer is longer than `--max-response-bytes`; it was not read further.
    #[error("the response is larger than the limit of {limit} bytes")]
    ResponseTooLarge { limit: usize },
    #[error("{0}")]
    Other(String),
}

/// Whether `value` serializes to at most `limit` bytes of JSON. Stops serializing as soon as
/// it is past the limit, and holds none of the bytes.
pub(crate) fn serializes_within(value: &impl serde::Serialize, limit: usize) -> bool {
    struct Counter {
        written: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written = self.written.saturating_add(buf.len());
            if self.written > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { written: 0, limit };
    serde_json::to_writer(&mut counter, value).is_ok()
}

/// Sends a GraphQL request to one subgraph.
#[async_trait]
pub trait SubgraphTransport: Send + Sync {
    async fn execute(&self, request: SubgraphRequest) -> Result<SubgraphResponse, TransportError>;
}

/// Subscribes to a subgraph without a socket (the all-in-one server's subgraphs, in this
/// process): its events, ending when the subscription does; dropping the stream ends it.
/// Subgraphs elsewhere are subscribed to over a WebSocket instead (the gateway's
/// `subscriptions` module).
pub trait SubgraphSubscriber: Send + Sync + std::fmt::Debug {
    fn subscribe(
        &self,
        request: SubgraphRequest,
    ) -> futures::stream::BoxStream<'static, SubgraphResponse>;
}

/// Subgraph name → transport.
#[derive(Clone, Default)]
pub struct Transports {
    by_subgraph: HashMap<String, Arc<dyn SubgraphTransport>>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.by_subgraph.keys().collect();
        names.sort();
        f.debug_struct("Transports")
            .field("subgraphs", &names)
            .finish()
    }
}

impl Transports {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, subgraph: impl Into<String>, transport: Arc<dyn SubgraphTransport>) {
        self.by_subgraph.insert(subgraph.into(), transport);
    }

    pub fn with(
        mut self,
        subgraph: impl Into<String>,
        transport: Arc<dyn SubgraphTransport>,
    ) -> Self {
        self.insert(subgraph, transport);
        self
    }

    /// Every transport wrapped in a [`DedupTransport`].
    pub fn deduplicated(self, metrics: &Arc<crate::inflight::DedupMetrics>) -> Self {
        self.wrapped(|inner| Arc::new(DedupTransport::new(inner, metrics.clone())))
    }

    /// Every transport wrapped in a [`MeasuredTransport`]; wrap before anything that may
    /// answer without a fetch.
    pub fn measured(self) -> Self {
        self.wrapped(|inner| Arc::new(MeasuredTransport::new(inner)))
    }

    /// Every transport wrapped by `wrap`.
    pub fn wrapped(
        self,
        wrap: impl Fn(Arc<dyn SubgraphTransport>) -> Arc<dyn SubgraphTransport>,
    ) -> Self {
        let by_subgraph = self
            .by_subgraph
            .into_iter()
            .map(|(name, inner)| (name, wrap(inner)))
            .collect();
        Self { by_subgraph }
    }

    pub fn get(&self, subgraph: &str) -> Option<&Arc<dyn SubgraphTransport>> {
        self.by_subgraph.get(subgraph)
    }

    /// One HTTP transport per subgraph URL (sharing one connection pool), measured.
    pub fn http<'a>(
        urls: impl IntoIterator<Item = (&'a String, &'a String)>,
        config: &HttpTransportConfig,
    ) -> Result<Self, TransportError> {
        let client = HttpTransport::client(config)?;
        let mut transports = Self::new();
        for (name, url) in urls {
            transports.insert(
                name.clone(),
                Arc::new(HttpTransport::with_client(client.clone(), url, config)?),
            );
        }
        Ok(transports.measured())
    }

    /// Sends the request to the transport registered for its subgraph.
    pub async fn execute(
        &self,
        request: SubgraphRequest,
    ) -> Result<SubgraphResponse, TransportError> {
        let transport = self
            .get(&request.subgraph_name)
            .ok_or_else(|| TransportError::UnknownSubgraph(request.subgraph_name.clone()))?;
        transport.execute(request).await
    }
}
