//! Logging, and traces exported over OTLP when asked (`--otlp-endpoint`), for every Strom
//! process (decision 0023).
//!
//! Logs go to standard output as text or JSON, filtered by the environment variable the
//! process names (`STROM_LOG`, in `EnvFilter` syntax). Traces are spans of the
//! [`REQUEST_TARGET`] target: one per Kafka request on a broker and one per controller
//! request on a controller, with their attributes. They are created at `TRACE` level, so
//! the log filter does not show them (unless asked for `trace`) and, without an OTLP
//! endpoint, no layer takes them and they cost next to nothing. With an endpoint, a batch
//! processor on its own thread sends them as OTLP/HTTP JSON to `<endpoint>/v1/traces`.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::Layer;

/// The target of the spans that are exported: Kafka and controller requests.
pub const REQUEST_TARGET: &str = "strom::request";

/// How a process logs and traces.
pub struct Options<'a> {
    /// `service.name` of the exported spans (`strom-broker`, `strom-quorum`).
    pub service: &'a str,
    /// `strom.node.id` of the exported spans.
    pub node_id: Option<String>,
    /// The environment variable with the log filter, and the filter without it.
    pub filter_env: &'a str,
    pub default_filter: &'a str,
    /// Logs as JSON lines rather than text.
    pub json: bool,
    /// The OTLP/HTTP collector (`http://host:4318`, or the full `.../v1/traces` URL). Export
    /// failures are logged as warnings (the SDK's internal logs, target `opentelemetry*`).
    pub otlp_endpoint: Option<&'a str>,
}

/// What to keep until the process ends: [`Telemetry::shutdown`] sends the spans not yet
/// sent.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends what is buffered and stops the exporter (blocks up to a few seconds: call it
    /// off the async workers, e.g. in `spawn_blocking`, or after the runtime).
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                eprintln!("OTLP export: {e}");
            }
        }
    }
}

/// The URL spans are posted to: the endpoint as given if it names `/v1/traces`, else with
/// it appended (as `OTEL_EXPORTER_OTLP_ENDPOINT` is read).
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Installs the process's logging (and span export, with an endpoint). An endpoint that is
/// not an `http://` URL is an error (no TLS client is built in), and nothing is installed.
pub fn init(o: Options<'_>) -> Result<Telemetry, String> {
    let filter =
        EnvFilter::try_from_env(o.filter_env).unwrap_or_else(|_| EnvFilter::new(o.default_filter));
    let fmt = if o.json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_filter(filter).boxed()
    };
    let Some(endpoint) = o.otlp_endpoint else {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(Telemetry { provider: None });
    };
    if !endpoint.starts_with("http://") {
        return Err(format!(
            "--otlp-endpoint '{endpoint}' is not an http:// URL (no TLS client is built in: \
             send to a local collector)"
        ));
    }
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url(endpoint))
        .with_protocol(Protocol::HttpJson)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("--otlp-endpoint: {e}"))?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_secs(1))
                .build(),
        )
        .build();
    let mut resource = Resource::builder().with_service_name(o.service.to_string());
    if let Some(id) = o.node_id {
        resource = resource.with_attribute(KeyValue::new("strom.node.id", id));
    }
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("strom");
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target(REQUEST_TARGET, LevelFilter::TRACE));
    tracing_subscriber::registry().with(fmt).with(spans).init();
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// [`init`], or for a bad setting `error: ...` on standard error and exit code 2, as the
/// binaries answer every bad flag.
pub fn init_or_exit(o: Options<'_>) -> Telemetry {
    init(o).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_go_to_the_traces_path() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
