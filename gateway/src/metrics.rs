//! Prometheus metrics of one replica. Names and labels are documented in the README.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    /// From the user towards the target.
    Up,
    /// From the target towards the user.
    Down,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Why a request or session failed; one label value each.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ErrorKind {
    Unauthenticated,
    Forbidden,
    BadRequest,
    NotFound,
    AgentOffline,
    TargetUnreachable,
    AttachTimeout,
    StoreUnavailable,
    Draining,
    StreamError,
    PeerUnauthenticated,
    PeerUnavailable,
    /// An audit event could not be written.
    AuditUnavailable,
    /// The connection requires MFA and the login did not prove it.
    MfaRequired,
    /// The connection requires an approval the person does not have yet.
    ApprovalRequired,
    /// A compare-and-set write lost to another one.
    Conflict,
    /// The OIDC issuer's keys cannot be fetched: tokens cannot be checked.
    IdentityUnavailable,
}

impl ErrorKind {
    /// Stable snake_case name: the metric label and the JSON error code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AgentOffline => "agent_offline",
            ErrorKind::TargetUnreachable => "target_unreachable",
            ErrorKind::AttachTimeout => "attach_timeout",
            ErrorKind::StoreUnavailable => "store_unavailable",
            ErrorKind::Draining => "draining",
            ErrorKind::StreamError => "stream_error",
            ErrorKind::PeerUnauthenticated => "peer_unauthenticated",
            ErrorKind::PeerUnavailable => "peer_unavailable",
            ErrorKind::AuditUnavailable => "audit_unavailable",
            ErrorKind::MfaRequired => "mfa_required",
            ErrorKind::ApprovalRequired => "approval_required",
            ErrorKind::Conflict => "conflict",
            ErrorKind::IdentityUnavailable => "identity_unavailable",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

/// How a session's two legs were joined.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SplicePath {
    /// The ingress replica holds the agent's Attach itself.
    Local,
    /// The agent attached to another replica, which forwards over the peer link.
    Peer,
    /// As `Peer`, carried through the route store's pub/sub instead of a link.
    Relay,
}

impl SplicePath {
    pub fn as_str(self) -> &'static str {
        match self {
            SplicePath::Local => "local",
            SplicePath::Peer => "peer",
            SplicePath::Relay => "relay",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
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
            "Statements agents reported on sessions entering here, by outcome (ok, error, blocked)",
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
        self.policy_cache_lookups
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn policy_cache_refresh_failure(&self) {
        self.policy_cache_refresh_failures.inc();
    }

    pub fn policy_cache_invalidation(&self, source: &'static str) {
        self.policy_cache_invalidations
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    pub fn webhook_delivery(&self, result: &'static str) {
        self.webhook_deliveries
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn statement(&self, outcome: &str) {
        let outcome = match outcome {
            "ok" => "ok",
            "error" => "error",
            "blocked" => "blocked",
            "skipped" => "skipped",
            "protocol_error" => "protocol_error",
            _ => "unknown",
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_documented_metric() {
        let metrics = Metrics::new();
        metrics.error(ErrorKind::AgentOffline);
        metrics.session_ended("ok");
        metrics.bytes_up.inc_by(5);
        metrics.splice(SplicePath::Peer);
        metrics.route_lookup(false);
        metrics.route_store_error("announce_replica");
        metrics.policy_cache_lookup("stale");
        metrics.policy_cache_refresh_failure();
        metrics.policy_cache_invalidation("poll");
        let text = metrics.encode();
        for name in [
            "postern_sessions_open",
            "postern_sessions_total{outcome=\"ok\"} 1",
            "postern_session_bytes_total{direction=\"up\"} 5",
            "postern_agents_connected",
            "postern_errors_total{kind=\"agent_offline\"} 1",
            "postern_session_open_seconds_bucket",
            "postern_splices_total{path=\"peer\"} 1",
            "postern_route_lookups_total{result=\"miss\"} 1",
            "postern_route_store_errors_total{operation=\"announce_replica\"} 1",
            "postern_replicas_live",
            "postern_policy_cache_lookups_total{result=\"stale\"} 1",
            "postern_policy_cache_refresh_failures_total 1",
            "postern_policy_cache_invalidations_total{source=\"poll\"} 1",
            "postern_policy_cache_state 2",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
