//! Settings of the HTTP layer (a section of the gateway's configuration file).

use serde::{Deserialize, Serialize};

use gantry_identity::client::TrustedProxies;

use crate::playground::PlaygroundSettings;

/// How the GraphQL endpoint is served. Every field has a default, so an empty section (or
/// none) is a working configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Path of the GraphQL endpoint. Default: `/graphql`.
    pub path: String,
    /// The largest request body accepted, in bytes; a larger one gets `413`. A batch counts
    /// as one body. Default: 2 MiB (2097152).
    pub max_body_bytes: usize,
    /// The most operations one JSON-array batch may hold; a larger batch gets `400`, and `0`
    /// turns batching off. Default: 10.
    pub max_batch_size: usize,
    /// Compress responses with gzip or brotli when the client accepts them. Default: true.
    pub compression: bool,
    /// The GraphiQL playground (`GET /`, and `GET {path}` from a browser).
    pub playground: PlaygroundSettings,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client (the load balancers in
    /// front). Default: none, the TCP peer is the client.
    pub trusted_proxies: TrustedProxies,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            path: "/graphql".to_string(),
            max_body_bytes: 2 * 1024 * 1024,
            max_batch_size: 10,
            compression: true,
            playground: PlaygroundSettings::default(),
            trusted_proxies: TrustedProxies::none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_is_the_default() {
        let settings: HttpSettings = serde_json::from_str("{}").expect("valid settings");
        assert_eq!(settings, HttpSettings::default());
        assert_eq!(settings.max_body_bytes, 2_097_152);
    }

    #[test]
    fn an_unknown_field_is_rejected() {
        let error = serde_json::from_str::<HttpSettings>(r#"{"max_body_size": 1}"#)
            .expect_err("unknown field");
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    #[test]
    fn a_partial_section_keeps_the_other_defaults() {
        let settings: HttpSettings =
            serde_json::from_str(r#"{"max_batch_size": 0, "playground": {"enabled": false}}"#)
                .expect("valid settings");
        assert_eq!(settings.max_batch_size, 0);
        assert!(!settings.playground.enabled);
        assert_eq!(settings.path, "/graphql");
    }
}
