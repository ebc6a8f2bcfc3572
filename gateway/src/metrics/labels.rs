//! The label sets of the replica's metrics and every value each label takes.
//! Every listed value is exported from the start (at 0), so a series exists
//! before its first event: `rate()` and `increase()` see the first one, and an
//! alert on a rare kind of failure does not wait for a second.

use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    /// From the user towards the target.
    Up,
    /// From the target towards the user.
    Down,
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
    /// Every kind, in the order they are exported (a new kind goes here too).
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::BadRequest,
        ErrorKind::NotFound,
        ErrorKind::AgentOffline,
        ErrorKind::TargetUnreachable,
        ErrorKind::AttachTimeout,
        ErrorKind::StoreUnavailable,
        ErrorKind::Draining,
        ErrorKind::StreamError,
        ErrorKind::PeerUnauthenticated,
        ErrorKind::PeerUnavailable,
        ErrorKind::AuditUnavailable,
        ErrorKind::MfaRequired,
        ErrorKind::ApprovalRequired,
        ErrorKind::Conflict,
        ErrorKind::IdentityUnavailable,
    ];

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
    pub const ALL: [SplicePath; 3] = [SplicePath::Local, SplicePath::Peer, SplicePath::Relay];

    pub fn as_str(self) -> &'static str {
        match self {
            SplicePath::Local => "local",
            SplicePath::Peer => "peer",
            SplicePath::Relay => "relay",
        }
    }
}

/// `postern_sessions_total{outcome}`.
pub(super) const SESSION_OUTCOMES: &[&str] = &["ok", "error"];
/// `postern_statements_total{outcome}`: what agents report, `unknown` for anything else.
pub(super) const STATEMENT_OUTCOMES: &[&str] = &[
    "ok",
    "error",
    "blocked",
    "skipped",
    "protocol_error",
    "unknown",
];
/// `postern_route_lookups_total{result}`.
pub(super) const ROUTE_LOOKUP_RESULTS: &[&str] = &["hit", "miss"];
/// `postern_route_store_errors_total{operation}`.
pub(super) const ROUTE_STORE_OPERATIONS: &[&str] = &[
    "announce_replica",
    "announce_agents",
    "replicas",
    "agent_replicas",
    "put_session",
    "session_ingress",
    "remove_session",
    "subscribe",
];
/// `postern_relay_messages_total{direction}`.
pub(super) const RELAY_DIRECTIONS: &[&str] = &["sent", "received"];
/// `postern_relay_resets_total{reason}`.
pub(super) const RELAY_RESET_REASONS: &[&str] = &[
    "lost",
    "peer_gone",
    "window_exceeded",
    "abandoned",
    "publish_failed",
    "source_failed",
    "remote",
    "stopping",
];
/// `postern_review_webhook_deliveries_total{result}`.
pub(super) const WEBHOOK_RESULTS: &[&str] = &["ok", "failed"];
/// `postern_policy_cache_lookups_total{result}`.
pub(super) const POLICY_CACHE_LOOKUP_RESULTS: &[&str] = &["hit", "stale", "miss", "failed_closed"];
/// `postern_policy_cache_invalidations_total{source}`.
pub(super) const POLICY_CACHE_SOURCES: &[&str] = &["local", "poll", "announced"];

/// A value passed as a `&'static str` label must be one of its listed values,
/// or it would be exported without being declared (checked in debug builds).
pub(super) fn debug_assert_listed(label: &str, value: &str, listed: &[&str]) {
    debug_assert!(
        listed.contains(&value),
        "metric label {label}={value:?} is not among its listed values {listed:?}"
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ErrorLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PathLabels {
    pub path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SourceLabels {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub reason: &'static str,
}
