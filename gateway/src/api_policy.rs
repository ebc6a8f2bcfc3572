//! Admin API for access policy: rules, each connection's requirements, and
//! what the caller may do with a connection (the CLI asks before it listens).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use postern_state::{now_ms, validate_group, validate_name};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::decide::EVERYTHING;
use crate::access::documents::{self, CONNECTION_ACCESS, RULE, Versioned};
use crate::access::{AccessRule, ConnectionAccess, SessionDecision, decide_session, pattern};
use crate::api::{allowed, user};
use crate::metrics::ErrorKind;
use crate::refusal::Refusal;
use crate::shared::Shared;

type ApiResult<T> = Result<T, Refusal>;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/rules", get(list_rules))
        .route(
            "/v1/rules/{name}",
            get(show_rule).put(put_rule).delete(delete_rule),
        )
        .route(
            "/v1/connections/{name}/access",
            get(show_access).put(put_access),
        )
        .route("/v1/access/{connection}", get(check_access))
}

/// A record with the version to send back when changing it.
#[derive(Serialize)]
struct WithVersion<T> {
    #[serde(flatten)]
    value: T,
    version: u64,
}

impl<T> From<Versioned<T>> for WithVersion<T> {
    fn from(v: Versioned<T>) -> Self {
        WithVersion {
            value: v.value,
            version: v.version,
        }
    }
}

/// A write names the version it read (0 or absent: create); a stale one is a
/// 409 and the admin reads again, so concurrent edits never overwrite.
#[derive(Deserialize)]
struct Write<T> {
    #[serde(flatten)]
    value: T,
    #[serde(default)]
    version: u64,
}

#[derive(Deserialize)]
struct DeleteQuery {
    version: Option<u64>,
}

fn bad(shared: &Shared, message: String) -> Refusal {
    shared.refuse(Refusal::new(ErrorKind::BadRequest, message))
}

pub fn validate_rule(rule: &AccessRule) -> Result<(), String> {
    validate_name("rule name", &rule.name).map_err(|e| e.to_string())?;
    if rule.groups.is_empty() || rule.connections.is_empty() || rule.actions.is_empty() {
        return Err(format!(
            "rule {:?} needs at least one group, one connection pattern and one action",
            rule.name
        ));
    }
    for group in &rule.groups {
        validate_group(group).map_err(|e| e.to_string())?;
    }
    for connection in &rule.connections {
        pattern::validate(connection)?;
    }
    Ok(())
}

pub fn validate_access(access: &ConnectionAccess) -> Result<(), String> {
    if let Some(approval) = &access.approval {
        validate_group(&approval.approvers).map_err(|e| e.to_string())?;
        if !(60..=7 * 24 * 3600).contains(&approval.window_secs) {
            return Err(format!(
                "approval window {} s must be between 60 s and 7 days",
                approval.window_secs
            ));
        }
    }
    Ok(())
}

async fn list_rules(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<WithVersion<AccessRule>>>> {
    allowed(&shared, &headers, crate::access::Action::Admin, EVERYTHING).await?;
    let rules = shared.stored(documents::list::<AccessRule>(&*shared.stores.policy, RULE).await)?;
    Ok(Json(rules.into_iter().map(WithVersion::from).collect()))
}

async fn show_rule(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<WithVersion<AccessRule>>> {
    allowed(&shared, &headers, crate::access::Action::Admin, EVERYTHING).await?;
    shared
        .stored(documents::get::<AccessRule>(&*shared.stores.policy, RULE, &name).await)?
        .map(|rule| Json(rule.into()))
        .ok_or_else(|| {
            shared.refuse(Refusal::new(
                ErrorKind::NotFound,
                format!("rule {name:?} does not exist"),
            ))
        })
}

async fn put_rule(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(write): Json<Write<AccessRule>>,
) -> ApiResult<Json<serde_json::Value>> {
    let admin = allowed(&shared, &headers, crate::access::Action::Admin, EVERYTHING).await?;
    let rule = write.value;
    if rule.name != name {
        return Err(bad(
            &shared,
            format!(
                "the rule in the body is {:?}, the path says {name:?}",
                rule.name
            ),
        ));
    }
    validate_rule(&rule).map_err(|e| bad(&shared, e))?;
    let version = shared
        .stored(documents::put(&*shared.stores.policy, RULE, &name, &rule, write.version).await)?;
    shared.policy_changed().await;
    let detail = serde_json::to_string(&rule).unwrap_or_default();
    shared
        .audit(&admin.name, "rule.put", &name, "ok", detail)
        .await;
    Ok(Json(json!({ "name": name, "version": version })))
}

async fn delete_rule(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let admin = allowed(&shared, &headers, crate::access::Action::Admin, EVERYTHING).await?;
    let store = &*shared.stores.policy;
    let version = match query.version {
        Some(version) => version,
        None => shared
            .stored(store.document(RULE, &name).await)?
            .map_or(0, |doc| doc.version),
    };
    if version == 0 || !shared.stored(store.delete_document(RULE, &name, version).await)? {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("rule {name:?} does not exist"),
        )));
    }
    shared.policy_changed().await;
    shared
        .audit(&admin.name, "rule.delete", &name, "ok", String::new())
        .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn show_access(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<WithVersion<ConnectionAccess>>> {
    allowed(&shared, &headers, crate::access::Action::Admin, &name).await?;
    let access = shared.stored(
        documents::get::<ConnectionAccess>(&*shared.stores.policy, CONNECTION_ACCESS, &name).await,
    )?;
    Ok(Json(access.map(WithVersion::from).unwrap_or(WithVersion {
        value: ConnectionAccess::default(),
        version: 0,
    })))
}

async fn put_access(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(write): Json<Write<ConnectionAccess>>,
) -> ApiResult<Json<serde_json::Value>> {
    let admin = allowed(&shared, &headers, crate::access::Action::Admin, &name).await?;
    if shared.connection(&name).await?.is_none() {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("connection {name:?} does not exist"),
        )));
    }
    validate_access(&write.value).map_err(|e| bad(&shared, e))?;
    let version = shared.stored(
        documents::put(
            &*shared.stores.policy,
            CONNECTION_ACCESS,
            &name,
            &write.value,
            write.version,
        )
        .await,
    )?;
    shared.policy_changed().await;
    let detail = serde_json::to_string(&write.value).unwrap_or_default();
    shared
        .audit(&admin.name, "connection.access", &name, "ok", detail)
        .await;
    Ok(Json(json!({ "name": name, "version": version })))
}

/// `GET /v1/access/{connection}`: what opening a session would meet now.
async fn check_access(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let principal = user(&shared, &headers).await?;
    let Some(connection) = shared.connection(&name).await? else {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("connection {name:?} does not exist (see `postern ls`)"),
        )));
    };
    let snapshot = shared.policy_snapshot().await?;
    let answer = match decide_session(&principal, &name, connection.kind, &snapshot, now_ms()) {
        SessionDecision::Allow {
            rule,
            read_only,
            review_id,
        } => {
            json!({ "decision": "allow", "rule": rule, "read_only": read_only, "review": review_id })
        }
        SessionDecision::Deny { reason } => json!({ "decision": "deny", "reason": reason }),
        SessionDecision::NeedsMfa { reason } => {
            json!({ "decision": "mfa_required", "reason": reason })
        }
        SessionDecision::NeedsApproval {
            approvers,
            window_secs,
        } => {
            let pending = crate::reviews::pending_for(&shared, &principal.name, &name).await?;
            json!({
                "decision": "approval_required",
                "approvers": approvers,
                "window_secs": window_secs,
                "pending_review": pending.map(|r| r.id),
            })
        }
    };
    Ok(Json(answer))
}
