//! W3C trace context across hops: gRPC metadata on calls (CLI → gateway,
//! agent → gateway, replica → replica) and a `traceparent` string inside
//! messages that travel over long-lived streams (the agent's control stream,
//! the Redis relay), so one session is one trace.
//!
//! Without a tracing pipeline every function here is a cheap no-op: spans
//! have no OpenTelemetry context, nothing is injected, parents are ignored.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{AsciiMetadataValue, MetadataKey, MetadataMap};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const TRACEPARENT: &str = "traceparent";

/// The longest `traceparent` accepted from a message: version 00 is 55
/// characters; later versions may append fields.
const MAX_TRACEPARENT: usize = 256;

/// The `traceparent` of `span` (empty when it is not recorded).
pub fn traceparent_of(span: &Span) -> String {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT).unwrap_or_default()
}

/// Makes the span a child of the one `traceparent` names; a malformed or
/// empty value leaves it a root (trace context is advisory, never a reason
/// to refuse a session).
pub fn set_parent_from_traceparent(span: &Span, traceparent: &str) {
    if traceparent.is_empty() || traceparent.len() > MAX_TRACEPARENT {
        return;
    }
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

/// Adds `span`'s context to outgoing call metadata.
pub fn inject_metadata(span: &Span, metadata: &mut MetadataMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut MetadataInjector(metadata));
}

/// Makes the span a child of the caller's span named in call metadata.
pub fn set_parent_from_metadata(span: &Span, metadata: &MetadataMap) {
    if metadata.get(TRACEPARENT).is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&MetadataExtractor(metadata));
    let _ = span.set_parent(parent);
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            AsciiMetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                tonic::metadata::KeyRef::Ascii(key) => Some(key.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_pipeline_nothing_is_injected() {
        let span = tracing::info_span!("session");
        assert_eq!(traceparent_of(&span), "");
        let mut metadata = MetadataMap::new();
        inject_metadata(&span, &mut metadata);
        assert!(metadata.is_empty());
        // Malformed parents are ignored rather than refused.
        set_parent_from_traceparent(&span, "not-a-traceparent");
        set_parent_from_traceparent(&span, &"0".repeat(10_000));
    }
}
