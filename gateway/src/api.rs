//! The HTTP/JSON API on the public port, beside gRPC: health, and admin
//! commands for connections, agents, tokens, sessions and audit.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use postern_state::{Agent, Connection, Role, UserToken, now_ms};

use crate::access::decide::EVERYTHING;
use crate::access::{Action, Principal, decide};
use postern_tunnel::Secret;
use postern_tunnel::auth::{BearerError, TokenKind, generate_token, hash_token, parse_bearer};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::connection_settings::{NewConnection, describe};
use crate::metrics::ErrorKind;
use crate::policy_cache::Health;
use crate::refusal::Refusal;
use crate::shared::Shared;

type ApiResult<T> = Result<T, Refusal>;

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code(), "message": self.message } });
        (self.http_status(), Json(body)).into_response()
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(crate::openapi::openapi))
        .route("/v1/whoami", get(whoami))
        .route(
            "/v1/auth/config",
            get(crate::identity::auth_config::auth_config),
        )
        .route(
            "/v1/connections",
            get(list_connections).post(create_connection),
        )
        .route(
            "/v1/connections/{name}",
            get(show_connection).delete(delete_connection),
        )
        .route("/v1/agents", get(list_agents).post(create_agent))
        .route("/v1/agents/{name}", delete(delete_agent))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/audit", get(list_audit))
        .merge(crate::api_policy::routes())
        .merge(crate::reviews::routes())
        .fallback(not_found)
        .layer(axum::middleware::map_response_with_state(
            shared.clone(),
            crate::api_errors::json_rejections,
        ))
        .with_state(shared)
}

/// Health endpoints and metrics for the internal port.
pub fn internal_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn not_found() -> Refusal {
    Refusal::new(ErrorKind::NotFound, "no such API route")
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready while not draining and the policy cache may decide: fresh, or
/// serving cached policy within POSTERN_POLICY_STALE_LIMIT_MS of the policy
/// store's last answer. A load balancer then stops sending new sessions to a
/// replica that cannot authorise them.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    match shared.policy_cache.health() {
        Health::Fresh => (StatusCode::OK, "ready\n").into_response(),
        Health::Stale { for_ } => (
            StatusCode::OK,
            format!(
                "ready (policy store unreachable for {} s: serving cached policy)\n",
                for_.as_secs()
            ),
        )
            .into_response(),
        Health::Unknown => (
            StatusCode::SERVICE_UNAVAILABLE,
            "policy store unavailable: not read yet\n",
        )
            .into_response(),
        Health::FailedClosed { for_ } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "policy store unavailable for {} s, past POSTERN_POLICY_STALE_LIMIT_MS\n",
                for_.as_secs()
            ),
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    // As of this scrape, not of the last poll.
    let health = shared.policy_cache.health();
    shared.metrics.policy_cache_state.set(health.gauge());
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Result<Secret, BearerError> {
    let value = headers.get("authorization").ok_or(BearerError::Missing)?;
    parse_bearer(value.to_str().map_err(|_| BearerError::Malformed)?)
}

pub(crate) async fn user(shared: &Shared, headers: &HeaderMap) -> ApiResult<Principal> {
    shared.authenticate(bearer(headers)).await
}

/// A caller allowed `action` on `resource` (a connection, or [`EVERYTHING`]).
pub(crate) async fn allowed(
    shared: &Shared,
    headers: &HeaderMap,
    action: Action,
    resource: &str,
) -> ApiResult<Principal> {
    let principal = user(shared, headers).await?;
    shared.authorize(&principal, action, resource).await?;
    Ok(principal)
}

/// Admin of everything: agents, tokens, rules.
async fn admin(shared: &Shared, headers: &HeaderMap) -> ApiResult<Principal> {
    allowed(shared, headers, Action::Admin, EVERYTHING).await
}

async fn whoami(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let user = user(&shared, &headers).await?;
    // `role`: admin or user for API keys, person for identity-provider logins.
    let role = match user.credential {
        crate::access::Credential::ApiKey { admin: true } => "admin",
        crate::access::Credential::ApiKey { admin: false } => "user",
        crate::access::Credential::Oidc { .. } => "person",
    };
    Ok(Json(json!({
        "user": user.name,
        "role": role,
        "groups": user.groups,
        "mfa": user.mfa,
        "credential": user.credential,
        "replica": shared.replica_id,
    })))
}

#[derive(Serialize)]
struct ConnectionView {
    #[serde(flatten)]
    connection: Connection,
    agent_connected: bool,
}

/// A connection is shown to whoever may reach or administer it.
fn may_see(principal: &Principal, name: &str, rules: &[crate::access::AccessRule]) -> bool {
    [Action::Connect, Action::Admin]
        .into_iter()
        .any(|action| decide(principal, action, name, rules).is_allowed())
}

async fn list_connections(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<ConnectionView>>> {
    let principal = user(&shared, &headers).await?;
    let connections = shared.stored(shared.stores.policy.connections().await)?;
    let snapshot = shared.policy_snapshot().await?;
    let visible: Vec<Connection> = connections
        .into_iter()
        .filter(|connection| may_see(&principal, &connection.name, &snapshot.rules))
        .collect();
    let reachable = reachable_agents(&shared, visible.iter().map(|c| c.agent.as_str())).await;
    Ok(Json(
        visible
            .into_iter()
            .map(|connection| ConnectionView {
                agent_connected: reachable.contains(&connection.agent),
                connection,
            })
            .collect(),
    ))
}

async fn show_connection(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    let principal = user(&shared, &headers).await?;
    let snapshot = shared.policy_snapshot().await?;
    if !may_see(&principal, &name, &snapshot.rules) {
        // The same answer as for a connection that does not exist: names are not leaked.
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("connection {name:?} does not exist (see `postern ls`)"),
        )));
    }
    let connection = shared.connection(&name).await?.ok_or_else(|| {
        shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("connection {name:?} does not exist (see `postern ls`)"),
        ))
    })?;
    Ok(Json(ConnectionView {
        agent_connected: shared.agent_reachable(&connection.agent).await,
        connection,
    }))
}

fn validate_target(target: &str) -> ApiResult<()> {
    let valid = target
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if valid {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorKind::BadRequest,
            format!("target {target:?} must be HOST:PORT"),
        ))
    }
}

async fn create_connection(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(new): Json<NewConnection>,
) -> ApiResult<(StatusCode, Json<Connection>)> {
    let admin = allowed(&shared, &headers, Action::Admin, &new.name).await?;
    validate_target(&new.target).map_err(|r| shared.refuse(r))?;
    let connection = new
        .validate(now_ms())
        .map_err(|e| shared.refuse(Refusal::new(ErrorKind::BadRequest, e.to_string())))?;
    shared.stored(shared.stores.policy.create_connection(&connection).await)?;
    shared.policy_changed().await;
    let detail = describe(&connection);
    shared
        .audit(
            &admin.name,
            "connection.create",
            &connection.name,
            "ok",
            detail,
        )
        .await;
    Ok((StatusCode::CREATED, Json(connection)))
}

async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let admin = allowed(&shared, &headers, Action::Admin, &name).await?;
    if !shared.stored(shared.stores.policy.delete_connection(&name).await)? {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("connection {name:?} does not exist"),
        )));
    }
    shared.policy_changed().await;
    shared
        .audit(&admin.name, "connection.delete", &name, "ok", String::new())
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct AgentView {
    #[serde(flatten)]
    agent: Agent,
    connected: bool,
}

async fn list_agents(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<AgentView>>> {
    admin(&shared, &headers).await?;
    let agents = shared.stored(shared.stores.policy.agents().await)?;
    let reachable = reachable_agents(&shared, agents.iter().map(|a| a.name.as_str())).await;
    Ok(Json(
        agents
            .into_iter()
            .map(|agent| AgentView {
                connected: reachable.contains(&agent.name),
                agent,
            })
            .collect(),
    ))
}

/// The agents among `names` that some live replica holds a tunnel of, each
/// looked up once and all at the same time (a list can name many).
async fn reachable_agents<'a>(
    shared: &Shared,
    names: impl Iterator<Item = &'a str>,
) -> std::collections::HashSet<String> {
    let unique: std::collections::BTreeSet<&str> = names.collect();
    let checks = unique
        .into_iter()
        .map(|name| async move { shared.agent_reachable(name).await.then(|| name.to_owned()) });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[derive(Deserialize)]
struct NewAgent {
    name: String,
}

async fn create_agent(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(new): Json<NewAgent>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let admin = admin(&shared, &headers).await?;
    let token = generate_token(TokenKind::Agent);
    let agent = Agent {
        name: new.name,
        token_hash: hash_token(token.expose()),
        created_at_ms: now_ms(),
    };
    shared.stored(shared.stores.policy.create_agent(&agent).await)?;
    shared.policy_changed().await;
    shared
        .audit(
            &admin.name,
            "agent.create",
            &agent.name,
            "ok",
            String::new(),
        )
        .await;
    // The only time the token is ever shown: only its hash is kept.
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": agent.name, "token": token.expose() })),
    ))
}

async fn delete_agent(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let admin = admin(&shared, &headers).await?;
    if !shared.stored(shared.stores.policy.delete_agent(&name).await)? {
        return Err(shared.refuse(Refusal::new(
            ErrorKind::NotFound,
            format!("agent {name:?} does not exist"),
        )));
    }
    shared.policy_changed().await;
    shared
        .audit(&admin.name, "agent.delete", &name, "ok", String::new())
        .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tokens(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<UserToken>>> {
    admin(&shared, &headers).await?;
    Ok(Json(
        shared.stored(shared.stores.policy.user_tokens().await)?,
    ))
}

#[derive(Deserialize)]
struct NewToken {
    user: String,
    #[serde(default = "default_role")]
    role: Role,
    /// Groups for access rules.
    #[serde(default)]
    groups: Vec<String>,
}

fn default_role() -> Role {
    Role::User
}

async fn create_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(new): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let admin = admin(&shared, &headers).await?;
    let token = generate_token(TokenKind::User);
    let record = UserToken {
        user: new.user,
        token_hash: hash_token(token.expose()),
        role: new.role,
        created_at_ms: now_ms(),
        groups: new.groups,
    };
    shared.stored(shared.stores.policy.create_user_token(&record).await)?;
    shared.policy_changed().await;
    shared
        .audit(
            &admin.name,
            "token.create",
            &record.user,
            "ok",
            format!(
                "role={} groups={}",
                record.role.as_str(),
                record.groups.join(",")
            ),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "user": record.user, "role": record.role, "groups": record.groups, "token": token.expose() }),
        ),
    ))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn list_sessions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<Limit>,
) -> ApiResult<Json<serde_json::Value>> {
    allowed(&shared, &headers, Action::AuditRead, EVERYTHING).await?;
    let limit = query.limit.unwrap_or(100).min(10_000);
    let sessions = shared.stored(shared.stores.policy.sessions(limit).await)?;
    Ok(Json(json!(sessions)))
}

/// `GET /v1/audit?user=&session=&connection=&action=&since=&until=&limit=`:
/// each given filter must match; `action` is a prefix (`sql.` for
/// statements); `since` (inclusive) and `until` (exclusive) are Unix ms.
#[derive(Deserialize)]
struct AuditFilter {
    user: Option<String>,
    session: Option<String>,
    connection: Option<String>,
    action: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<u32>,
}

async fn list_audit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(filter): Query<AuditFilter>,
) -> ApiResult<Json<serde_json::Value>> {
    // Audit-read on one connection is enough for that connection's events.
    let resource = filter.connection.as_deref().unwrap_or(EVERYTHING);
    allowed(&shared, &headers, Action::AuditRead, resource).await?;
    let query = postern_state::AuditQuery {
        actor: filter.user,
        session_id: filter.session,
        target: filter.connection,
        action_prefix: filter.action,
        since_ms: filter.since,
        until_ms: filter.until,
        limit: filter.limit.unwrap_or(100).min(10_000),
    };
    let events = shared.stored(shared.stores.audit.events(&query).await)?;
    Ok(Json(json!(events)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_host_and_port() {
        for good in ["db:5432", "10.0.0.1:22", "[::1]:5432"] {
            assert!(validate_target(good).is_ok(), "{good}");
        }
        for bad in ["db", ":5432", "db:0", "db:99999", "db:x"] {
            assert!(validate_target(bad).is_err(), "{bad}");
        }
    }
}
