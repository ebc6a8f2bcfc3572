//! `postern connection ...` and `postern ls`: connections as the API shows
//! them, and the body of a new one, Layer 7 settings included.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::ApiClient;

#[derive(Subcommand)]
pub enum ConnectionCommand {
    /// Add a connection reached through an agent.
    Add {
        name: String,
        /// tcp (bytes relayed as they are) or postgres (the agent logs in and
        /// checks, masks and audits every statement).
        #[arg(long, default_value = "tcp")]
        kind: String,
        /// HOST:PORT as the agent sees it.
        #[arg(long)]
        target: String,
        #[arg(long)]
        agent: String,
        /// postgres: where the agent finds the database login, env:NAME
        /// (POSTERN_CRED_<NAME>_USER/_PASSWORD on the agent) or file:NAME
        /// (under the agent's POSTERN_CREDENTIALS_DIR). Never the password itself.
        #[arg(long)]
        credential: Option<String>,
        /// postgres: the database the agent opens (default: the one the client asks for).
        #[arg(long)]
        database: Option<String>,
        /// postgres: TLS from the agent to the database: disable, prefer (default),
        /// require, verify-full.
        #[arg(long)]
        tls: Option<String>,
        /// postgres: a JSON file with the SQL policy (guardrails, masking, audit_parameters).
        #[arg(long, value_name = "FILE.json")]
        policy: Option<PathBuf>,
        /// postgres: refuse every statement that writes (guardrails.read_only,
        /// added to the --policy file's).
        #[arg(long)]
        read_only: bool,
    },
    /// Show one connection, with its Layer 7 settings.
    Show { name: String },
    /// Set what a connection asks of people beyond a rule (replaces what
    /// was set): MFA, and approval by a group for a time-boxed window.
    Access {
        name: String,
        /// Only logins that proved MFA may open sessions.
        #[arg(long)]
        require_mfa: bool,
        /// Sessions need an approval from a member of this group.
        #[arg(long, value_name = "GROUP")]
        approvers: Option<String>,
        /// How long an approval lasts: seconds, or with s, m, h or d.
        #[arg(long, default_value = "1h", value_parser = parse_window)]
        window: u64,
    },
    /// Remove a connection.
    Rm { name: String },
    /// List connections.
    Ls,
}

/// A connection as `GET /v1/connections` shows it.
#[derive(Debug, Deserialize)]
pub struct ConnectionView {
    pub name: String,
    pub kind: String,
    pub target: String,
    pub agent: String,
    pub agent_connected: bool,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub credential: Option<String>,
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub policy: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("--policy {}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--policy {}: not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("--policy {}: must hold a JSON object", path.display())]
    NotAnObject { path: PathBuf },
    #[error("--read-only: the policy's \"guardrails\" is not a JSON object")]
    GuardrailsNotAnObject,
}

/// The policy to send: the file's (if any), with `guardrails.read_only`
/// set by `--read-only`. The gateway checks the rest.
pub fn policy(file: Option<&Path>, read_only: bool) -> Result<Option<Value>, PolicyFileError> {
    let mut policy = match file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
                path: path.to_owned(),
                source,
            })?;
            let value: Value =
                serde_json::from_str(&text).map_err(|source| PolicyFileError::Json {
                    path: path.to_owned(),
                    source,
                })?;
            if !value.is_object() {
                return Err(PolicyFileError::NotAnObject {
                    path: path.to_owned(),
                });
            }
            Some(value)
        }
    };
    if read_only {
        let object = policy.get_or_insert_with(|| json!({}));
        let guardrails = object
            .as_object_mut()
            .expect("checked above")
            .entry("guardrails")
            .or_insert_with(|| json!({}));
        guardrails
            .as_object_mut()
            .ok_or(PolicyFileError::GuardrailsNotAnObject)?
            .insert("read_only".into(), Value::Bool(true));
    }
    Ok(policy)
}

/// Runs a `connection` subcommand other than `ls`.
pub async fn execute(api: &ApiClient, command: ConnectionCommand) -> anyhow::Result<()> {
    match command {
        ConnectionCommand::Add {
            name,
            kind,
            target,
            agent,
            credential,
            database,
            tls,
            policy: policy_file,
            read_only,
        } => {
            let mut body = json!({ "name": name, "kind": kind, "target": target, "agent": agent });
            let policy = policy(policy_file.as_deref(), read_only)?;
            for (field, value) in [
                ("credential", credential.map(Value::String)),
                ("database", database.map(Value::String)),
                ("tls", tls.map(Value::String)),
                ("policy", policy),
            ] {
                if let Some(value) = value {
                    body[field] = value;
                }
            }
            let _: Value = api.post("/v1/connections", &body).await?;
            println!(
                "Added connection {name} ({kind} → {target} via agent {agent}). Reach it with: postern connect {name}"
            );
        }
        ConnectionCommand::Access {
            name,
            require_mfa,
            approvers,
            window,
        } => {
            let path = format!("/v1/connections/{name}/access");
            let current: Value = api.get(&path).await?;
            let approval =
                approvers.map(|group| json!({ "approvers": group, "window_secs": window }));
            let body = json!({
                "require_mfa": require_mfa,
                "approval": approval,
                "version": current["version"].as_u64().unwrap_or(0),
            });
            api.put::<_, Value>(&path, &body).await?;
            println!(
                "{name}: MFA {}; {}.",
                if require_mfa {
                    "required"
                } else {
                    "not required"
                },
                match &approval {
                    Some(a) => format!(
                        "sessions need an approval from group {} (lasting {window} s)",
                        a["approvers"].as_str().unwrap_or("?")
                    ),
                    None => "no approval needed".to_owned(),
                }
            );
        }
        ConnectionCommand::Show { name } => {
            let c: ConnectionView = api.get(&format!("/v1/connections/{name}")).await?;
            print!("{}", show(&c));
        }
        ConnectionCommand::Rm { name } => {
            api.delete(&format!("/v1/connections/{name}")).await?;
            println!("Removed connection {name}.");
        }
        ConnectionCommand::Ls => list(api).await?,
    }
    Ok(())
}

pub async fn list(api: &ApiClient) -> anyhow::Result<()> {
    let connections: Vec<ConnectionView> = api.get("/v1/connections").await?;
    println!(
        "{:<24} {:<8} {:<28} {:<16} ONLINE",
        "NAME", "KIND", "TARGET", "AGENT"
    );
    for c in connections {
        println!(
            "{:<24} {:<8} {:<28} {:<16} {}",
            c.name,
            c.kind,
            c.target,
            c.agent,
            if c.agent_connected { "yes" } else { "no" }
        );
    }
    Ok(())
}

fn show(c: &ConnectionView) -> String {
    let online = if c.agent_connected {
        "online"
    } else {
        "offline"
    };
    let mut out = format!(
        "name:        {}\nkind:        {}\ntarget:      {}\nagent:       {} ({online})\n",
        c.name, c.kind, c.target, c.agent
    );
    if c.kind == "postgres" {
        let or = |value: &Option<String>, default: &str| {
            value.clone().unwrap_or_else(|| default.to_owned())
        };
        out.push_str(&format!(
            "database:    {}\ncredential:  {}\ntls:         {}\n",
            or(&c.database, "(the one the client asks for)"),
            or(&c.credential, "-"),
            or(&c.tls, "prefer"),
        ));
        let policy = match &c.policy {
            Some(policy) => serde_json::to_string_pretty(policy).unwrap_or_default(),
            None => "(defaults)".to_owned(),
        };
        out.push_str(&format!("policy:      {policy}\n"));
    }
    out
}

/// How to point a client at the local port.
pub fn client_hint(connection: &ConnectionView, addr: SocketAddr) -> String {
    let (host, port) = (addr.ip(), addr.port());
    match connection.kind.as_str() {
        // The agent logs in to the database: any user name, no password.
        "postgres" => format!(
            "psql \"host={host} port={port} user=<anything> dbname={}\" (no password: the agent logs in for you)",
            connection.database.as_deref().unwrap_or("<db>")
        ),
        "mysql" => format!("mysql -h {host} -P {port}"),
        _ => format!(
            "e.g. psql -h {host} -p {port}, mysql -h {host} -P {port}, or ssh -p {port} user@{host}"
        ),
    }
}

/// `90`, `90s`, `30m`, `1h`, `7d` as seconds.
pub fn parse_window(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90, 30m, 1h or 7d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_windows_parse() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("7d", 604_800),
        ] {
            assert_eq!(parse_window(text), Ok(secs), "{text}");
        }
        for bad in ["", "h", "1w", "-1", "1.5h", "99999999999999999999d"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn read_only_merges_into_the_policy_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.json");
        std::fs::write(
            &file,
            r#"{"guardrails": {"deny_tables": ["payroll.*"]}, "audit_parameters": true}"#,
        )
        .unwrap();
        assert_eq!(
            policy(Some(&file), true).unwrap(),
            Some(
                json!({"guardrails": {"deny_tables": ["payroll.*"], "read_only": true}, "audit_parameters": true})
            )
        );
        assert_eq!(
            policy(Some(&file), false).unwrap().unwrap()["guardrails"],
            json!({"deny_tables": ["payroll.*"]})
        );
        assert_eq!(
            policy(None, true).unwrap(),
            Some(json!({"guardrails": {"read_only": true}}))
        );
        assert_eq!(policy(None, false).unwrap(), None);

        std::fs::write(&file, "{\"guardrails\": ").unwrap();
        let err = policy(Some(&file), false).unwrap_err().to_string();
        assert!(
            err.starts_with("--policy ") && err.contains("not valid JSON"),
            "{err}"
        );
        std::fs::write(&file, "[]").unwrap();
        let err = policy(Some(&file), false).unwrap_err().to_string();
        assert!(err.ends_with("must hold a JSON object"), "{err}");
        std::fs::write(&file, r#"{"guardrails": true}"#).unwrap();
        let err = policy(Some(&file), true).unwrap_err().to_string();
        assert!(err.starts_with("--read-only"), "{err}");
        let err = policy(Some(&dir.path().join("missing.json")), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json: cannot read it"), "{err}");
    }

    #[test]
    fn postgres_hint_needs_no_password() {
        let mut c = ConnectionView {
            name: "orders".into(),
            kind: "postgres".into(),
            target: "db:5432".into(),
            agent: "a1".into(),
            agent_connected: true,
            database: Some("orders".into()),
            credential: Some("env:ORDERS".into()),
            tls: None,
            policy: None,
        };
        let addr: SocketAddr = "127.0.0.1:5433".parse().unwrap();
        assert!(
            client_hint(&c, addr)
                .starts_with("psql \"host=127.0.0.1 port=5433 user=<anything> dbname=orders\"")
        );
        let shown = show(&c);
        assert!(shown.contains("credential:  env:ORDERS\n"), "{shown}");
        assert!(shown.contains("tls:         prefer\n"), "{shown}");
        assert!(shown.contains("policy:      (defaults)\n"), "{shown}");
        c.kind = "tcp".into();
        assert!(client_hint(&c, addr).contains("ssh -p 5433"));
        assert!(!show(&c).contains("credential"));
    }
}
