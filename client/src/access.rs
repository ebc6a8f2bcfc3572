//! `postern rule ...`, `postern review ...`, and the access check `postern
//! connect` makes before it listens: refused with the reason, or waiting for
//! an approval it asked for.

use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::api::ApiClient;

#[derive(Subcommand)]
pub enum RuleCommand {
    /// List access rules.
    Ls,
    /// Create or replace a rule: members of any --group may do the --action
    /// list on connections matching any --connection pattern.
    Put {
        name: String,
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// Connection name pattern (`*` any run of characters, `?` one).
        #[arg(long = "connection", required = true)]
        connections: Vec<String>,
        /// connect, exec, admin, audit-read.
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Remove a rule.
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Reviews you asked for or may decide (pending ones unless --all).
    Ls {
        #[arg(long)]
        all: bool,
    },
    /// Ask for access to a connection that needs approval.
    Request {
        connection: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Approve a review: its person may open sessions for the approval window.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny a review.
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

pub async fn rules(api: &ApiClient, command: RuleCommand) -> anyhow::Result<()> {
    match command {
        RuleCommand::Ls => {
            let rules: Vec<Value> = api.get("/v1/rules").await?;
            println!(
                "{:<24} {:<24} {:<24} ACTIONS",
                "RULE", "GROUPS", "CONNECTIONS"
            );
            for rule in rules {
                println!(
                    "{:<24} {:<24} {:<24} {}",
                    rule["name"].as_str().unwrap_or("?"),
                    joined(&rule["groups"]),
                    joined(&rule["connections"]),
                    joined(&rule["actions"]),
                );
            }
        }
        RuleCommand::Put {
            name,
            groups,
            connections,
            actions,
            description,
        } => {
            let path = format!("/v1/rules/{name}");
            // Replacing: send the version read, so a concurrent edit is not lost.
            let version = match api.get::<Value>(&path).await {
                Ok(current) => current["version"].as_u64().unwrap_or(0),
                Err(crate::api::ApiError::Refused { code, .. }) if code == "not_found" => 0,
                Err(e) => return Err(e.into()),
            };
            let body = json!({
                "name": name, "groups": groups, "connections": connections,
                "actions": actions, "description": description, "version": version,
            });
            let saved: Value = api.put(&path, &body).await?;
            println!("Rule {name} saved (version {}).", saved["version"]);
        }
        RuleCommand::Rm { name } => {
            api.delete(&format!("/v1/rules/{name}")).await?;
            println!("Removed rule {name}.");
        }
    }
    Ok(())
}

/// A JSON list of strings as `a,b,c`.
pub(crate) fn joined(list: &Value) -> String {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub async fn reviews(api: &ApiClient, command: ReviewCommand) -> anyhow::Result<()> {
    match command {
        ReviewCommand::Ls { all } => {
            let path = if all {
                "/v1/reviews".to_owned()
            } else {
                "/v1/reviews?status=pending".to_owned()
            };
            let reviews: Vec<Value> = api.get(&path).await?;
            println!(
                "{:<16} {:<20} {:<20} {:<10} {:<12} REASON",
                "REVIEW", "PERSON", "CONNECTION", "STATUS", "APPROVERS"
            );
            for r in reviews {
                println!(
                    "{:<16} {:<20} {:<20} {:<10} {:<12} {}",
                    r["id"].as_str().unwrap_or("?"),
                    r["person"].as_str().unwrap_or("?"),
                    r["connection"].as_str().unwrap_or("?"),
                    r["status"].as_str().unwrap_or("?"),
                    r["approvers"].as_str().unwrap_or("?"),
                    r["reason"].as_str().unwrap_or(""),
                );
            }
        }
        ReviewCommand::Request { connection, reason } => {
            let review = request(api, &connection, &reason).await?;
            println!(
                "Review {} asked for; approvers in group {} have been told.",
                review["id"].as_str().unwrap_or("?"),
                review["approvers"].as_str().unwrap_or("?")
            );
        }
        ReviewCommand::Approve { id, comment } => {
            let review: Value = api
                .post(
                    &format!("/v1/reviews/{id}/approve"),
                    &json!({ "comment": comment }),
                )
                .await?;
            println!(
                "Approved {id}: {} may open sessions to {} for {} s.",
                review["person"].as_str().unwrap_or("?"),
                review["connection"].as_str().unwrap_or("?"),
                review["window_secs"]
            );
        }
        ReviewCommand::Deny { id, comment } => {
            api.post::<_, Value>(
                &format!("/v1/reviews/{id}/deny"),
                &json!({ "comment": comment }),
            )
            .await?;
            println!("Denied {id}.");
        }
    }
    Ok(())
}

async fn request(api: &ApiClient, connection: &str, reason: &str) -> anyhow::Result<Value> {
    Ok(api
        .post(
            "/v1/reviews",
            &json!({ "connection": connection, "reason": reason }),
        )
        .await?)
}

/// How often `postern connect` looks at a review it waits on.
const REVIEW_POLL: Duration = Duration::from_millis(500);

/// What the gateway says before `postern connect` listens: fine (maybe
/// read-only), refused with its reason, or in need of an approval, which
/// is asked for and waited on.
pub async fn ensure_access(api: &ApiClient, connection: &str, reason: &str) -> anyhow::Result<()> {
    let access: Value = api.get(&format!("/v1/access/{connection}")).await?;
    match access["decision"].as_str().unwrap_or("?") {
        "allow" => {
            if access["read_only"].as_bool() == Some(true) {
                eprintln!(
                    "postern: read-only: your access to {connection} (rule {}) does not include exec",
                    access["rule"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        "deny" | "mfa_required" => {
            anyhow::bail!("{}", access["reason"].as_str().unwrap_or("access refused"))
        }
        "approval_required" => {
            let review = match access["pending_review"].as_str() {
                Some(id) => api.get(&format!("/v1/reviews/{id}")).await?,
                None => request(api, connection, reason).await?,
            };
            let id = review["id"].as_str().unwrap_or("?").to_owned();
            // A machine-readable line first, as for `listening on`.
            println!("waiting for approval {id}");
            eprintln!(
                "postern: {connection} needs an approval from group {}: asked in review {id}; waiting (Ctrl-C to stop)",
                access["approvers"].as_str().unwrap_or("?")
            );
            let renewed = wait_for_decision(api, &id).await?;
            granted(renewed.as_ref().unwrap_or(api), connection).await
        }
        other => anyhow::bail!("unexpected access decision {other:?} from the gateway"),
    }
}

/// The grant follows the approval by a moment (and reaches other replicas'
/// caches within a second): wait until the gateway says so.
async fn granted(api: &ApiClient, connection: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let access: Value = api.get(&format!("/v1/access/{connection}")).await?;
        if access["decision"] == "allow" {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "approved, but the gateway still says: {}",
                access["reason"].as_str().unwrap_or("approval required")
            );
        }
        tokio::time::sleep(REVIEW_POLL / 2).await;
    }
}

/// Waits until review `id` is decided; returns a client with a renewed token
/// if the wait outlasted the first one.
async fn wait_for_decision(api: &ApiClient, id: &str) -> anyhow::Result<Option<ApiClient>> {
    // Approvers may take longer than an identity provider's access token
    // lasts: renew it while waiting.
    let mut login = api.login().clone();
    let mut renewed: Option<ApiClient> = None;
    loop {
        let fresh = crate::login::fresh(login.clone()).await?;
        if fresh.token.expose() != login.token.expose() {
            renewed = Some(ApiClient::new(fresh.clone())?);
            login = fresh;
        }
        let api = renewed.as_ref().unwrap_or(api);
        let review: Value = api.get(&format!("/v1/reviews/{id}")).await?;
        match review["status"].as_str() {
            Some("approved") => {
                eprintln!(
                    "postern: approved by {}",
                    review["decided_by"].as_str().unwrap_or("?")
                );
                return Ok(renewed);
            }
            Some("denied") => anyhow::bail!(
                "review {id} was denied by {}{}",
                review["decided_by"].as_str().unwrap_or("?"),
                review["comment"]
                    .as_str()
                    .filter(|c| !c.is_empty())
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            ),
            _ => tokio::time::sleep(REVIEW_POLL).await,
        }
    }
}
