//! Persisted queries: the step of the request path that turns what the client named (an
//! APQ hash, a manifest `documentId`/`doc_id`, or free-form text) into the query text to
//! run, and enforces the safelist.
//!
//! - APQ (Apollo's protocol): a hash alone runs the registered text or answers
//!   `PersistedQueryNotFound` (HTTP 200, so the client resends with the text); hash plus
//!   text is verified, then registered.
//! - A manifest (`--manifest FILE`): operations by id, reloaded when the file changes.
//! - Safelist mode: only manifest operations run; APQ registration is off.
//! - Registration (`--apq-registration`) can be turned off on its own, keeping manifests
//!   and texts already registered: an unknown hash then answers
//!   `PersistedQueryNotSupported`, which tells Apollo clients to send texts from then on.
//! - Only texts within a size cap that parse and validate are registered, at most so many
//!   per client per hour; a text refused registration still runs, unregistered.
//!
//! # Layout
//!
//! - [`apq`]: the [`apq::ApqStore`] trait, in-process and Redis backends.
//! - [`manifest`]: the manifest format, loading and reloading.
//! - [`generate`]: building a manifest from `.graphql` operation files.

pub mod apq;
pub mod generate;
pub mod manifest;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, StatusCode};
use sha2::{Digest, Sha256};

use crate::graphql::{GraphQLRequest, GraphQLResponse};
use crate::persisted::apq::{ApqStore, LocalApqStore, RedisApqStore};
use crate::persisted::manifest::{ManifestError, ManifestSource};
use crate::shared::SharedState;

use crate::rate_limit::CLIENT_NAME_HEADER;
use gantry_kit::rate_limit::{Rate, RateLimiter, Verdict};

/// Lowercase hex SHA-256 of `text`: the APQ hash and the manifest id of a body.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A header that lets internal tools send free-form text in safelist mode.
#[derive(Clone)]
pub struct BypassHeader {
    pub name: HeaderName,
    value_digest: [u8; 32],
}

impl std::fmt::Debug for BypassHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BypassHeader")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for BypassHeader {
    type Err = String;

    /// `NAME:VALUE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = s
            .split_once(':')
            .ok_or("expected NAME:VALUE, e.g. x-internal-tool:some-secret")?;
        let name = HeaderName::try_from(name.trim())
            .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
        let value = value.trim();
        if value.is_empty() {
            return Err("the bypass header needs a value".into());
        }
        Ok(Self {
            name,
            value_digest: Sha256::digest(value.as_bytes()).into(),
        })
    }
}

impl BypassHeader {
    /// Compares digests in constant time, so timing tells nothing about the value.
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers.get(&self.name).is_some_and(|value| {
            let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
            digest
                .iter()
                .zip(self.value_digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        })
    }
}

/// How persisted queries behave; every default documented.
#[derive(Debug, Clone)]
pub struct PersistedSettings {
    /// The manifest file. Default: none.
    pub manifest: Option<PathBuf>,
    /// Only manifest operations run. Requires a manifest. Default: false.
    pub safelist: bool,
    /// Lets requests bearing it send free-form text in safelist mode. Default: none.
    pub bypass_header: Option<BypassHeader>,
    /// Total bytes of APQ texts kept in process without Redis. Default 32 MiB.
    pub local_capacity_bytes: u64,
    /// How long an APQ registration lives in Redis after its last use. Default 30 days.
    pub redis_ttl: Duration,
    /// How often the manifest file is checked for changes. Default 1 s.
    pub manifest_poll: Duration,
    /// Register APQ texts. Off: manifests and texts already registered still work, an
    /// unknown hash answers `PersistedQueryNotSupported`. Default: true.
    pub registration: bool,
    /// The longest text registered, in bytes. Default: 64 KiB.
    pub max_registered_bytes: usize,
    /// Texts one client (address) may register per hour. Default: 100.
    pub registrations_per_hour: u32,
}

impl Default for PersistedSettings {
    fn default() -> Self {
        Self {
            manifest: None,
            safelist: false,
            bypass_header: None,
            local_capacity_bytes: 32 * 1024 * 1024,
            redis_ttl: Duration::from_secs(30 * 24 * 3600),
            manifest_poll: Duration::from_secs(1),
            registration: true,
            max_registered_bytes: 64 * 1024,
            registrations_per_hour: 100,
        }
    }
}

/// Why persisted queries could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PersistedError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("--safelist needs a manifest (--manifest FILE)")]
    SafelistWithoutManifest,
}

#[derive(Debug, Default)]
struct Counters {
    apq_hits: AtomicU64,
    apq_misses: AtomicU64,
    apq_registrations: AtomicU64,
    manifest_hits: AtomicU64,
    hash_mismatches: AtomicU64,
    rejections: AtomicU64,
    refused_registrations: AtomicU64,
}

/// What a resolution leaves to do once the operation is known to run: count its hit,
/// register its APQ text. [`PersistedQueries::peek`] returns it and
/// [`PersistedQueries::settle`] does it, so a GET mutation refused after the look ahead
/// is neither counted nor registered.
#[derive(Debug)]
#[must_use = "settle it once the operation runs"]
pub struct Resolved(Effect);

#[derive(Debug)]
enum Effect {
    None,
    ManifestHit,
    ApqHit,
    /// The lower-case hash the request's text is registered under.
    Register(String),
}

/// The persisted-query step: APQ store, manifest, safelist, counters.
#[derive(Debug)]
pub struct PersistedQueries {
    apq: Box<dyn ApqStore>,
    manifest: Option<Arc<ManifestSource>>,
    safelist: bool,
    bypass_header: Option<BypassHeader>,
    counters: Counters,
    registration: bool,
    max_registered_bytes: usize,
    registrations: RateLimiter,
}

impl PersistedQueries {
    /// APQ in Redis when `shared` is given, in process otherwise; the manifest is loaded
    /// now (a bad file is an error) and watched from then on.
    pub fn new(
        settings: PersistedSettings,
        shared: Option<SharedState>,
    ) -> Result<Self, PersistedError> {
        if settings.safelist && settings.manifest.is_none() {
            return Err(PersistedError::SafelistWithoutManifest);
        }
        let manifest = match &settings.manifest {
            Some(path) => {
                let source = Arc::new(ManifestSource::open(path)?);
                source.watch(settings.manifest_poll);
                Some(source)
            }
            None => None,
        };
        Ok(Self {
            manifest,
            safelist: settings.safelist,
            ..Self::with_settings(settings, shared)
        })
    }

    fn with_settings(settings: PersistedSettings, shared: Option<SharedState>) -> Self {
        let registrations = RateLimiter::new(
            "apq-registrations",
            Rate::per(settings.registrations_per_hour, Duration::from_secs(3600)),
            shared.clone(),
        );
        let apq: Box<dyn ApqStore> = match shared {
            Some(shared) => Box::new(RedisApqStore::new(shared, settings.redis_ttl)),
            None => Box::new(LocalApqStore::new(settings.local_capacity_bytes)),
        };
        Self {
            apq,
            manifest: None,
            safelist: false,
            bypass_header: settings.bypass_header,
            counters: Counters::default(),
            registration: settings.registration,
            max_registered_bytes: settings.max_registered_bytes,
            registrations,
        }
    }

    /// APQ only (no manifest, no safelist): what a gateway does when nothing is configured.
    pub fn apq_only(shared: Option<SharedState>) -> Self {
        Self::with_settings(PersistedSettings::default(), shared)
    }

    /// Counters since start, for `/metrics`.
    pub fn metrics(&self) -> Vec<(&'static str, u64)> {
        let c = &self.counters;
        [
            ("persisted_apq_hits", &c.apq_hits),
            ("persisted_apq_misses", &c.apq_misses),
            ("persisted_apq_registrations", &c.apq_registrations),
            ("persisted_manifest_hits", &c.manifest_hits),
            ("persisted_hash_mismatches", &c.hash_mismatches),
            ("persisted_rejections", &c.rejections),
            (
                "persisted_apq_refused_registrations",
                &c.refused_registrations,
            ),
        ]
        .into_iter()
        .map(|(name, counter)| (name, counter.load(Ordering::Relaxed)))
        .collect()
    }

    /// Fills `request.query` with the text to run, or answers the response to send instead;
    /// [`peek`](Self::peek) then [`settle`](Self::settle) in one.
    pub async fn resolve(
        &self,
        request: &mut GraphQLRequest,
        headers: &HeaderMap,
        registrar: &Registrar<'_>,
    ) -> Result<(), GraphQLResponse> {
        let resolved = self.peek(request, headers).await?;
        self.settle(resolved, request, registrar).await;
        Ok(())
    }

    /// Fills `request.query` with the text to run, or answers the response to send instead,
    /// without counting a hit or registering a text: that waits for [`settle`](Self::settle).
    pub async fn peek(
        &self,
        request: &mut GraphQLRequest,
        headers: &HeaderMap,
    ) -> Result<Resolved, GraphQLResponse> {
        let hash = apq_hash(request).map_err(|message| {
            GraphQLResponse::request_error(message, "BAD_REQUEST")
                .with_status(StatusCode::BAD_REQUEST)
        })?;
        let manifest = self.manifest.as_ref().map(|source| source.current());

        if let Some(query) = &request.query {
            if let Some(hash) = &hash
                && !sha256_hex(query).eq_ignore_ascii_case(hash)
            {
                self.counters
                    .hash_mismatches
                    .fetch_add(1, Ordering::Relaxed);
                return Err(GraphQLResponse::request_error(
                    "provided sha does not match query",
                    "PERSISTED_QUERY_HASH_MISMATCH",
                )
                .with_status(StatusCode::BAD_REQUEST));
            }
            let listed = manifest.as_ref().is_some_and(|m| m.contains_body(query));
            if self.safelist && !listed {
                if self
                    .bypass_header
                    .as_ref()
                    .is_some_and(|bypass| bypass.matches(headers))
                {
                    return Ok(Resolved(Effect::None));
                }
                return Err(self.reject(
                    request,
                    headers,
                    "Free-form queries are not allowed: this gateway runs only persisted operations",
                    "QUERY_NOT_IN_SAFELIST",
                    StatusCode::FORBIDDEN,
                ));
            }
            let registers = !listed && !self.safelist && self.registration;
            return Ok(Resolved(match hash.filter(|_| registers) {
                Some(hash) => Effect::Register(hash.to_ascii_lowercase()),
                None => Effect::None,
            }));
        }

        let id = request.document_id.clone().or_else(|| hash.clone());
        let Some(id) = id else {
            return Err(GraphQLResponse::request_error(
                "The \"query\" parameter is missing",
                "BAD_REQUEST",
            )
            .with_status(StatusCode::BAD_REQUEST));
        };
        if let Some(operation) = manifest.as_ref().and_then(|m| m.operation(&id)) {
            request.query = Some(operation.body.clone());
            if request.operation_name.is_none() && !operation.name.is_empty() {
                request.operation_name = Some(operation.name.clone());
            }
            return Ok(Resolved(Effect::ManifestHit));
        }
        if self.safelist || hash.is_none() {
            return Err(self.reject(
                request,
                headers,
                "PersistedQueryNotInList",
                "PERSISTED_QUERY_NOT_IN_LIST",
                StatusCode::NOT_FOUND,
            ));
        }
        match self.apq.get(&id.to_ascii_lowercase()).await {
            Some(query) => {
                request.query = Some(query);
                Ok(Resolved(Effect::ApqHit))
            }
            None if !self.registration => Err(GraphQLResponse::request_error(
                "PersistedQueryNotSupported",
                "PERSISTED_QUERY_NOT_SUPPORTED",
            )
            .with_status(StatusCode::OK)),
            None => {
                self.counters.apq_misses.fetch_add(1, Ordering::Relaxed);
                Err(GraphQLResponse::request_error(
                    "PersistedQueryNotFound",
                    "PERSISTED_QUERY_NOT_FOUND",
                )
                .with_status(StatusCode::OK))
            }
        }
    }

    /// Counts the hit and registers the text of a request [`peek`](Self::peek) resolved,
    /// once it is known to run.
    pub async fn settle(
        &self,
        resolved: Resolved,
        request: &GraphQLRequest,
        registrar: &Registrar<'_>,
    ) {
        match resolved.0 {
            Effect::None => {}
            Effect::ManifestHit => {
                self.counters.manifest_hits.fetch_add(1, Ordering::Relaxed);
            }
            Effect::ApqHit => {
                self.counters.apq_hits.fetch_add(1, Ordering::Relaxed);
            }
            Effect::Register(hash) => {
                if let Some(query) = &request.query {
                    if let Err(why) = self.may_register(query, request, registrar).await {
                        self.counters
                            .refused_registrations
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!(client = registrar.client, why, "APQ text not registered");
                        return;
                    }
                    self.apq.put(&hash, query).await;
                    self.counters
                        .apq_registrations
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Whether this client may register this text now.
    async fn may_register(
        &self,
        query: &str,
        request: &GraphQLRequest,
        registrar: &Registrar<'_>,
    ) -> Result<(), &'static str> {
        if query.len() > self.max_registered_bytes {
            return Err("over the size cap");
        }
        if !(registrar.validates)(query, request.operation_name.as_deref()) {
            return Err("does not parse and validate");
        }
        match self.registrations.check(registrar.client, 1).await {
            Verdict::Allowed => Ok(()),
            Verdict::Limited { .. } => Err("the client registered too many texts lately"),
        }
    }

    fn reject(
        &self,
        request: &GraphQLRequest,
        headers: &HeaderMap,
        message: &str,
        code: &str,
        status: StatusCode,
    ) -> GraphQLResponse {
        self.counters.rejections.fetch_add(1, Ordering::Relaxed);
        let client_name = headers
            .get(CLIENT_NAME_HEADER)
            .and_then(|value| value.to_str().ok());
        tracing::warn!(
            code,
            operation_name = request.operation_name.as_deref(),
            client_name,
            document_id = request.document_id.as_deref(),
            "persisted query rejected"
        );
        GraphQLResponse::request_error(message, code).with_status(status)
    }
}

/// Who registers an APQ text, and how to tell whether it is a valid operation.
pub struct Registrar<'a> {
    /// The client, as registration limits count it (its address).
    pub client: &'a str,
    /// Whether a text (with its operation name) parses and validates against the API
    /// schema.
    pub validates: &'a (dyn Fn(&str, Option<&str>) -> bool + Sync),
}

/// `extensions.persistedQuery.sha256Hash`, when the request carries APQ; `Err` says what
/// is malformed (a hash is 64 hexadecimal digits, so no client-chosen size reaches a key).
fn apq_hash(request: &GraphQLRequest) -> Result<Option<String>, &'static str> {
    let Some(persisted) = request
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("persistedQuery"))
    else {
        return Ok(None);
    };
    if persisted.get("version").and_then(serde_json::Value::as_u64) != Some(1) {
        return Err("Unsupported persisted query version (expected 1)");
    }
    match persisted
        .get("sha256Hash")
        .and_then(serde_json::Value::as_str)
    {
        Some(hash) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(hash.to_owned()))
        }
        _ => Err("extensions.persistedQuery.sha256Hash must be a SHA-256 in hexadecimal"),
    }
}

#[cfg(test)]
mod tests;
