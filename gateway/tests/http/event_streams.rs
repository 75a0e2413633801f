//! GraphQL over server-sent events in single connection mode, through the gateway: the
//! `graphql-sse` npm client with `singleConnection: true` runs two subscriptions on one
//! stream, and the protocol's requests one by one (reserve, open, operate, stop, close,
//! expire) with what each frees on the gauges; the limits on reservations not yet opened,
//! per client address and per process; and who may stop an operation.

use std::time::Duration;

use serde_json::{Value, json};

use crate::subscriptions::{Gateway, REVIEW_ADDED, gateway, gateway_with, review, subgraphs};
use crate::support::run_node;
use gantry_gateway::app::{GatewaySettings, SubgraphUrl, SupergraphSource};
use gantry_gateway::graphql_http::HttpSettings;
use gantry_gateway::subscriptions::SubscriptionSettings;
use gantry_identity::client::TrustedProxies;

const TOKEN_HEADER: &str = "x-graphql-event-stream-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_sse_client_runs_two_subscriptions_on_one_stream_and_each_is_freed() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let client = tokio::spawn({
        let url = gateway.url();
        async move {
            run_node(
                "sse-single.mjs",
                &[
                    &url,
                    "--query",
                    REVIEW_ADDED,
                    "--variables",
                    r#"{"product":"p1"}"#,
                    "--take",
                    "1",
                    "--query",
                    REVIEW_ADDED,
                    "--variables",
                    r#"{"product":"p2"}"#,
                    "--take",
                    "2",
                ],
            )
            .await
        }
    });
    gateway
        .until(|s| s.active() == 2 && s.upstreams() == 2 && s.event_streams() == 1)
        .await;
    reviews.until_subscribed(2).await;
    reviews.published.send(review("r1", "p1", "u1")).ok();
    reviews.published.send(review("r2", "p2", "u2")).ok();

    // The first has what it wanted and stops (DELETE): its place and upstream are freed
    // while the stream stays open for the second.
    gateway
        .until(|s| s.active() == 1 && s.upstreams() == 1 && s.event_streams() == 1)
        .await;
    reviews.published.send(review("r3", "p2", "u3")).ok();

    let (ok, output) = client.await.expect("the client ran");
    assert!(ok, "{output}");
    let result: Value =
        serde_json::from_str(output.lines().last().unwrap_or_default()).expect("JSON");
    let events = |index: usize| result["operations"][index]["events"].clone();
    assert_eq!(
        events(0),
        json!([{ "data": { "reviewAdded": { "body": "review r1", "author": { "name": "person u1" } } } }])
    );
    assert_eq!(
        events(1),
        json!([
            { "data": { "reviewAdded": { "body": "review r2", "author": { "name": "person u2" } } } },
            { "data": { "reviewAdded": { "body": "review r3", "author": { "name": "person u3" } } } },
        ])
    );
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0 && s.event_streams() == 0)
        .await;
    reviews.until_released().await;
}

/// The protocol's requests, one by one.
struct Protocol {
    client: reqwest::Client,
    url: String,
}

impl Protocol {
    fn new(gateway: &Gateway) -> Self {
        Self {
            client: reqwest::Client::new(),
            url: gateway.url(),
        }
    }

    async fn reserve(&self, authorization: Option<&str>) -> reqwest::Response {
        match authorization {
            Some(authorization) => self.reserve_with(&[("authorization", authorization)]).await,
            None => self.reserve_with(&[]).await,
        }
    }

    async fn reserve_with(&self, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.put(&self.url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("PUT")
    }

    /// A reservation from client address `address` (behind a trusted proxy).
    async fn reserve_from(&self, address: &str) -> reqwest::Response {
        self.reserve_with(&[("x-forwarded-for", address)]).await
    }

    async fn token(&self) -> String {
        let reserved = self.reserve(None).await;
        assert_eq!(reserved.status(), 201);
        assert_eq!(
            reserved.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        reserved.text().await.expect("the token")
    }

    async fn open(&self, token: &str) -> reqwest::Response {
        self.client
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header(TOKEN_HEADER, token)
            .send()
            .await
            .expect("GET")
    }

    async fn operate(&self, token: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}?token={token}", self.url))
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    async fn operate_as(&self, token: &str, body: Value, authorization: &str) -> reqwest::Response {
        self.client
            .post(format!("{}?token={token}", self.url))
            .header("authorization", authorization)
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    async fn open_as(&self, token: &str, authorization: &str) -> reqwest::Response {
        self.client
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header(TOKEN_HEADER, token)
            .header("authorization", authorization)
            .send()
            .await
            .expect("GET")
    }

    async fn stop(&self, token: &str, id: &str, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .delete(format!("{}?operationId={id}", self.url))
            .header(TOKEN_HEADER, token);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send().await.expect("DELETE")
    }
}

/// The next event of an event stream as `{event, data}`, skipping comments and
/// heartbeats.
async fn next_data(stream: &mut reqwest::Response, buffer: &mut String) -> Value {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let event = block
                .lines()
                .find_map(|line| line.strip_prefix("event:"))
                .map(str::trim)
                .map(str::to_owned);
            let data = block
                .lines()
                .find_map(|line| line.strip_prefix("data:"))
                .map(str::trim);
            if let (Some(event), Some(data)) = (event, data) {
                let data: Value = serde_json::from_str(data).expect("JSON data");
                return json!({ "event": event, "data": data });
            }
        }
        let chunk = stream
            .chunk()
            .await
            .expect("the stream is still open")
            .expect("a chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_stream_carries_operations_by_id_and_closing_it_frees_them() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let protocol = Protocol::new(&gateway);

    let unknown = protocol.open("no-such-token").await;
    assert_eq!(unknown.status(), 404);
    let token = protocol.token().await;
    let opened = protocol.open(&token).await;
    assert_eq!(opened.status(), 200);
    assert!(
        opened.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    assert_eq!(
        protocol.open(&token).await.status(),
        409,
        "one stream per token"
    );

    let subscribe = |id: &str, product: &str| {
        json!({ "query": REVIEW_ADDED, "variables": { "product": product },
                "extensions": { "operationId": id } })
    };
    let without_id = protocol
        .operate(
            &token,
            json!({ "query": REVIEW_ADDED, "variables": { "product": "p1" } }),
        )
        .await;
    assert_eq!(without_id.status(), 400);
    let invalid = protocol
        .operate(
            &token,
            json!({ "query": "subscription { nothing }", "extensions": { "operationId": "x" } }),
        )
        .await;
    assert_eq!(invalid.status(), 400);
    let invalid: Value = invalid.json().await.expect("JSON");
    assert_eq!(
        invalid["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert_eq!(
        protocol
            .operate(&token, subscribe("a", "p1"))
            .await
            .status(),
        202
    );
    assert_eq!(
        protocol
            .operate(&token, subscribe("a", "p1"))
            .await
            .status(),
        409,
        "an operation id in use"
    );
    assert_eq!(
        protocol
            .operate(&token, subscribe("b", "p2"))
            .await
            .status(),
        202
    );
    let query = protocol
        .operate(
            &token,
            json!({ "query": "{ reviewCount }", "extensions": { "operationId": "q" } }),
        )
        .await;
    assert_eq!(query.status(), 202);

    let mut stream = opened;
    let mut buffer = String::new();
    assert_eq!(
        next_data(&mut stream, &mut buffer).await,
        json!({ "event": "next", "data": { "id": "q", "payload": { "data": { "reviewCount": 0 } } } })
    );
    assert_eq!(
        next_data(&mut stream, &mut buffer).await,
        json!({ "event": "complete", "data": { "id": "q" } })
    );
    gateway
        .until(|s| s.active() == 2 && s.upstreams() == 2)
        .await;
    reviews.until_subscribed(2).await;
    reviews.published.send(review("r1", "p2", "u1")).ok();
    assert_eq!(
        next_data(&mut stream, &mut buffer).await,
        json!({ "event": "next", "data": { "id": "b", "payload": { "data": { "reviewAdded": {
            "body": "review r1", "author": { "name": "person u1" } } } } } })
    );

    let stopped = protocol
        .client
        .delete(format!("{}?operationId=a", protocol.url))
        .header(TOKEN_HEADER, &token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(stopped.status(), 200);
    gateway
        .until(|s| s.active() == 1 && s.upstreams() == 1)
        .await;

    drop(stream);
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0 && s.event_streams() == 0)
        .await;
    assert_eq!(
        protocol
            .operate(&token, subscribe("c", "p1"))
            .await
            .status(),
        404,
        "a closed stream's token names nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_never_opened_expires_and_a_bad_token_reserves_nothing() {
    let (_reviews, urls, _) = subgraphs().await;
    let settings = SubscriptionSettings {
        reservation_timeout: Duration::from_millis(300),
        ..SubscriptionSettings::default()
    };
    let gateway = gateway(urls, settings).await;
    let protocol = Protocol::new(&gateway);

    let refused = protocol.reserve(Some("Bearer not-a-token")).await;
    assert_eq!(refused.status(), 401);
    let refused: Value = refused.json().await.expect("JSON");
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );

    let token = protocol.token().await;
    assert_eq!(gateway.subscriptions.event_streams(), 1);
    gateway.until(|s| s.event_streams() == 0).await;
    assert_eq!(protocol.open(&token).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_stream_opens_only_for_the_caller_who_reserved_it() {
    let (_reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let protocol = Protocol::new(&gateway);
    let owner = format!("Bearer {}", gateway.token(uuid::Uuid::now_v7(), 600));

    let reserved = protocol.reserve(Some(&owner)).await;
    assert_eq!(reserved.status(), 201);
    let token = reserved.text().await.expect("the token");

    assert_eq!(protocol.open(&token).await.status(), 404, "anonymous");
    let opened = protocol
        .client
        .get(&protocol.url)
        .header("accept", "text/event-stream")
        .header(TOKEN_HEADER, &token)
        .header("authorization", &owner)
        .send()
        .await
        .expect("GET");
    assert_eq!(opened.status(), 200);
}

/// A gateway behind a proxy on this host, so `X-Forwarded-For` names each client.
async fn gateway_behind_proxy(urls: Vec<SubgraphUrl>, settings: SubscriptionSettings) -> Gateway {
    gateway_with(
        SupergraphSource::Subgraphs(urls),
        GatewaySettings {
            subscriptions: settings,
            http: HttpSettings {
                trusted_proxies: TrustedProxies::loopback(),
                ..HttpSettings::default()
            },
            ..GatewaySettings::default()
        },
    )
    .await
}

/// The status, code and limit of a refusal.
async fn refusal(response: reqwest::Response) -> (u16, Value, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    let extensions = &body["errors"][0]["extensions"];
    (
        status,
        extensions["code"].clone(),
        extensions["limit"].clone(),
    )
}

async fn token_of(reserved: reqwest::Response) -> String {
    assert_eq!(reserved.status(), 201);
    reserved.text().await.expect("the token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_not_yet_opened_are_capped_per_client_address_and_others_still_get_streams() {
    let (_reviews, urls, _) = subgraphs().await;
    let settings = SubscriptionSettings {
        max_pending_streams_per_address: 2,
        ..SubscriptionSettings::default()
    };
    let gateway = gateway_behind_proxy(urls, settings).await;
    let protocol = Protocol::new(&gateway);

    let abuser = "203.0.113.7";
    let first = token_of(protocol.reserve_from(abuser).await).await;
    token_of(protocol.reserve_from(abuser).await).await;
    assert_eq!(
        refusal(protocol.reserve_from(abuser).await).await,
        (429, json!("TOO_MANY_RESERVATIONS"), json!(2))
    );
    // An IPv6 client counts by its /64: its neighbours share its places.
    token_of(protocol.reserve_from("2001:db8:7:7::1").await).await;
    token_of(protocol.reserve_from("2001:db8:7:7::2").await).await;
    assert_eq!(
        refusal(protocol.reserve_from("2001:db8:7:7::3").await).await,
        (429, json!("TOO_MANY_RESERVATIONS"), json!(2))
    );
    token_of(protocol.reserve_from("2001:db8:7:8::1").await).await;

    // Someone else still reserves, opens and uses a stream.
    let token = token_of(protocol.reserve_from("198.51.100.9").await).await;
    let mut stream = protocol.open(&token).await;
    assert_eq!(stream.status(), 200);
    let query = json!({ "query": "{ reviewCount }", "extensions": { "operationId": "q" } });
    assert_eq!(protocol.operate(&token, query).await.status(), 202);
    let mut buffer = String::new();
    assert_eq!(
        next_data(&mut stream, &mut buffer).await,
        json!({ "event": "next", "data": { "id": "q", "payload": { "data": { "reviewCount": 0 } } } })
    );

    // Opening a reservation gives its place back.
    let opened = protocol.open(&first).await;
    assert_eq!(opened.status(), 200);
    token_of(protocol.reserve_from(abuser).await).await;
    assert_eq!(
        refusal(protocol.reserve_from(abuser).await).await,
        (429, json!("TOO_MANY_RESERVATIONS"), json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_not_yet_opened_are_capped_per_process_and_opening_one_makes_room() {
    let (_reviews, urls, _) = subgraphs().await;
    let settings = SubscriptionSettings {
        max_pending_streams_per_address: 2,
        max_pending_streams: 3,
        ..SubscriptionSettings::default()
    };
    let gateway = gateway_behind_proxy(urls, settings).await;
    let protocol = Protocol::new(&gateway);

    token_of(protocol.reserve_from("203.0.113.1").await).await;
    token_of(protocol.reserve_from("203.0.113.1").await).await;
    let token = token_of(protocol.reserve_from("203.0.113.2").await).await;
    assert_eq!(
        refusal(protocol.reserve_from("198.51.100.9").await).await,
        (429, json!("TOO_MANY_RESERVATIONS"), json!(3))
    );
    assert_eq!(gateway.subscriptions.pending_event_streams(), 3);

    let opened = protocol.open(&token).await;
    assert_eq!(opened.status(), 200);
    assert_eq!(gateway.subscriptions.pending_event_streams(), 2);
    token_of(protocol.reserve_from("198.51.100.9").await).await;
    assert_eq!(gateway.subscriptions.event_streams(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_reservation_gives_back_its_place_and_ends_what_ran_on_it() {
    let (_reviews, urls, _) = subgraphs().await;
    let settings = SubscriptionSettings {
        reservation_timeout: Duration::from_secs(3),
        max_pending_streams_per_address: 1,
        ..SubscriptionSettings::default()
    };
    let gateway = gateway(urls, settings).await;
    let protocol = Protocol::new(&gateway);

    let token = protocol.token().await;
    assert_eq!(
        refusal(protocol.reserve(None).await).await,
        (429, json!("TOO_MANY_RESERVATIONS"), json!(1))
    );
    let subscribe = json!({ "query": REVIEW_ADDED, "variables": { "product": "p1" },
                            "extensions": { "operationId": "a" } });
    assert_eq!(protocol.operate(&token, subscribe).await.status(), 202);
    assert_eq!(gateway.subscriptions.active(), 1);

    gateway
        .until(|s| {
            s.event_streams() == 0
                && s.pending_event_streams() == 0
                && s.active() == 0
                && s.upstreams() == 0
        })
        .await;
    assert_eq!(protocol.open(&token).await.status(), 404);
    protocol.token().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_caller_who_reserved_a_stream_stops_its_operations() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let protocol = Protocol::new(&gateway);
    let owner = format!("Bearer {}", gateway.token(uuid::Uuid::now_v7(), 600));
    let someone = format!("Bearer {}", gateway.token(uuid::Uuid::now_v7(), 600));

    let token = token_of(protocol.reserve(Some(&owner)).await).await;
    let mut stream = protocol.open_as(&token, &owner).await;
    assert_eq!(stream.status(), 200);
    let subscribe = json!({ "query": REVIEW_ADDED, "variables": { "product": "p1" },
                            "extensions": { "operationId": "a" } });
    assert_eq!(
        protocol
            .operate_as(&token, subscribe, &owner)
            .await
            .status(),
        202
    );

    let anonymous = protocol.stop(&token, "a", None).await;
    assert_eq!(anonymous.status(), 404);
    let anonymous: Value = anonymous.json().await.expect("JSON");
    assert_eq!(anonymous["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    assert_eq!(
        protocol.stop(&token, "a", Some(&someone)).await.status(),
        404,
        "another user"
    );
    assert_eq!(
        refusal(protocol.stop(&token, "a", Some("Bearer not-a-token")).await).await,
        (401, json!("UNAUTHENTICATED"), Value::Null)
    );

    // The operation still runs.
    reviews.until_subscribed(1).await;
    reviews.published.send(review("r1", "p1", "u1")).ok();
    let mut buffer = String::new();
    assert_eq!(
        next_data(&mut stream, &mut buffer).await,
        json!({ "event": "next", "data": { "id": "a", "payload": { "data": { "reviewAdded": {
            "body": "review r1", "author": { "name": "person u1" } } } } } })
    );

    assert_eq!(protocol.stop(&token, "a", Some(&owner)).await.status(), 200);
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0)
        .await;
}
