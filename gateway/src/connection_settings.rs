//! A connection as an admin describes it, checked before it is stored: its
//! kind, and the Layer 7 settings only protocol-aware kinds take. And those
//! settings as the agent receives them with each session request.

use postern_l7_sql::{Guardrails, Masker, SqlPolicy};
use postern_state::{Connection, ConnectionKind};
use postern_tunnel::proto::PostgresSession;
use serde::Deserialize;

/// TLS modes from the agent to the database, as libpq names them.
pub const TLS_MODES: [&str; 4] = ["disable", "prefer", "require", "verify-full"];
/// What a postgres connection gets when its admin names no TLS mode.
pub const DEFAULT_TLS: &str = "prefer";

/// The body of `POST /v1/connections`.
#[derive(Debug, Deserialize)]
pub struct NewConnection {
    pub name: String,
    /// Parsed here rather than by serde, so an unknown kind is a 400 that
    /// lists the kinds.
    pub kind: String,
    pub target: String,
    pub agent: String,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub credential: Option<String>,
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
}

/// One field of a new connection is wrong; the message starts with its name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidSetting {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        field,
        reason: reason.into(),
    }
}

impl NewConnection {
    /// The connection to store, or the first field that is wrong. The target
    /// and names are checked elsewhere (API and store).
    pub fn validate(self, created_at_ms: i64) -> Result<Connection, InvalidSetting> {
        let kind: ConnectionKind = self.kind.parse().map_err(|e: String| invalid("kind", e))?;
        let mut connection = Connection::tcp(&self.name, &self.target, &self.agent, created_at_ms);
        connection.kind = kind;
        match kind {
            ConnectionKind::Tcp => {
                for (field, given) in [
                    ("database", self.database.is_some()),
                    ("credential", self.credential.is_some()),
                    ("tls", self.tls.is_some()),
                    ("policy", self.policy.is_some()),
                ] {
                    if given {
                        return Err(invalid(
                            field,
                            "only connections of kind postgres take one (this one is tcp, relayed byte for byte)",
                        ));
                    }
                }
            }
            ConnectionKind::Postgres => {
                if let Some(database) = &self.database {
                    validate_database(database)?;
                }
                let credential = self.credential.ok_or_else(|| {
                    invalid(
                        "credential",
                        "required for kind postgres: where the agent finds the database login, env:NAME or file:NAME",
                    )
                })?;
                validate_credential(&credential)?;
                let tls = self.tls.unwrap_or_else(|| DEFAULT_TLS.to_owned());
                if !TLS_MODES.contains(&tls.as_str()) {
                    return Err(invalid(
                        "tls",
                        format!(
                            "{tls:?} is not a TLS mode (expected: {})",
                            TLS_MODES.join(", ")
                        ),
                    ));
                }
                if let Some(policy) = &self.policy {
                    validate_policy(policy)?;
                }
                connection.database = self.database;
                connection.credential = Some(credential);
                connection.tls = Some(tls);
                connection.policy = self.policy;
            }
        }
        Ok(connection)
    }
}

fn validate_database(database: &str) -> Result<(), InvalidSetting> {
    if database.is_empty() || database.len() > 63 || database.chars().any(char::is_control) {
        return Err(invalid(
            "database",
            format!(
                "{database:?} must be 1-63 bytes without control characters (omit it to use the database the client asks for)"
            ),
        ));
    }
    Ok(())
}

/// `env:NAME` (NAME of `A-Z0-9_`) or `file:NAME` (NAME of `A-Za-z0-9._-`, no
/// `..`, not `.`): a reference the agent resolves, never a path or a secret.
pub fn validate_credential(reference: &str) -> Result<(), InvalidSetting> {
    let valid = match reference.split_once(':') {
        Some(("env", name)) => {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        }
        Some(("file", name)) => {
            !name.is_empty()
                && name != "."
                && !name.contains("..")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        _ => false,
    };
    if valid && reference.len() <= 128 {
        Ok(())
    } else {
        // The value is echoed: a reference is not a secret, and if an admin
        // pasted a password here it goes back only to that admin.
        Err(invalid(
            "credential",
            format!(
                "{reference:?} is not a credential reference: use env:NAME (NAME of A-Z, 0-9 and _; the agent reads \
                 POSTERN_CRED_<NAME>_USER and POSTERN_CRED_<NAME>_PASSWORD) or file:NAME (NAME of letters, digits, \
                 '.', '_' and '-', without \"..\", under the agent's POSTERN_CREDENTIALS_DIR), at most 128 characters"
            ),
        ))
    }
}

/// The policy must read as an `SqlPolicy` (no unknown fields) and compile:
/// an agent must never be the first to find out that it does not.
pub fn validate_policy(policy: &serde_json::Value) -> Result<(), InvalidSetting> {
    let policy: SqlPolicy =
        serde_json::from_value(policy.clone()).map_err(|e| invalid("policy", e.to_string()))?;
    Guardrails::new(&policy.guardrails).map_err(|e| invalid("policy", e.to_string()))?;
    Masker::new(&policy.masking).map_err(|e| invalid("policy", e.to_string()))?;
    Ok(())
}

/// What the agent needs for a session on `connection`; `None` unless it is
/// of kind postgres.
/// The agent's settings for one Postgres session; `read_only` (the person
/// may connect but not exec) turns the read-only guardrail on whatever the
/// connection's own policy says.
pub fn postgres_session(connection: &Connection, read_only: bool) -> Option<PostgresSession> {
    (connection.kind == ConnectionKind::Postgres).then(|| PostgresSession {
        database: connection.database.clone().unwrap_or_default(),
        credential: connection.credential.clone().unwrap_or_default(),
        tls: connection
            .tls
            .clone()
            .unwrap_or_else(|| DEFAULT_TLS.to_owned()),
        policy_json: match (&connection.policy, read_only) {
            (policy, true) => forced_read_only(policy.as_ref()).to_string(),
            (Some(policy), false) => policy.to_string(),
            (None, false) => String::new(),
        },
    })
}

fn forced_read_only(policy: Option<&serde_json::Value>) -> serde_json::Value {
    let mut policy = policy.cloned().unwrap_or_else(|| serde_json::json!({}));
    if let Some(object) = policy.as_object_mut() {
        let guardrails = object
            .entry("guardrails")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(guardrails) = guardrails.as_object_mut() {
            guardrails.insert("read_only".into(), serde_json::Value::Bool(true));
        }
    }
    policy
}

/// For the audit trail: what was set, never more than the references.
pub fn describe(connection: &Connection) -> String {
    let mut detail = format!(
        "kind={} target={} agent={}",
        connection.kind.as_str(),
        connection.target,
        connection.agent
    );
    for (name, value) in [
        ("database", &connection.database),
        ("credential", &connection.credential),
        ("tls", &connection.tls),
    ] {
        if let Some(value) = value {
            detail.push_str(&format!(" {name}={value}"));
        }
    }
    if let Some(policy) = &connection.policy {
        detail.push_str(&format!(" policy={policy}"));
    }
    detail
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn new(body: serde_json::Value) -> Result<Connection, InvalidSetting> {
        let mut base =
            json!({"name": "orders", "kind": "postgres", "target": "db:5432", "agent": "a1"});
        base.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        serde_json::from_value::<NewConnection>(base)
            .unwrap()
            .validate(1)
    }

    #[test]
    fn credential_references() {
        for good in [
            "env:ORDERS",
            "env:ORDERS_RO_2",
            "file:orders",
            "file:orders.ro-1_x",
            "file:.hidden",
        ] {
            assert_eq!(validate_credential(good), Ok(()), "{good}");
        }
        for bad in [
            "ORDERS",
            "env:",
            "env:orders",
            "env:OR-DERS",
            "file:",
            "file:.",
            "file:..",
            "file:a..b",
            "file:a/b",
            "file:/etc/passwd",
            "vault:x",
            "file:ü",
            "hunter2",
        ] {
            let err = validate_credential(bad).unwrap_err();
            assert_eq!(err.field, "credential", "{bad}");
            assert!(
                err.to_string().starts_with(&format!(
                    "credential: {bad:?} is not a credential reference"
                )),
                "{err}"
            );
        }
        assert!(validate_credential(&format!("env:{}", "A".repeat(200))).is_err());
    }

    #[test]
    fn postgres_defaults_and_settings() {
        let c = new(json!({"credential": "env:ORDERS"})).unwrap();
        assert_eq!(
            (
                c.kind,
                c.credential.as_deref(),
                c.tls.as_deref(),
                c.database,
                c.policy
            ),
            (
                ConnectionKind::Postgres,
                Some("env:ORDERS"),
                Some("prefer"),
                None,
                None
            )
        );
        let policy =
            json!({"guardrails": {"read_only": true}, "masking": {"detectors": ["email"]}});
        let c = new(json!({"credential": "file:orders", "tls": "verify-full", "database": "orders", "policy": policy}))
            .unwrap();
        let session = postgres_session(&c, false).unwrap();
        assert_eq!(session.database, "orders");
        assert_eq!(session.credential, "file:orders");
        assert_eq!(session.tls, "verify-full");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&session.policy_json).unwrap(),
            policy
        );
        assert!(!session.policy_json.contains('\n'), "compact JSON");
        assert_eq!(
            describe(&c),
            format!(
                "kind=postgres target=db:5432 agent=a1 database=orders credential=file:orders tls=verify-full policy={policy}"
            )
        );
        // Connect without exec: read-only on top of the connection's policy.
        let masking = json!({"masking": {"detectors": ["email"]}});
        let c = new(json!({"credential": "env:ORDERS", "policy": masking})).unwrap();
        let forced: serde_json::Value =
            serde_json::from_str(&postgres_session(&c, true).unwrap().policy_json).unwrap();
        assert_eq!(
            forced,
            json!({"guardrails": {"read_only": true}, "masking": {"detectors": ["email"]}})
        );
        let c = new(json!({"credential": "env:ORDERS"})).unwrap();
        assert_eq!(postgres_session(&c, false).unwrap().policy_json, "");
        assert_eq!(
            postgres_session(&c, true).unwrap().policy_json,
            r#"{"guardrails":{"read_only":true}}"#
        );
        let tcp = new(json!({"kind": "tcp"})).unwrap();
        assert_eq!(postgres_session(&tcp, true), None);
        assert_eq!(describe(&tcp), "kind=tcp target=db:5432 agent=a1");
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                json!({"kind": "udp"}),
                "kind: unknown connection kind \"udp\" (expected: tcp, postgres)",
            ),
            (json!({}), "credential: required for kind postgres"),
            (
                json!({"credential": "env:A", "tls": "strict"}),
                "tls: \"strict\" is not a TLS mode (expected: disable, prefer, require, verify-full)",
            ),
            (
                json!({"credential": "env:A", "database": ""}),
                "database: \"\" must be 1-63 bytes",
            ),
            (
                json!({"credential": "env:A", "policy": {"guardrails": {"readonly": true}}}),
                "policy: unknown field `readonly`",
            ),
            (
                json!({"credential": "env:A", "policy": {"guardrails": {"deny_patterns": ["("]}}}),
                "policy: guardrails: deny pattern \"(\" is not a valid regular expression",
            ),
            (
                json!({"credential": "env:A", "policy": {"masking": {"detectors": ["iban"]}}}),
                "policy: unknown variant `iban`",
            ),
            (
                json!({"credential": "env:A", "policy": "read only"}),
                "policy: invalid type: string",
            ),
            (
                json!({"kind": "tcp", "policy": {}}),
                "policy: only connections of kind postgres take one",
            ),
            (
                json!({"kind": "tcp", "credential": "env:A"}),
                "credential: only connections of kind postgres take one",
            ),
            (
                json!({"kind": "tcp", "tls": "require"}),
                "tls: only connections of kind postgres take one",
            ),
            (
                json!({"kind": "tcp", "database": "x"}),
                "database: only connections of kind postgres take one",
            ),
        ];
        for (body, expected) in cases {
            let err = new(body.clone()).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{body}: {err}");
        }
        // A JSON null is no policy at all.
        assert_eq!(
            new(json!({"credential": "env:A", "policy": null}))
                .unwrap()
                .policy,
            None
        );
    }
}
