//! The HTTP transport: JSON POST over a pooled keep-alive reqwest client.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::{SubgraphRequest, SubgraphResponse, SubgraphTransport, TransportError};

/// Timeouts and pooling of subgraph HTTP connections.
#[derive(Debug, Clone)]
pub struct HttpTransportConfig {
    /// Time to establish a TCP connection. Default: 2 s.
    pub connect_timeout: Duration,
    /// Time for a whole request, from sending to the last byte of the answer. Default: 30 s.
    pub request_timeout: Duration,
    /// Idle keep-alive connections kept per subgraph host. Default: 32.
    pub pool_max_idle_per_host: usize,
    /// Requests in flight to one subgraph at once; more wait here (within the request
    /// timeout) instead of piling onto an overloaded subgraph. Default: 100.
    pub max_in_flight: usize,
    /// The longest answer read from a subgraph, in bytes; past it the read stops and the
    /// fetch fails with `RESPONSE_TOO_LARGE`. Default: 32 MiB.
    pub max_response_bytes: usize,
    /// Extra root certificates and the client certificate. Default: public roots only.
    pub tls: super::ClientTls,
    /// Speak HTTP/2 from the first byte (prior knowledge), also over cleartext (h2c): one
    /// connection per subgraph carries every request at once. Every subgraph must then
    /// speak HTTP/2. Without it, `https://` subgraphs still get HTTP/2 when their ALPN
    /// offers it, and `http://` ones HTTP/1.1. Default: false.
    pub http2_prior_knowledge: bool,
}

/// The default of [`HttpTransportConfig::max_response_bytes`] and of the client response cap.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

impl Default for HttpTransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 32,
            max_in_flight: 100,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            tls: super::ClientTls::default(),
            http2_prior_knowledge: false,
        }
    }
}

/// Reaches one subgraph over HTTP.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    url: reqwest::Url,
    slots: Arc<Semaphore>,
    request_timeout: Duration,
    max_response_bytes: usize,
}

impl HttpTransport {
    pub fn new(
        url: impl Into<String>,
        config: &HttpTransportConfig,
    ) -> Result<Self, TransportError> {
        Self::with_client(Self::client(config)?, &url.into(), config)
    }

    /// Shares `client` (and so its connection pool) with other transports; the in-flight
    /// limit is this transport's own. The URL is parsed once, here, not per request.
    pub fn with_client(
        client: reqwest::Client,
        url: &str,
        config: &HttpTransportConfig,
    ) -> Result<Self, TransportError> {
        let url = reqwest::Url::parse(url).map_err(|error| {
            TransportError::Other(format!("the subgraph URL {url:?} is not valid: {error}"))
        })?;
        Ok(Self {
            client,
            url,
            slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            request_timeout: config.request_timeout,
            max_response_bytes: config.max_response_bytes,
        })
    }

    pub fn client(config: &HttpTransportConfig) -> Result<reqwest::Client, TransportError> {
        let builder = config
            .tls
            .apply(reqwest::Client::builder())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .tcp_nodelay(true);
        let builder = if config.http2_prior_knowledge {
            builder.http2_prior_knowledge()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|error| TransportError::Other(error.to_string()))
    }
}

#[async_trait]
impl SubgraphTransport for HttpTransport {
    async fn execute(&self, request: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
        let _slot = tokio::time::timeout(self.request_timeout, self.slots.acquire())
            .await
            .map_err(|_| TransportError::Timeout)?
            .map_err(|error| TransportError::Other(error.to_string()))?;
        let response = self
            .client
            .post(self.url.clone())
            .headers(request.headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                ACCEPT,
                HeaderValue::from_static("application/graphql-response+json, application/json"),
            )
            .json(&request.body())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        let cache_control = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let headers = response.headers().clone();
        let body = match read_capped(response, self.max_response_bytes).await {
            // sonic-rs reads the bytes with SIMD into the same `Value` tree the executor
            // merges; it costs fewer instructions than serde_json's reader (bench/README.md).
            Ok(bytes) => sonic_rs::from_slice::<Value>(&bytes)
                .map_err(|error| TransportError::InvalidResponse(error.to_string())),
            Err(error) => Err(error),
        };
        match body {
            // GraphQL-over-HTTP: a 4xx/5xx may still carry a well-formed GraphQL response.
            Ok(body) => match SubgraphResponse::from_json(body) {
                Ok(mut parsed) if status.is_success() || !parsed.errors.is_empty() => {
                    parsed.cache_control = cache_control;
                    parsed.headers = headers;
                    Ok(parsed)
                }
                Ok(_) => Err(TransportError::Status {
                    status: status.as_u16(),
                }),
                Err(error) if status.is_success() => Err(error),
                Err(_) => Err(TransportError::Status {
                    status: status.as_u16(),
                }),
            },
            Err(error @ TransportError::ResponseTooLarge { .. }) => Err(error),
            Err(_) if !status.is_success() => Err(TransportError::Status {
                status: status.as_u16(),
            }),
            Err(error) => Err(error),
        }
    }
}

/// The body, read chunk by chunk with a running total: an answer longer than `limit` is
/// abandoned as soon as that is known (from `Content-Length`, or once the total passes it),
/// never buffered whole first.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, TransportError> {
    let declared = response
        .content_length()
        .map(|length| usize::try_from(length).unwrap_or(usize::MAX));
    if declared.is_some_and(|length| length > limit) {
        return Err(TransportError::ResponseTooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        if error.is_timeout() {
            TransportError::Timeout
        } else {
            TransportError::InvalidResponse(error.to_string())
        }
    })? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(TransportError::ResponseTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn classify(error: reqwest::Error) -> TransportError {
    if error.is_timeout() {
        TransportError::Timeout
    } else if error.is_connect() {
        TransportError::Connect(error.to_string())
    } else {
        TransportError::Other(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Json;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::routing::post;
    use serde_json::{Map, Value, json};

    use super::*;

    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}")
    }

    fn request(query: &str) -> SubgraphRequest {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer t0ken".parse().unwrap());
        SubgraphRequest {
            subgraph_name: "users".into(),
            query: query.into(),
            kind: crate::graphql::OperationKind::Query,
            entity_calls: Default::default(),
            operation_name: None,
            variables: Map::new(),
            headers,
            extensions: Map::new(),
            context: None,
        }
    }

    fn config(request_timeout: Duration) -> HttpTransportConfig {
        HttpTransportConfig {
            request_timeout,
            ..HttpTransportConfig::default()
        }
    }

    #[tokio::test]
    async fn a_post_carries_the_forwarded_headers_and_returns_data_errors_and_cache_control() {
        let router = axum::Router::new().route(
            "/graphql",
            post(|headers: HeaderMap, Json(body): Json<Value>| async move {
                let auth = headers[header::AUTHORIZATION].to_str().unwrap().to_string();
                (
                    [(header::CACHE_CONTROL, "max-age=60")],
                    Json(json!({"data": {"auth": auth, "query": body["query"]},
                                "errors": [{"message": "partial"}]})),
                )
            }),
        );
        let url = format!("{}/graphql", serve(router).await);
        let transport = HttpTransport::new(url, &config(Duration::from_secs(5))).unwrap();

        let response = transport.execute(request("{me{id}}")).await.unwrap();

        assert_eq!(
            response,
            SubgraphResponse {
                data: Some(json!({"auth": "Bearer t0ken", "query": "{me{id}}"})),
                errors: vec![json!({"message": "partial"})],
                cache_control: Some("max-age=60".into()),
                headers: response.headers.clone(),
            }
        );
        assert_eq!(response.headers[header::CACHE_CONTROL], "max-age=60");
    }

    #[tokio::test]
    async fn a_slow_subgraph_times_out() {
        let router = axum::Router::new().route(
            "/graphql",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Json(json!({"data": {}}))
            }),
        );
        let url = format!("{}/graphql", serve(router).await);
        let transport = HttpTransport::new(url, &config(Duration::from_millis(100))).unwrap();

        let error = transport.execute(request("{me{id}}")).await.unwrap_err();

        assert!(matches!(error, TransportError::Timeout), "{error}");
    }

    #[tokio::test]
    async fn an_answer_past_the_byte_limit_is_abandoned_declared_or_endless() {
        let router = axum::Router::new()
            .route(
                "/declared",
                post(|| async { Json(json!({"data": {"big": "x".repeat(4096)}})) }),
            )
            .route(
                "/endless",
                post(|| async {
                    let chunk = axum::body::Bytes::from(vec![b'x'; 1024]);
                    let endless = futures::stream::repeat_with(move || {
                        Ok::<_, std::io::Error>(chunk.clone())
                    });
                    axum::body::Body::from_stream(endless)
                }),
            );
        let base = serve(router).await;
        let config = HttpTransportConfig {
            max_response_bytes: 2048,
            ..config(Duration::from_secs(5))
        };
        for path in ["/declared", "/endless"] {
            let transport = HttpTransport::new(format!("{base}{path}"), &config).unwrap();

            let error = transport.execute(request("{big}")).await.unwrap_err();

            assert!(
                matches!(error, TransportError::ResponseTooLarge { limit: 2048 }),
                "{path}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn a_non_graphql_error_status_is_a_transport_error() {
        let router = axum::Router::new().route(
            "/graphql",
            post(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
        );
        let url = format!("{}/graphql", serve(router).await);
        let transport = HttpTransport::new(url, &config(Duration::from_secs(5))).unwrap();

        let error = transport.execute(request("{me{id}}")).await.unwrap_err();

        assert!(
            matches!(error, TransportError::Status { status: 502 }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn no_more_than_max_in_flight_requests_reach_a_subgraph_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (n, m) = (now.clone(), most.clone());
        let router = axum::Router::new().route(
            "/graphql",
            post(move || {
                let (n, m) = (n.clone(), m.clone());
                async move {
                    let running = n.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(running, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    n.fetch_sub(1, Ordering::SeqCst);
                    Json(json!({"data": {}}))
                }
            }),
        );
        let url = format!("{}/graphql", serve(router).await);
        let config = HttpTransportConfig {
            max_in_flight: 2,
            ..config(Duration::from_secs(5))
        };
        let transport = Arc::new(HttpTransport::new(url, &config).unwrap());

        let requests = (0..8).map(|_| {
            let transport = transport.clone();
            async move { transport.execute(request("{me{id}}")).await }
        });
        let results = futures::future::join_all(requests).await;

        assert!(results.iter().all(Result::is_ok));
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "the rest waited at the gateway"
        );
    }
}
