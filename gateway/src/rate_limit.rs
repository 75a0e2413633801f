//! Rate limits on client operations, checked after authentication and before anything
//! runs (cache hits included): per signed-in user, else per client address; on requests and
//! on estimated cost per window; and, when configured, per client name
//! (`apollographql-client-name`) across every user of that client. A request over any of
//! them is answered `429` with `Retry-After` and `RATE_LIMITED`.
//!
//! The limits are generic cell rate limits ([`gantry_kit::rate_limit`]), kept in Redis when
//! the gateway has it, so every replica shares each client's allowance.
//!
//! Off by default: the client address is only the client's when the operator has named the
//! proxies in front (`--trusted-proxies`); before that, every client behind a load balancer
//! shares its address, and any per-address limit would throttle them all together.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use gantry_kit::rate_limit::{Rate, RateLimiter, Verdict};
use gantry_kit::shared::SharedState;
use serde_json::Value;
use uuid::Uuid;

use crate::graphql::{GraphQLError, GraphQLResponse};

/// The header Apollo clients name themselves with.
pub(crate) const CLIENT_NAME_HEADER: &str = "apollographql-client-name";

/// The code of a request refused by a rate limit.
pub const RATE_LIMITED: &str = "RATE_LIMITED";

/// Which limits apply; each `None` is off. Every default documented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Operations per window per user (else client address). Default: off.
    pub requests: Option<u32>,
    /// Estimated cost per window per user (else client address). Default: off.
    pub cost: Option<u32>,
    /// Operations per window per client name, all users of that client together. Default:
    /// off.
    pub client_name_requests: Option<u32>,
    /// The window every limit counts over; a client may use its whole allowance at once.
    /// Default: 60 s.
    pub window: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            requests: None,
            cost: None,
            client_name_requests: None,
            window: Duration::from_secs(60),
        }
    }
}

/// The gateway's rate limits.
#[derive(Debug, Default)]
pub struct RateLimits {
    requests: Option<RateLimiter>,
    cost: Option<RateLimiter>,
    client_names: Option<RateLimiter>,
}

/// Who is asking, as the limits count them.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub user: Option<Uuid>,
    pub address: Option<IpAddr>,
    pub headers: &'a HeaderMap,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings, shared: Option<SharedState>) -> Self {
        let limiter = |name, count: Option<u32>| {
            count.map(|count| {
                RateLimiter::new(name, Rate::per(count, settings.window), shared.clone())
            })
        };
        Self {
            requests: limiter("requests", settings.requests),
            cost: limiter("cost", settings.cost),
            client_names: limiter("client-name", settings.client_name_requests),
        }
    }

    /// Whether a cost limit is on, so that the request's estimate is worth computing.
    pub fn charges_cost(&self) -> bool {
        self.cost.is_some()
    }

    /// Charges one request and `cost` to the requester; the `429` to send when over a
    /// limit.
    pub async fn admit(
        &self,
        requester: Requester<'_>,
        cost: u32,
    ) -> Result<(), Box<GraphQLResponse>> {
        if self.requests.is_none() && self.cost.is_none() && self.client_names.is_none() {
            return Ok(());
        }
        let who = match (requester.user, requester.address) {
            (Some(user), _) => format!("user:{user}"),
            (None, Some(address)) => format!("address:{address}"),
            (None, None) => "unknown".to_owned(),
        };
        if let Some(limiter) = &self.requests {
            refuse(limiter.check(&who, 1).await)?;
        }
        if let Some(limiter) = &self.cost {
            refuse(limiter.check(&who, cost).await)?;
        }
        if let Some(limiter) = &self.client_names
            && let Some(name) = requester
                .headers
                .get(CLIENT_NAME_HEADER)
                .and_then(|value| value.to_str().ok())
        {
            refuse(limiter.check(name, 1).await)?;
        }
        Ok(())
    }
}

fn refuse(verdict: Verdict) -> Result<(), Box<GraphQLResponse>> {
    let Some(secs) = verdict.retry_after_secs() else {
        return Ok(());
    };
    let mut response = GraphQLResponse::request_errors(vec![
        GraphQLError::with_code(
            format!("Too many requests; retry in {secs} s"),
            RATE_LIMITED,
        )
        .extension("retryAfter", Value::from(secs)),
    ])
    .with_status(StatusCode::TOO_MANY_REQUESTS);
    response
        .extra_headers
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    Err(Box::new(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_are_counted_apart_from_their_address_and_names_across_users() {
        let limits = RateLimits::new(
            &RateLimitSettings {
                requests: Some(2),
                client_name_requests: Some(3),
                ..RateLimitSettings::default()
            },
            None,
        );
        let mut headers = HeaderMap::new();
        headers.insert(CLIENT_NAME_HEADER, HeaderValue::from_static("ios"));
        let address = Some(IpAddr::from([10, 0, 0, 1]));
        let anonymous = Requester {
            user: None,
            address,
            headers: &headers,
        };
        let signed_in = Requester {
            user: Some(Uuid::nil()),
            ..anonymous
        };
        assert!(limits.admit(anonymous, 1).await.is_ok());
        assert!(limits.admit(anonymous, 1).await.is_ok());
        let refused = limits.admit(anonymous, 1).await.expect_err("limited");
        assert_eq!(
            refused.http_status_hint,
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        assert!(refused.extra_headers.contains_key(RETRY_AFTER));
        assert_eq!(
            refused.to_json()["errors"][0]["extensions"]["code"],
            RATE_LIMITED
        );
        // The third `ios` request was the refused one, not counted against the name.
        assert!(limits.admit(signed_in, 1).await.is_ok());
        assert!(limits.admit(signed_in, 1).await.is_err(), "`ios` is over");
    }
}
