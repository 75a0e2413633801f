//! A stub [`OperationExecutor`] over a tiny async-graphql schema, and a server on port 0.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Context, EmptySubscription, Object, Schema, Variables};
use async_trait::async_trait;
use axum::http::Method;
use gantry_gateway::graphql_http::{
    self, GraphQLRequest, GraphQLResponse, HttpSettings, OperationExecutor, OperationKind,
    RequestContext,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct Query;

#[Object]
impl Query {
    async fn hello(&self) -> &str {
        "world"
    }

    async fn echo(&self, x: Option<String>) -> Option<String> {
        x
    }

    /// The request id the executor was given, to compare with the response header.
    async fn request_id(&self, context: &Context<'_>) -> String {
        context.data_unchecked::<Seen>().request_id.clone()
    }

    async fn client_ip(&self, context: &Context<'_>) -> Option<String> {
        context
            .data_unchecked::<Seen>()
            .client_addr
            .map(|ip| ip.to_string())
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    async fn noop(&self) -> Option<bool> {
        Some(true)
    }
}

struct Seen {
    request_id: String,
    client_addr: Option<IpAddr>,
}

/// Answers with async-graphql, the way the real pipeline answers: no `data` when the
/// request never executed, `Cache-Control` on GET queries.
pub struct StubExecutor {
    schema: Schema<Query, Mutation, EmptySubscription>,
}

impl StubExecutor {
    pub fn new() -> Self {
        Self {
            schema: Schema::new(Query, Mutation, EmptySubscription),
        }
    }
}

#[async_trait]
impl OperationExecutor for StubExecutor {
    async fn execute(&self, request: GraphQLRequest, context: &RequestContext) -> GraphQLResponse {
        let Some(query) = request.query else {
            return GraphQLResponse::request_error(
                "PersistedQueryNotFound",
                "PERSISTED_QUERY_NOT_FOUND",
            );
        };
        let mut graphql = async_graphql::Request::new(query).data(Seen {
            request_id: context.request_id.clone(),
            client_addr: context.client_addr,
        });
        if let Some(name) = request.operation_name {
            graphql = graphql.operation_name(name);
        }
        if let Some(variables) = request.variables {
            graphql = graphql.variables(Variables::from_json(Value::Object(variables)));
        }
        let response = self.schema.execute(graphql).await;
        let never_executed = response.data == async_graphql::Value::Null && response.is_err();
        let mut body = serde_json::to_value(&response).expect("a response serializes");
        if never_executed && let Some(object) = body.as_object_mut() {
            object.remove("data");
        }
        let mut answer = GraphQLResponse::new(body);
        if context.method == Method::GET && !never_executed {
            answer.cache_control = Some("public, max-age=60".to_string());
        }
        answer
    }

    async fn operation_kind(
        &self,
        request: &GraphQLRequest,
        _context: &RequestContext,
    ) -> Result<OperationKind, GraphQLResponse> {
        let Some(query) = &request.query else {
            return Ok(OperationKind::Query);
        };
        let document = async_graphql::parser::parse_query(query).map_err(|error| {
            GraphQLResponse::request_error(error.to_string(), "GRAPHQL_PARSE_FAILED")
        })?;
        let operation = match (&document.operations, &request.operation_name) {
            (DocumentOperations::Single(operation), _) => Some(operation),
            (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name.as_str()),
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
                operations.values().next()
            }
            (DocumentOperations::Multiple(_), None) => None,
        };
        let Some(operation) = operation else {
            return Err(GraphQLResponse::request_error(
                "Unknown or ambiguous operation",
                "GRAPHQL_VALIDATION_FAILED",
            ));
        };
        Ok(match operation.node.ty {
            OperationType::Query => OperationKind::Query,
            OperationType::Mutation => OperationKind::Mutation,
            OperationType::Subscription => OperationKind::Subscription,
        })
    }
}

/// The HTTP layer with the stub executor, on 127.0.0.1 port 0; stops when dropped.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
}

impl TestServer {
    pub async fn spawn() -> Self {
        Self::spawn_with(HttpSettings::default()).await
    }

    pub async fn spawn_with(settings: HttpSettings) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let app = graphql_http::router(Arc::new(StubExecutor::new()), settings);
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(graphql_http::serve(listener, app, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: reqwest::Client::new(),
            _shutdown: shutdown,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST a JSON body (as text, so malformed bodies can be sent too) with headers.
    pub async fn post(&self, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .body(body.to_string());
        let has_content_type = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if !has_content_type {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("POST /graphql")
    }

    pub async fn get(&self, path_and_query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.get(self.url(path_and_query));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("GET")
    }
}

/// Status, a header, and the body as JSON.
pub async fn json(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = header(&response, "content-type");
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, content_type, body)
}

pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("ASCII header").to_string())
        .unwrap_or_default()
}

/// `tests/node` at the workspace root, with its npm packages installed.
pub fn node_project() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("node");
    assert!(
        dir.join("node_modules").is_dir(),
        "{}/node_modules is missing: run `npm ci` there (scripts/test does it before the tests)",
        dir.display()
    );
    dir
}

/// Runs `node SCRIPT ARGS…` in `tests/node`, echoing its output; returns (success, stdout).
pub async fn run_node(script: &str, args: &[&str]) -> (bool, String) {
    let dir = node_project();
    let output = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run node (is Node.js installed?): {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    println!("--- node {script} stdout ---\n{stdout}");
    eprintln!(
        "--- node {script} stderr ---\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), stdout)
}
