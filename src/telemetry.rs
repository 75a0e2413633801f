//! Logging: human-readable lines on stderr, filtered by `RUST_LOG` (default `info,sqlx=warn`), or
//! JSON lines when `GANTRY_LOG_FORMAT=json`. Colour only when stderr is a terminal, so a log
//! file or a container log holds plain text.
//!
//! Traces: with the `otel` cargo feature and an OTLP endpoint (`--otlp-endpoint`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), the same spans are exported over OTLP/HTTP, and the W3C
//! trace context joins them across the gateway and its subgraphs (see
//! [`gantry_kit::server::trace_context`]).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The log filter variable (tracing's own).
pub const LOG_FILTER_ENV: &str = "RUST_LOG";
/// `json` for JSON log lines; anything else (or nothing) for text.
pub const LOG_FORMAT_ENV: &str = "GANTRY_LOG_FORMAT";

/// Whether log lines are JSON.
pub fn json_logs() -> bool {
    std::env::var(LOG_FORMAT_ENV).is_ok_and(|f| f.eq_ignore_ascii_case("json"))
}

/// What must outlive the process's work: the trace exporter, flushed when dropped.
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    traces: Option<otel::Traces>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(traces) = self.traces.take() {
            traces.shutdown();
        }
    }
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Sets up logging, and trace export to `otlp_endpoint` when given (and built with `otel`),
/// naming this process `service` in its traces.
pub fn init(otlp_endpoint: Option<&str>, service: &str) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs: BoxedLayer = if json_logs() {
        Box::new(logs.json())
    } else {
        Box::new(logs)
    };
    let (telemetry, traces) = traces(otlp_endpoint, service);
    let layers: Vec<BoxedLayer> = std::iter::once(logs).chain(traces).collect();
    let result = tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .try_init();
    if let Err(err) = result {
        eprintln!("logging was already set up: {err}");
    }
    telemetry
}

/// The trace exporter to `otlp_endpoint` and its layer, when given.
#[cfg(feature = "otel")]
fn traces(otlp_endpoint: Option<&str>, service: &str) -> (Telemetry, Option<BoxedLayer>) {
    let Some(endpoint) = otlp_endpoint else {
        return (Telemetry::default(), None);
    };
    match otel::Traces::new(endpoint, service) {
        Ok(traces) => {
            let layer = traces.layer();
            let telemetry = Telemetry {
                traces: Some(traces),
            };
            (telemetry, Some(layer))
        }
        Err(err) => {
            eprintln!("traces are not exported: {err}");
            (Telemetry::default(), None)
        }
    }
}

/// Without the `otel` feature there is no exporter: an endpoint is refused with a word.
#[cfg(not(feature = "otel"))]
fn traces(otlp_endpoint: Option<&str>, service: &str) -> (Telemetry, Option<BoxedLayer>) {
    if otlp_endpoint.is_some() {
        eprintln!(
            "traces are not exported: this gantry was built without the `otel` feature \
             (cargo build --features otel); ignoring the OTLP endpoint for {service}"
        );
    }
    (Telemetry::default(), None)
}

#[cfg(feature = "otel")]
mod otel {
    //! OTLP/HTTP trace export and W3C trace-context propagation.

    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::BoxedLayer;

    /// `http/json` for OTLP/JSON; OTLP/protobuf otherwise (the specification's default).
    const PROTOCOL_ENV: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

    #[derive(Debug)]
    pub struct Traces {
        provider: SdkTracerProvider,
    }

    impl Traces {
        /// An exporter to `endpoint` (the collector's base URL: spans go to
        /// `{endpoint}/v1/traces`), batching spans off the request path.
        pub fn new(endpoint: &str, service: &str) -> Result<Self, String> {
            let protocol = match std::env::var(PROTOCOL_ENV).as_deref() {
                Ok("http/json") => Protocol::HttpJson,
                _ => Protocol::HttpBinary,
            };
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()
                .map_err(|err| err.to_string())?;
            let resource = if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
                Resource::builder().build()
            } else {
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build()
            };
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            gantry_kit::server::trace_context::install(Box::new(W3cPropagation));
            Ok(Self { provider })
        }

        pub fn layer(&self) -> BoxedLayer {
            Box::new(tracing_opentelemetry::layer().with_tracer(self.provider.tracer("gantry")))
        }

        /// Exports the spans still buffered.
        pub fn shutdown(self) {
            if let Err(err) = self.provider.shutdown() {
                eprintln!("exporting the last spans failed: {err}");
            }
        }
    }

    /// `traceparent`/`tracestate` in and out of `tracing` spans.
    struct W3cPropagation;

    struct Headers<'a>(&'a HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|value| value.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(HeaderName::as_str).collect()
        }
    }

    struct HeadersMut<'a>(&'a mut HeaderMap);

    impl Injector for HeadersMut<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(key.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }

    impl gantry_kit::server::trace_context::Propagation for W3cPropagation {
        fn adopt(&self, span: &tracing::Span, headers: &HeaderMap) {
            let parent = TraceContextPropagator::new().extract(&Headers(headers));
            let _ = span.set_parent(parent);
        }

        fn inject(&self, span: &tracing::Span, headers: &mut HeaderMap) {
            TraceContextPropagator::new().inject_context(&span.context(), &mut HeadersMut(headers));
        }
    }
}
