//! The HTTP transport: JSON POST over a pooled keep-alive reqwest client.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use serde_json::Value;

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
}

impl Default for HttpTransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 32,
        }
    }
}

/// Reaches one subgraph over HTTP.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    url: String,
}

impl HttpTransport {
    pub fn new(
        url: impl Into<String>,
        config: &HttpTransportConfig,
    ) -> Result<Self, TransportError> {
        Ok(Self::with_client(Self::client(config)?, url.into()))
    }

    /// Shares `client` (and so its connection pool) with other transports.
    pub fn with_client(client: reqwest::Client, url: String) -> Self {
        Self { client, url }
    }

    pub fn client(config: &HttpTransportConfig) -> Result<reqwest::Client, TransportError> {
        reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .build()
            .map_err(|error| TransportError::Other(error.to_string()))
    }
}

#[async_trait]
impl SubgraphTransport for HttpTransport {
    async fn execute(&self, request: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
        let response = self
            .client
            .post(&self.url)
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
        let body: Result<Value, _> = response.json().await;
        match body {
            // GraphQL-over-HTTP: a 4xx/5xx may still carry a well-formed GraphQL response.
            Ok(body) => match SubgraphResponse::from_json(body) {
                Ok(mut parsed) if status.is_success() || !parsed.errors.is_empty() => {
                    parsed.cache_control = cache_control;
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
            Err(_) if !status.is_success() => Err(TransportError::Status {
                status: status.as_u16(),
            }),
            Err(error) if error.is_timeout() => Err(TransportError::Timeout),
            Err(error) => Err(TransportError::InvalidResponse(error.to_string())),
        }
    }
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
            }
        );
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
}
