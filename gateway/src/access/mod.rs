//! Who may do what: access rules (groups → connection patterns → actions),
//! per-connection requirements (MFA, approval) and the decisions over them.
//!
//! The decisions ([`decide`]) are pure functions over a [`PolicySnapshot`];
//! the rest of this module is the records and how the stores keep them.

pub mod decide;
pub mod documents;
pub mod pattern;

use serde::{Deserialize, Serialize};

pub use decide::{Decision, SessionDecision, decide, decide_session};

/// What a rule lets its groups do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Open sessions to the connection. On a Postgres connection without
    /// `exec`, sessions are read-only.
    Connect,
    /// Run statements that write, on protocol-aware connections.
    Exec,
    /// Change connections, agents, tokens, rules (on `*`: everything).
    Admin,
    /// Read sessions and audit.
    AuditRead,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Connect,
        Action::Exec,
        Action::Admin,
        Action::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "connect",
            Action::Exec => "exec",
            Action::Admin => "admin",
            Action::AuditRead => "audit-read",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One access rule: members of any of `groups` may do `actions` on the
/// connections whose names match any of `connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub name: String,
    pub groups: Vec<String>,
    /// Name patterns: `*` matches any run of characters, `?` one character.
    /// Things that belong to no connection (agents, tokens, rules, the whole
    /// audit) count as the resource `*`, which only the pattern `*` covers.
    pub connections: Vec<String>,
    pub actions: Vec<Action>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl AccessRule {
    pub fn new(name: &str, groups: &[&str], connections: &[&str], actions: &[Action]) -> Self {
        Self {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            connections: connections.iter().map(|c| c.to_string()).collect(),
            actions: actions.to_vec(),
            description: String::new(),
        }
    }
}

/// What a connection asks of the people who use it, beyond a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionAccess {
    /// Only logins whose token proves MFA (`amr`/`acr`) may open sessions.
    #[serde(default)]
    pub require_mfa: bool,
    /// Sessions need an approval first (just-in-time access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// The group whose members may approve (never the requester).
    pub approvers: String,
    /// How long an approval lets the person open sessions.
    pub window_secs: u64,
}

/// How the person proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// A Postern API key; `admin` keys may do everything (the bootstrap key).
    ApiKey { admin: bool },
    /// An OIDC token from the configured issuer.
    Oidc { expires_at_ms: i64 },
}

/// An authenticated person (or automation) as decisions see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
    /// The login proved a second factor.
    pub mfa: bool,
    pub credential: Credential,
}

impl Principal {
    pub fn is_admin_key(&self) -> bool {
        matches!(self.credential, Credential::ApiKey { admin: true })
    }
}

/// An approved request: `person` may open sessions to `connection` until `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub person: String,
    pub connection: String,
    pub review_id: String,
    pub approved_by: String,
    pub expires_at_ms: i64,
}

/// What the decisions read: the access rules, every connection's
/// requirements, and the grants in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySnapshot {
    pub rules: Vec<AccessRule>,
    pub access: std::collections::HashMap<String, ConnectionAccess>,
    pub grants: Vec<Grant>,
}

impl PolicySnapshot {
    pub fn access_of(&self, connection: &str) -> ConnectionAccess {
        self.access.get(connection).cloned().unwrap_or_default()
    }

    pub fn grant_for(&self, person: &str, connection: &str, now_ms: i64) -> Option<&Grant> {
        self.grants
            .iter()
            .filter(|g| g.person == person && g.connection == connection)
            .find(|g| g.expires_at_ms > now_ms)
    }
}
