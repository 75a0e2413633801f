//! Serves test-only async-graphql subgraphs over real HTTP on port 0, composes their
//! `_service { sdl }` into a supergraph and puts a gateway with HTTP transports in front.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::{ObjectType, Schema, SubscriptionType};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::routing::post;
use gantry_gateway::{
    Gateway, GatewayConfig, GraphQLRequest as ClientRequest, HttpTransportConfig, RequestContext,
    SubgraphSdl, Supergraph, SupergraphOptions, Transports, execute_operation,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The queries one subgraph received over HTTP, in order.
type Received = Arc<Mutex<Vec<String>>>;

/// A test subgraph, ready to be served: its axum router and what it records.
pub struct TestSubgraph {
    name: String,
    router: Router,
    received: Received,
    down: bool,
}

/// Wraps an async-graphql schema (built with `.enable_federation()`) as a subgraph.
pub fn subgraph<Q, M, S>(name: &str, schema: Schema<Q, M, S>) -> TestSubgraph
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let received: Received = Arc::default();
    let log = received.clone();
    let router = Router::new().route(
        "/graphql",
        post(move |request: GraphQLRequest| {
            let schema = schema.clone();
            let log = log.clone();
            async move {
                let request = request.into_inner();
                log.lock().unwrap().push(request.query.clone());
                GraphQLResponse::from(schema.execute(request).await)
            }
        }),
    );
    TestSubgraph {
        name: name.to_string(),
        router,
        received,
        down: false,
    }
}

impl TestSubgraph {
    /// Composed into the supergraph, then stopped before the first client request, so the
    /// gateway's requests to it are refused.
    pub fn down(mut self) -> Self {
        self.down = true;
        self
    }
}

/// A gateway in front of running test subgraphs.
pub struct Harness {
    gateway: Gateway,
    received: HashMap<String, Received>,
    _servers: Vec<JoinHandle<()>>,
}

/// Serves each subgraph, fetches its SDL over HTTP, composes, and builds the gateway.
pub async fn gateway(subgraphs: Vec<TestSubgraph>) -> Harness {
    let mut sdls = Vec::new();
    let mut received = HashMap::new();
    let mut servers = Vec::new();
    for subgraph in subgraphs {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/graphql", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, subgraph.router).await.unwrap();
        });
        let sdl = fetch_sdl(&url).await;
        subgraph.received.lock().unwrap().clear();
        if subgraph.down {
            server.abort();
            let _ = server.await;
        } else {
            servers.push(server);
        }
        received.insert(subgraph.name.clone(), subgraph.received);
        sdls.push(SubgraphSdl {
            name: subgraph.name,
            url,
            sdl,
        });
    }
    let supergraph = Supergraph::compose(&sdls, SupergraphOptions::default())
        .unwrap_or_else(|error| panic!("composition failed: {error}\n{sdls:#?}"));
    let transports =
        Transports::http(supergraph.subgraph_urls(), &HttpTransportConfig::default()).unwrap();
    Harness {
        gateway: Gateway::new(supergraph, transports, GatewayConfig::default()),
        received,
        _servers: servers,
    }
}

/// `{ _service { sdl } }` over a connection that is closed afterwards.
async fn fetch_sdl(url: &str) -> String {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let body: Value = client
        .post(url)
        .header(reqwest::header::CONNECTION, "close")
        .json(&json!({"query": "{ _service { sdl } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]["_service"]["sdl"]
        .as_str()
        .unwrap_or_else(|| panic!("no SDL from {url}: {body}"))
        .to_string()
}

impl Harness {
    /// Runs one operation through the gateway; the response as the client receives it.
    pub async fn run(&self, query: &str, variables: Value) -> Value {
        let request = ClientRequest::new(query).with_variables(variables);
        execute_operation(&self.gateway, request, RequestContext::default())
            .await
            .to_json()
    }

    /// How many requests the named subgraph received since composition.
    pub fn requests(&self, subgraph: &str) -> usize {
        self.received[subgraph].lock().unwrap().len()
    }

    /// The queries the named subgraph received since composition (for failure messages).
    pub fn queries(&self, subgraph: &str) -> Vec<String> {
        self.received[subgraph].lock().unwrap().clone()
    }

    /// The supergraph SDL, for failure messages.
    pub fn supergraph_sdl(&self) -> String {
        self.gateway.supergraph().sdl().to_string()
    }
}
