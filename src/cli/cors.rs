//! The CORS flags of every command that serves the gateway; their defaults are
//! [`CorsSettings`]'s.

use std::time::Duration;

use axum::http::{HeaderName, Method};
use clap::{ArgAction, Args};
use gantry_gateway::cors::{CorsSettings, OriginPattern};

use super::{heading, values};

/// Which web origins may call the gateway from a browser.
#[derive(Debug, Args, Clone, Default)]
pub struct CorsArgs {
    /// Origins whose pages may call the gateway, comma-separated: exact
    /// (`https://app.example.com`), every subdomain (`https://*.example.com`), or `*` for
    /// any (not with credentials). Default: none, so browsers keep other origins out.
    #[arg(long, env = "GANTRY_CORS_ALLOW_ORIGINS", value_delimiter = ',', help_heading = heading::CORS)]
    pub cors_allow_origins: Vec<OriginPattern>,
    /// Methods allowed cross-origin, comma-separated. Default: GET,POST.
    #[arg(long, env = "GANTRY_CORS_ALLOW_METHODS", value_delimiter = ',', value_parser = method, help_heading = heading::CORS)]
    pub cors_allow_methods: Option<Vec<Method>>,
    /// Request headers allowed cross-origin, comma-separated. Default: whichever headers
    /// the preflight asks for.
    #[arg(long, env = "GANTRY_CORS_ALLOW_HEADERS", value_delimiter = ',', help_heading = heading::CORS)]
    pub cors_allow_headers: Vec<HeaderName>,
    /// Response headers a page's script may read, comma-separated. Default: none beyond
    /// the CORS-safelisted ones.
    #[arg(long, env = "GANTRY_CORS_EXPOSE_HEADERS", value_delimiter = ',', help_heading = heading::CORS)]
    pub cors_expose_headers: Vec<HeaderName>,
    /// Let pages send cookies and read the answer. Default: false.
    #[arg(long, env = "GANTRY_CORS_ALLOW_CREDENTIALS", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::CORS)]
    pub cors_allow_credentials: Option<bool>,
    /// How long a browser may reuse a preflight's answer (a bare number is seconds).
    /// Default: the browser's own.
    #[arg(long, env = "GANTRY_CORS_MAX_AGE", value_parser = values::seconds, help_heading = heading::CORS)]
    pub cors_max_age: Option<u64>,
}

/// HTTP methods are case-sensitive; the flag takes `get` as well as `GET`.
fn method(text: &str) -> Result<Method, axum::http::method::InvalidMethod> {
    text.trim().to_ascii_uppercase().parse()
}

impl CorsArgs {
    /// The policy; what is not given keeps [`CorsSettings`]'s default.
    pub fn settings(&self) -> CorsSettings {
        let defaults = CorsSettings::default();
        CorsSettings {
            allow_origins: self.cors_allow_origins.clone(),
            allow_methods: self
                .cors_allow_methods
                .clone()
                .unwrap_or(defaults.allow_methods),
            allow_headers: self.cors_allow_headers.clone(),
            expose_headers: self.cors_expose_headers.clone(),
            allow_credentials: self
                .cors_allow_credentials
                .unwrap_or(defaults.allow_credentials),
            max_age: self
                .cors_max_age
                .map(Duration::from_secs)
                .or(defaults.max_age),
        }
    }
}
