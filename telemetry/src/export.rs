//! The OTLP/gRPC exporter, run on the program's own tokio runtime.
//!
//! The SDK's batch processor exports from a thread of its own with a plain
//! executor, but tonic's channel needs a tokio reactor: each export is
//! therefore handed to the runtime and awaited from that thread.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::runtime::Handle;
use tonic::metadata::{AsciiMetadataValue, MetadataKey, MetadataMap};
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::TelemetryError;
use crate::config::TracingConfig;

/// Builds the tonic exporter for `config`; must run inside the runtime that
/// will carry its exports.
pub(crate) fn otlp_exporter(
    config: &TracingConfig,
) -> Result<OnRuntime<opentelemetry_otlp::SpanExporter>, TelemetryError> {
    let handle = Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
    let mut metadata = MetadataMap::new();
    for (name, value) in &config.headers {
        // Both were validated with the configuration.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(name.as_bytes()),
            AsciiMetadataValue::try_from(value.expose()),
        ) {
            metadata.insert(key, value);
        }
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .with_metadata(metadata);
    if config.endpoint.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|source| TelemetryError::CaCert {
                path: path.clone(),
                source,
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        builder = builder.with_tls_config(tls);
    }
    let exporter = {
        let _inside = handle.enter();
        builder.build()?
    };
    Ok(OnRuntime {
        inner: Arc::new(exporter),
        handle,
    })
}

/// A span exporter whose exports run as tasks on a tokio runtime.
#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    inner: Arc<E>,
    handle: Handle,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        self.handle
            .spawn(async move { inner.export(batch).await })
            .await
            .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once, while the provider is built and before any export, so
        // nothing else holds the exporter yet.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
