//! Policy as code: `postern policy export` prints the gateway's access rules
//! and connections (non-secret settings and access requirements) as YAML;
//! `postern policy apply FILE` shows what would change and applies it
//! through the API, writing versioned objects by compare-and-set.

pub mod diff;
pub mod model;

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiClient, ApiError};
use diff::{Change, Kind, Op, Plan};
use model::{Access, ConnectionSpec, PolicyFile, Rule};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Print the current policy as YAML (rules, connections, their access).
    Export,
    /// Show what FILE changes, then apply it (idempotent). Objects not in
    /// the file are left alone unless --prune. Rules and access carrying a
    /// `version` (as exported) are only changed if still at that version.
    Apply {
        /// A policy file as `postern policy export` writes it; `-`: stdin.
        file: String,
        /// Show the changes only.
        #[arg(long)]
        dry_run: bool,
        /// Also remove rules and connections the file does not list.
        #[arg(long)]
        prune: bool,
    },
}

pub async fn execute(api: &ApiClient, command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Export => print!("{}", current(api).await?.to_yaml()),
        PolicyCommand::Apply {
            file,
            dry_run,
            prune,
        } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?
            };
            let desired = PolicyFile::parse(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            let plan = diff::plan(&desired, &current(api).await?, prune);
            println!("{plan}");
            if !plan.conflicts.is_empty() {
                anyhow::bail!(
                    "nothing applied: {} object(s) changed since {file} was exported; export again, or remove their `version` to overwrite",
                    plan.conflicts.len()
                );
            }
            if dry_run || plan.is_empty() {
                return Ok(());
            }
            apply(api, &desired, &plan).await?;
            println!("Applied.");
        }
    }
    Ok(())
}

/// A connection as the API lists it (with fields the file leaves out).
#[derive(Deserialize)]
struct ApiConnection {
    name: String,
    kind: String,
    target: String,
    agent: String,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    tls: Option<String>,
    #[serde(default)]
    policy: Option<Value>,
}

/// The gateway's policy now, with versions.
pub async fn current(api: &ApiClient) -> Result<PolicyFile, ApiError> {
    let rules: Vec<Rule> = api.get("/v1/rules").await?;
    let listed: Vec<ApiConnection> = api.get("/v1/connections").await?;
    let mut connections = Vec::with_capacity(listed.len());
    for c in listed {
        let access: Access = api
            .get(&format!("/v1/connections/{}/access", c.name))
            .await?;
        connections.push(ConnectionSpec {
            name: c.name,
            kind: c.kind,
            target: c.target,
            agent: c.agent,
            database: c.database,
            credential: c.credential,
            tls: c.tls,
            policy: c.policy,
            access: Access {
                // Version 0: no requirements were ever written.
                version: access.version.filter(|v| *v > 0),
                ..access
            },
        });
    }
    let mut file = PolicyFile { rules, connections };
    file.rules.sort_by(|a, b| a.name.cmp(&b.name));
    file.connections.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(file)
}

/// Applies `plan` in dependency order; stops at the first refusal, saying
/// what was applied before it.
async fn apply(api: &ApiClient, desired: &PolicyFile, plan: &Plan) -> anyhow::Result<()> {
    for (done, change) in plan.in_apply_order().into_iter().enumerate() {
        if let Err(error) = apply_one(api, desired, change).await {
            let conflict = matches!(&error, ApiError::Refused { code, .. } if code == "conflict");
            anyhow::bail!(
                "{} {} failed after {done} of {} changes: {error}{}",
                op_word(change.op),
                describe(change),
                plan.changes.len(),
                if conflict {
                    " (someone changed it meanwhile: run apply again to see the new diff)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

fn op_word(op: Op) -> &'static str {
    match op {
        Op::Add => "adding",
        Op::Change => "changing",
        Op::Remove => "removing",
    }
}

fn describe(change: &Change) -> String {
    match change.kind {
        Kind::Rule => format!("rule {}", change.name),
        Kind::Connection => format!("connection {}", change.name),
        Kind::Access => format!("the access of connection {}", change.name),
    }
}

async fn apply_one(api: &ApiClient, desired: &PolicyFile, change: &Change) -> Result<(), ApiError> {
    let name = &change.name;
    match (change.kind, change.op) {
        (Kind::Rule, Op::Add | Op::Change) => {
            let rule = desired.rule(name).expect("planned from the file");
            let body = json!({
                "name": rule.name, "groups": rule.groups, "connections": rule.connections,
                "actions": rule.actions, "description": rule.description,
                "version": change.version,
            });
            api.put::<_, Value>(&format!("/v1/rules/{name}"), &body)
                .await?;
        }
        (Kind::Rule, Op::Remove) => {
            api.delete(&format!("/v1/rules/{name}?version={}", change.version))
                .await?;
        }
        (Kind::Connection, op) => {
            // Connections have no versions and no update: a changed one is
            // replaced (its access requirements are kept apart and stay).
            if op != Op::Add {
                api.delete(&format!("/v1/connections/{name}")).await?;
            }
            if op != Op::Remove {
                let c = desired.connection(name).expect("planned from the file");
                let body = json!({
                    "name": c.name, "kind": c.kind, "target": c.target, "agent": c.agent,
                    "database": c.database, "credential": c.credential, "tls": c.tls,
                    "policy": c.policy,
                });
                api.post::<_, Value>("/v1/connections", &body).await?;
            }
        }
        (Kind::Access, op) => {
            let access = match op {
                Op::Remove => Access::default(),
                _ => desired
                    .connection(name)
                    .expect("planned from the file")
                    .access
                    .clone(),
            };
            let body = json!({
                "require_mfa": access.require_mfa,
                "approval": access.approval,
                "version": change.version,
            });
            api.put::<_, Value>(&format!("/v1/connections/{name}/access"), &body)
                .await?;
        }
    }
    Ok(())
}
