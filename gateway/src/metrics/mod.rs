//! Prometheus metrics of one replica. Names, labels and their values are
//! documented in docs/metrics.md (a test scrapes a replica and compares).

mod labels;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use labels::{Direction, ErrorKind, SplicePath};
use labels::{
    DirectionLabels, ErrorLabels, OperationLabels, OutcomeLabels, POLICY_CACHE_LOOKUP_RESULTS,
    POLICY_CACHE_SOURCES, PathLabels, RELAY_DIRECTIONS, RELAY_RESET_REASONS, ROUTE_LOOKUP_RESULTS,
    ROUTE_STORE_OPERATIONS, ReasonLabels, ResultLabels, SESSION_OUTCOMES, STATEMENT_OUTCOMES,
    SourceLabels, WEBHOOK_RESULTS, debug_assert_listed,
};

pub struct Metrics {
    registry: Registry,
    pub sessions_open: Gauge,
    sessions_total: Family<OutcomeLabels, Counter>,
    pub bytes_up: Counter,
    pub bytes_down: Counter,
    pub agents_connected: Gauge,
    errors: Family<ErrorLabels, Counter>,
    pub session_open_seconds: Histogram,
    splices: Family<PathLabels, Counter>,
    route_lookups: Family<ResultLabels, Counter>,
    route_store_errors: Family<OperationLabels, Counter>,
    pub replicas_live: Gauge,
    pub relay_streams: Gauge,
    relay_messages: Family<DirectionLabels, Counter>,
    relay_resets: Family<ReasonLabels, Counter>,
    statements: Family<OutcomeLabels, Counter>,
    webhook_deliveries: Family<ResultLabels, Counter>,
    policy_cache_lookups: Family<ResultLabels, Counter>,
    policy_cache_refresh_failures: Counter,
    policy_cache_invalidations: Family<SourceLabels, Counter>,
    /// 0 fresh, 1 stale (serving cached policy), 2 failed closed.
    pub policy_cache_state: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("postern");
        let sessions_open = Gauge::default();
        registry.register(
            "sessions_open",
            "Sessions currently open on this replica",
            sessions_open.clone(),
        );
        let sessions_total = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sessions",
            "Sessions ended, by outcome (ok, error)",
            sessions_total.clone(),
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "session_bytes",
            "Payload bytes spliced, by direction (up: user to target)",
            bytes.clone(),
        );
        let agents_connected = Gauge::default();
        registry.register(
            "agents_connected",
            "Agent control streams held by this replica",
            agents_connected.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "errors",
            "Refused or failed requests and sessions, by kind",
            errors.clone(),
        );
        let session_open_seconds = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]);
        registry.register(
            "session_open_seconds",
            "Time from a user's Open to the agent's Attach",
            session_open_seconds.clone(),
        );
        let splices = Family::<PathLabels, Counter>::default();
        registry.register(
            "splices",
            "Session legs joined, by path (local, peer, relay), counted where the agent attached",
            splices.clone(),
        );
        let route_lookups = Family::<ResultLabels, Counter>::default();
        registry.register(
            "route_lookups",
            "Route store lookups of an agent's or session's replica, by result (hit, miss)",
            route_lookups.clone(),
        );
        let route_store_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "route_store_errors",
            "Failed route store (Redis) operations, by operation",
            route_store_errors.clone(),
        );
        let replicas_live = Gauge::default();
        registry.register(
            "replicas_live",
            "Live gateway replicas as this replica last saw them, itself included",
            replicas_live.clone(),
        );
        let relay_streams = Gauge::default();
        registry.register(
            "relay_streams",
            "Session legs this replica carries through the route store (relay mode)",
            relay_streams.clone(),
        );
        let relay_messages = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "relay_messages",
            "Relay messages through the route store, by direction (sent, received)",
            relay_messages.clone(),
        );
        let relay_resets = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "relay_resets",
            "Relayed session legs ended abnormally, by reason",
            relay_resets.clone(),
        );
        let webhook_deliveries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "review_webhook_deliveries",
            "Review notifications posted to the webhook, by result (ok, failed after retries)",
            webhook_deliveries.clone(),
        );
        let statements = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "statements",
            "Statements agents reported on sessions entering here, by outcome (ok, error, blocked, skipped, protocol_error, unknown)",
            statements.clone(),
        );
        let policy_cache_lookups = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_cache_lookups",
            "Policy cache lookups, by result (hit, stale: served while the store is unreachable, miss, failed_closed)",
            policy_cache_lookups.clone(),
        );
        let policy_cache_refresh_failures = Counter::default();
        registry.register(
            "policy_cache_refresh_failures",
            "Failed policy store reads by the cache (generation polls and loads)",
            policy_cache_refresh_failures.clone(),
        );
        let policy_cache_invalidations = Family::<SourceLabels, Counter>::default();
        registry.register(
            "policy_cache_invalidations",
            "Policy cache invalidations, by source (local, poll, announced)",
            policy_cache_invalidations.clone(),
        );
        let policy_cache_state = Gauge::default();
        policy_cache_state.set(2);
        registry.register(
            "policy_cache_state",
            "Policy cache state: 0 fresh, 1 stale (serving cached policy), 2 failed closed or not yet loaded",
            policy_cache_state.clone(),
        );
        export_at_zero(&sessions_total, SESSION_OUTCOMES, |outcome| OutcomeLabels {
            outcome,
        });
        export_at_zero(&errors, ErrorKind::ALL.map(ErrorKind::as_str), |kind| {
            ErrorLabels { kind }
        });
        export_at_zero(&splices, SplicePath::ALL.map(SplicePath::as_str), |path| {
            PathLabels { path }
        });
        export_at_zero(&route_lookups, ROUTE_LOOKUP_RESULTS, |result| {
            ResultLabels { result }
        });
        export_at_zero(&route_store_errors, ROUTE_STORE_OPERATIONS, |operation| {
            OperationLabels { operation }
        });
        export_at_zero(&relay_messages, RELAY_DIRECTIONS, |direction| {
            DirectionLabels { direction }
        });
        export_at_zero(&relay_resets, RELAY_RESET_REASONS, |reason| ReasonLabels {
            reason,
        });
        export_at_zero(&statements, STATEMENT_OUTCOMES, |outcome| OutcomeLabels {
            outcome,
        });
        export_at_zero(&webhook_deliveries, WEBHOOK_RESULTS, |result| {
            ResultLabels { result }
        });
        export_at_zero(
            &policy_cache_lookups,
            POLICY_CACHE_LOOKUP_RESULTS,
            |result| ResultLabels { result },
        );
        export_at_zero(
            &policy_cache_invalidations,
            POLICY_CACHE_SOURCES,
            |source| SourceLabels { source },
        );
        // Bind each handle in its own statement: `get_or_create` returns a read
        // guard, and a second call while one is alive would deadlock.
        let bytes_up = bytes
            .get_or_create(&DirectionLabels { direction: "up" })
            .clone();
        let bytes_down = bytes
            .get_or_create(&DirectionLabels { direction: "down" })
            .clone();
        Self {
            registry,
            sessions_open,
            sessions_total,
            bytes_up,
            bytes_down,
            agents_connected,
            errors,
            session_open_seconds,
            splices,
            route_lookups,
            route_store_errors,
            replicas_live,
            relay_streams,
            relay_messages,
            relay_resets,
            statements,
            webhook_deliveries,
            policy_cache_lookups,
            policy_cache_refresh_failures,
            policy_cache_invalidations,
            policy_cache_state,
        }
    }

    pub fn policy_cache_lookup(&self, result: &'static str) {
        debug_assert_listed("result", result, POLICY_CACHE_LOOKUP_RESULTS);
        self.policy_cache_lookups
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn policy_cache_refresh_failure(&self) {
        self.policy_cache_refresh_failures.inc();
    }

    pub fn policy_cache_invalidation(&self, source: &'static str) {
        debug_assert_listed("source", source, POLICY_CACHE_SOURCES);
        self.policy_cache_invalidations
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    pub fn webhook_delivery(&self, result: &'static str) {
        debug_assert_listed("result", result, WEBHOOK_RESULTS);
        self.webhook_deliveries
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn statement(&self, outcome: &str) {
        let outcome = STATEMENT_OUTCOMES
            .iter()
            .find(|listed| **listed == outcome)
            .copied()
            .unwrap_or("unknown");
        self.statements
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn relay_message(&self, sent: bool) {
        self.relay_messages
            .get_or_create(&DirectionLabels {
                direction: if sent { "sent" } else { "received" },
            })
            .inc();
    }

    pub fn relay_reset(&self, reason: &'static str) {
        debug_assert_listed("reason", reason, RELAY_RESET_REASONS);
        self.relay_resets
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn splice(&self, path: SplicePath) {
        self.splices
            .get_or_create(&PathLabels {
                path: path.as_str(),
            })
            .inc();
    }

    pub fn route_lookup(&self, hit: bool) {
        self.route_lookups
            .get_or_create(&ResultLabels {
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    pub fn route_store_error(&self, operation: &'static str) {
        debug_assert_listed("operation", operation, ROUTE_STORE_OPERATIONS);
        self.route_store_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    pub fn session_ended(&self, outcome: &'static str) {
        debug_assert_listed("outcome", outcome, SESSION_OUTCOMES);
        self.sessions_total
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Creates the series of every listed label value, at 0.
fn export_at_zero<L, V>(
    family: &Family<L, Counter>,
    values: impl IntoIterator<Item = V>,
    labels: impl Fn(V) -> L,
) where
    L: Clone + std::hash::Hash + Eq,
{
    for value in values {
        // The guard `get_or_create` returns is dropped at once.
        drop(family.get_or_create(&labels(value)));
    }
}

#[cfg(test)]
mod tests;
