//! Logs and traces for every Postern program: one tracing subscriber with a
//! formatted log layer (text or JSON, a span per session) and, when an OTLP
//! endpoint is configured, an OpenTelemetry layer exporting spans over gRPC.
#![forbid(unsafe_code)]

pub mod config;
mod export;
pub mod propagate;

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use postern_tunnel::env::{ConfigError, Env};
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use config::{SamplerChoice, TracingConfig};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("trace export needs a tokio runtime (call init inside it)")]
    NoRuntime,
    #[error("cannot read the collector CA certificate {}: {source}", path.display())]
    CaCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone)]
pub struct Logging {
    /// The variable with filter directives (`RUST_LOG` for the services,
    /// `POSTERN_LOG` for the CLI).
    pub filter_var: &'static str,
    /// Directives when that variable is unset.
    pub default_filter: &'static str,
    /// One JSON object per line, with the current span (the session) in each.
    pub json: bool,
}

/// `POSTERN_LOG_FORMAT`: `json` or `text` (`default_json` when unset).
pub fn json_logs(env: &Env, default_json: bool) -> Result<bool, ConfigError> {
    match env.raw("POSTERN_LOG_FORMAT").map(str::trim) {
        None => Ok(default_json),
        Some("json") => Ok(true),
        Some("text") => Ok(false),
        Some(other) => Err(ConfigError {
            var: "POSTERN_LOG_FORMAT".into(),
            message: format!("invalid value {other:?}: expected json or text"),
        }),
    }
}

/// Who emits the spans: the OpenTelemetry resource.
#[derive(Debug, Clone)]
pub struct Service {
    /// The default `service.name` (`OTEL_SERVICE_NAME` wins).
    pub name: &'static str,
    pub version: &'static str,
    /// `service.instance.id`, e.g. the gateway's replica id.
    pub instance: Option<String>,
}

/// Spans of Postern's own crates are exported; dependencies' are not (they
/// would swamp a session's trace with HTTP/2 and driver internals).
const TRACED_CRATES: &[&str] = &[
    "postern",
    "postern_agent",
    "postern_gateway",
    "postern_l7_pg",
    "postern_l7_sql",
    "postern_state",
    "postern_telemetry",
    "postern_tunnel",
];

/// Keeps the trace pipeline; [`Telemetry::shutdown`] flushes what is queued.
#[must_use = "shut it down before exit so queued spans are sent"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn tracing(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued, waiting at most a few seconds for a
    /// collector that does not answer.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The provider blocks while its exporter runs on this runtime.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(Duration::from_secs(5), flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "trace export did not finish"),
            Ok(Err(e)) => tracing::warn!(error = %e, "trace export did not finish"),
            Err(_) => tracing::warn!("trace export did not finish within 5 s"),
        }
    }
}

/// Installs the process-wide subscriber: logs per `logging`, spans exported
/// per `tracing` (read with [`TracingConfig::from_env`]). Call inside the
/// tokio runtime when tracing is on.
pub fn init(
    env: &Env,
    logging: &Logging,
    service: &Service,
    tracing: Option<&TracingConfig>,
) -> Result<Telemetry, TelemetryError> {
    let filter = match env.raw(logging.filter_var) {
        Some(directives) => EnvFilter::try_new(directives).map_err(|e| ConfigError {
            var: logging.filter_var.to_owned(),
            message: format!("invalid filter {directives:?}: {e}"),
        })?,
        None => EnvFilter::new(logging.default_filter),
    };
    let log_layer = if logging.json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    }
    .with_filter(filter);
    let provider = tracing
        .map(|config| tracer_provider(config, service))
        .transpose()?;
    let trace_layer = provider.as_ref().map(|provider| {
        let targets = TRACED_CRATES.iter().fold(Targets::new(), |targets, name| {
            targets.with_target(*name, Level::INFO)
        });
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("postern"))
            .with_filter(targets)
    });
    tracing_subscriber::registry()
        .with(log_layer)
        .with(trace_layer)
        .try_init()?;
    Ok(Telemetry { provider })
}

fn tracer_provider(
    config: &TracingConfig,
    service: &Service,
) -> Result<SdkTracerProvider, TelemetryError> {
    let mut attributes: Vec<KeyValue> = vec![KeyValue::new("service.version", service.version)];
    if let Some(instance) = &service.instance {
        attributes.push(KeyValue::new("service.instance.id", instance.clone()));
    }
    attributes.extend(
        config
            .resource
            .iter()
            .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
    );
    // Only what was configured and validated here: the SDK's own detectors
    // would read the environment again and fall back silently.
    let resource = Resource::builder_empty()
        .with_attributes(attributes)
        .with_service_name(config.service_name.clone())
        .build();
    let exporter = export::otlp_exporter(config)?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler(&config.sampler))
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .build())
}

fn sampler(choice: &SamplerChoice) -> Sampler {
    match choice {
        SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
        SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
        SamplerChoice::Ratio(ratio) => Sampler::TraceIdRatioBased(*ratio),
        SamplerChoice::ParentBased(root) => Sampler::ParentBased(Box::new(sampler(root))),
    }
}
