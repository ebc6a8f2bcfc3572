//! The records the stores keep.

use serde::{Deserialize, Serialize};

/// What a connection speaks. `tcp` is relayed byte for byte; protocol-aware
/// kinds come with their Layer 7 engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionKind {
    Tcp,
    /// The Postgres wire protocol, through the agent's Layer 7 engine: the agent
    /// logs in with its own credentials and checks, masks and audits statements.
    Postgres,
}

impl ConnectionKind {
    pub const ALL: [ConnectionKind; 2] = [ConnectionKind::Tcp, ConnectionKind::Postgres];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Tcp => "tcp",
            ConnectionKind::Postgres => "postgres",
        }
    }
}

impl std::str::FromStr for ConnectionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectionKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                let kinds: Vec<&str> = ConnectionKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown connection kind {s:?} (expected: {})",
                    kinds.join(", ")
                )
            })
    }
}

/// A named private resource reached through one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub name: String,
    pub kind: ConnectionKind,
    /// `host:port` as the agent resolves it, inside the private network.
    pub target: String,
    pub agent: String,
    pub created_at_ms: i64,
    /// Layer 7 settings (kind `postgres`); absent on `tcp` connections, and
    /// left out of their JSON. The database the agent opens; none: the one
    /// the client asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Where the agent finds the database login: a reference (`env:NAME`,
    /// `file:NAME`) the agent resolves, never the secret itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// TLS from the agent to the database: disable, prefer, require, verify-full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The SQL policy (postern-l7-sql's `SqlPolicy` as JSON), as the admin wrote
    /// it; none: that policy's defaults. The gateway validates it, not the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
}

impl Connection {
    /// A `tcp` connection: bytes relayed as they are, no Layer 7 settings.
    pub fn tcp(name: &str, target: &str, agent: &str, created_at_ms: i64) -> Self {
        Self {
            name: name.into(),
            kind: ConnectionKind::Tcp,
            target: target.into(),
            agent: agent.into(),
            created_at_ms,
            database: None,
            credential: None,
            tls: None,
            policy: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub name: String,
    #[serde(skip_serializing)]
    pub token_hash: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            other => Err(format!("unknown role {other:?} (expected: admin, user)")),
        }
    }
}

/// An API token held by a person or automation; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserToken {
    /// Who the token identifies; sessions are attributed to this name.
    pub user: String,
    #[serde(skip_serializing)]
    pub token_hash: String,
    pub role: Role,
    pub created_at_ms: i64,
    /// Groups the token's holder belongs to, for access rules (automation has
    /// no identity provider to say).
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub user: String,
    pub connection: String,
    pub agent: String,
    pub replica: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// `ok`, or why the session ended abnormally; `None` while open.
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub id: String,
    pub ended_at_ms: i64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at_ms: i64,
    /// Who acted: a user name, `agent:<name>`, or `system`.
    pub actor: String,
    /// What happened, dotted: `session.open`, `connection.create`, ...
    pub action: String,
    /// What it was done to: a connection, agent or session id.
    pub target: String,
    /// `ok`, `denied`, `error` (statements: `ok`, `error`, `blocked`).
    pub outcome: String,
    pub detail: String,
    /// The session the event belongs to (statements run in a session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// Which audit events to read; every set field must match. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub session_id: Option<String>,
    pub target: Option<String>,
    /// `sql.` matches every statement event.
    pub action_prefix: Option<String>,
    /// Only events at or after this time (Unix ms).
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// Only events before this time (Unix ms).
    #[serde(default)]
    pub until_ms: Option<i64>,
    pub limit: u32,
}

impl AuditQuery {
    /// Whether an event at `at_ms` falls in the query's time range.
    pub fn in_time_range(&self, at_ms: i64) -> bool {
        self.since_ms.is_none_or(|since| at_ms >= since)
            && self.until_ms.is_none_or(|until| at_ms < until)
    }
}

/// A versioned JSON document of one `kind` under a `key`: policy objects that
/// change by compare-and-set (access rules, connection access requirements,
/// reviews and grants), so concurrent admins never overwrite each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub kind: String,
    pub key: String,
    /// 1 for a new document, one more on every write.
    pub version: u64,
    pub body: serde_json::Value,
    pub updated_at_ms: i64,
}

/// Document kinds and keys: short and printable, like names, but keys may be
/// longer (review ids, `person/connection` grants).
pub fn validate_document_key(field: &'static str, key: &str) -> Result<(), crate::StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 200
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@' | ':'));
    if ok {
        Ok(())
    } else {
        Err(crate::StoreError::Invalid {
            field,
            reason: format!(
                "{key:?} must be 1-200 characters of letters, digits, '-', '_', '.', '/', '@' or ':'"
            ),
        })
    }
}

/// Names of connections, agents and users: short, printable, no surprises in URLs.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), crate::StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(crate::StoreError::Invalid {
            field,
            reason: format!(
                "{name:?} must be 1-63 characters of letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        })
    }
}

/// Token groups as the SQL stores keep them: a JSON array of names.
pub(crate) fn groups_to_json(groups: &[String]) -> Result<String, crate::StoreError> {
    for group in groups {
        validate_group(group)?;
    }
    Ok(serde_json::Value::from(groups.to_vec()).to_string())
}

pub(crate) fn groups_from_json(json: &str) -> Result<Vec<String>, crate::StoreError> {
    serde_json::from_str(json).map_err(|e| crate::StoreError::Invalid {
        field: "token groups",
        reason: e.to_string(),
    })
}

/// Group names come from identity providers too, so they may hold `/`, `:`
/// and `@` (`org/team`, `okta:admins`), but never spaces or control characters.
pub fn validate_group(group: &str) -> Result<(), crate::StoreError> {
    validate_document_key("group", group)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["pg-prod", "a", "db_1.eu"] {
            assert!(validate_name("name", good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(64), "ü"] {
            assert!(validate_name("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_and_roles_parse() {
        assert_eq!("tcp".parse::<ConnectionKind>(), Ok(ConnectionKind::Tcp));
        assert_eq!(
            "postgres".parse::<ConnectionKind>(),
            Ok(ConnectionKind::Postgres)
        );
        assert_eq!(
            "udp".parse::<ConnectionKind>().unwrap_err(),
            "unknown connection kind \"udp\" (expected: tcp, postgres)"
        );
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn tcp_connections_keep_their_json_and_old_json_still_reads() {
        let tcp = Connection::tcp("echo", "h:1", "a1", 5);
        assert_eq!(
            serde_json::to_value(&tcp).unwrap(),
            serde_json::json!({"name": "echo", "kind": "tcp", "target": "h:1", "agent": "a1", "created_at_ms": 5})
        );
        let old: Connection = serde_json::from_str(
            r#"{"name":"echo","kind":"tcp","target":"h:1","agent":"a1","created_at_ms":5}"#,
        )
        .unwrap();
        assert_eq!(old, tcp);

        let pg = Connection {
            kind: ConnectionKind::Postgres,
            database: Some("orders".into()),
            credential: Some("env:ORDERS".into()),
            tls: Some("require".into()),
            policy: Some(serde_json::json!({"guardrails": {"read_only": true}})),
            ..Connection::tcp("orders", "db:5432", "a1", 5)
        };
        let json = serde_json::to_value(&pg).unwrap();
        assert_eq!(json["kind"], "postgres");
        assert_eq!(json["database"], "orders");
        assert_eq!(json["credential"], "env:ORDERS");
        assert_eq!(json["tls"], "require");
        assert_eq!(json["policy"]["guardrails"]["read_only"], true);
        assert_eq!(serde_json::from_value::<Connection>(json).unwrap(), pg);
    }
}
