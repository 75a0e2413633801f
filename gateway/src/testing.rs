//! Test support: toy subgraphs, an in-memory transport answering canned JSON, and a harness
//! that runs operations through the whole pipeline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::transport::{SubgraphRequest, SubgraphResponse, SubgraphTransport, TransportError};
use crate::{
    Gateway, GatewayConfig, GraphQLRequest, RequestContext, SubgraphSdl, Supergraph,
    SupergraphOptions, Transports, execute_operation,
};

pub const USERS_SDL: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key", "@shareable"])
type Query { me: User user(id: ID!): User }
type User @key(fields: "id") { id: ID! name: String! email: String }
"#;

pub const POSTS_SDL: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key", "@shareable"])
type Query { feed(first: Int = 20): [Post!]! post(id: ID!): Post }
type Mutation { createPost(body: String!): Post! }
type Post @key(fields: "id") { id: ID! title: String! author: User! comments: [Comment!]! }
type Comment { id: ID! body: String! author: User! }
type User @key(fields: "id") { id: ID! posts: [Post!]! }
"#;

pub fn subgraph(name: &str, sdl: &str) -> SubgraphSdl {
    SubgraphSdl {
        name: name.to_string(),
        url: format!("http://{name}.test/graphql"),
        sdl: sdl.to_string(),
    }
}

/// A subgraph answering canned responses by query string; records what it was asked.
#[derive(Default)]
pub struct MockSubgraph {
    responses: Mutex<HashMap<String, Value>>,
    requests: Mutex<Vec<SubgraphRequest>>,
    unavailable: bool,
}

impl MockSubgraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// A subgraph that cannot be reached.
    pub fn unavailable() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    /// Answers `query` (exactly as the planner writes it) with `response`.
    pub fn on(self, query: &str, response: Value) -> Self {
        self.responses
            .lock()
            .unwrap()
            .insert(query.to_string(), response);
        self
    }

    pub fn requests(&self) -> Vec<SubgraphRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl SubgraphTransport for MockSubgraph {
    async fn execute(&self, request: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
        self.requests.lock().unwrap().push(request.clone());
        if self.unavailable {
            return Err(TransportError::Connect("connection refused".into()));
        }
        let canned = self.responses.lock().unwrap().get(&*request.query).cloned();
        let body = canned.unwrap_or_else(|| {
            json!({"errors": [{"message": format!("mock: unexpected query {}", request.query)}]})
        });
        SubgraphResponse::from_json(body)
    }
}

/// A gateway over toy subgraphs answered by mocks.
pub struct Harness {
    pub gateway: Gateway,
    pub mocks: HashMap<String, Arc<MockSubgraph>>,
}

impl Harness {
    pub fn new(subgraphs: Vec<(&str, &str, MockSubgraph)>) -> Self {
        Self::with_config(subgraphs, GatewayConfig::default())
    }

    pub fn with_config(subgraphs: Vec<(&str, &str, MockSubgraph)>, config: GatewayConfig) -> Self {
        let sdls: Vec<_> = subgraphs
            .iter()
            .map(|(n, sdl, _)| subgraph(n, sdl))
            .collect();
        let supergraph = Supergraph::compose(&sdls, SupergraphOptions::default()).unwrap();
        let mut transports = Transports::new();
        let mut mocks = HashMap::new();
        for (name, _, mock) in subgraphs {
            let mock = Arc::new(mock);
            transports.insert(name, mock.clone());
            mocks.insert(name.to_string(), mock);
        }
        Self {
            gateway: Gateway::new(supergraph, transports, config),
            mocks,
        }
    }

    pub async fn run(&self, query: &str, variables: Value) -> Value {
        let request = GraphQLRequest::new(query).with_variables(variables);
        execute_operation(&self.gateway, request, RequestContext::default())
            .await
            .to_json()
    }

    /// The queries the named subgraph received, in order.
    pub fn queries(&self, name: &str) -> Vec<String> {
        self.mocks[name]
            .requests()
            .into_iter()
            .map(|r| r.query.to_string())
            .collect()
    }

    /// The variables of each request the named subgraph received.
    pub fn variables(&self, name: &str) -> Vec<Value> {
        self.mocks[name]
            .requests()
            .into_iter()
            .map(|r| Value::Object(r.variables))
            .collect()
    }
}
