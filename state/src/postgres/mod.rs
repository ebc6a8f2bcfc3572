//! Postgres policy store and audit sink (sqlx), migrated at start; see
//! [`schema`] for the tables and how concurrent replicas migrate safely.
//!
//! Open it with a `postgres://user:password@host:port/database?sslmode=...` URL
//! (TLS through rustls when `sslmode` asks for it). The URL may hold a
//! password: it is never logged, and the store keeps no copy of it.

mod documents;
mod nodelay;
mod schema;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

use crate::model::*;
use crate::{AuditSink, PolicyStore, StoreError, StoreResult, sql_audit};

pub struct PostgresStore {
    pool: PgPool,
    /// Carries TLS connections with TCP_NODELAY (see [`nodelay`]); lives as
    /// long as the pool.
    _relay: Option<nodelay::NodelayRelay>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// How long a call waits for a pooled connection (or a new one) before the
/// store counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLSTATE classes and codes that mean "the server cannot serve us right now"
/// rather than "this query is wrong": connection exceptions (08), operator
/// intervention (57P01-57P03: shutdown, crash, not yet accepting) and too many
/// connections (53300).
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

pub(crate) fn backend(err: sqlx::Error) -> StoreError {
    let unavailable = match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_unavailable_code(&c)),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(err))
    } else {
        StoreError::Backend(Box::new(err))
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn insert_error(kind: &'static str, name: &str) -> impl FnOnce(sqlx::Error) -> StoreError {
    let name = name.to_owned();
    move |err| {
        if is_unique_violation(&err) {
            StoreError::AlreadyExists { kind, name }
        } else {
            backend(err)
        }
    }
}

/// A URL that does not parse, without echoing it (it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("not a valid postgres:// URL: {0}")]
struct BadUrl(String);

impl PostgresStore {
    /// Connects to `url` and migrates the database. A bad URL is
    /// [`StoreError::Invalid`]; a server that cannot be reached, `Unavailable`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Invalid {
            field: "postgres URL",
            // sqlx's messages name the part that is wrong, not the password.
            reason: BadUrl(e.to_string()).to_string(),
        })?;
        Self::connect_with(options, 8).await
    }

    /// Connects with explicit options and up to `connections` pooled connections.
    pub async fn connect_with(options: PgConnectOptions, connections: u32) -> StoreResult<Self> {
        let options = options.application_name("postern-gateway");
        let (options, relay) =
            nodelay::NodelayRelay::wrap(options).map_err(|e| StoreError::Unavailable(e.into()))?;
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| match relay.as_ref().and_then(|r| r.take_error()) {
                // The relay's dial failed: its error, not sqlx's "broken pipe".
                Some(dial) => StoreError::Unavailable(Box::new(dial)),
                None => backend(e),
            })?;
        schema::migrate(&pool).await?;
        Ok(Self {
            pool,
            _relay: relay,
        })
    }

    /// The schema version the database is at (the number of migrations applied).
    pub async fn schema_version(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query("SELECT COALESCE(MAX(version), 0) FROM postern_schema")
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?
                .get(0),
        )
    }

    /// How many migrations this build knows.
    pub fn latest_schema_version() -> i64 {
        schema::MIGRATIONS.len() as i64
    }
}

fn parse_field<T: FromStr<Err = String>>(field: &'static str, value: &str) -> StoreResult<T> {
    value
        .parse()
        .map_err(|reason| StoreError::Invalid { field, reason })
}

fn connection_from_row(row: &PgRow) -> StoreResult<Connection> {
    let policy = row
        .get::<Option<&str>, _>("policy_json")
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StoreError::Invalid {
            field: "connection policy",
            reason: e.to_string(),
        })?;
    Ok(Connection {
        name: row.get("name"),
        kind: parse_field("connection kind", row.get::<&str, _>("kind"))?,
        target: row.get("target"),
        agent: row.get("agent"),
        created_at_ms: row.get("created_at_ms"),
        database: row.get("database_name"),
        credential: row.get("credential"),
        tls: row.get("tls"),
        policy,
    })
}

fn agent_from_row(row: &PgRow) -> Agent {
    Agent {
        name: row.get("name"),
        token_hash: row.get("token_hash"),
        created_at_ms: row.get("created_at_ms"),
    }
}

fn user_token_from_row(row: &PgRow) -> StoreResult<UserToken> {
    Ok(UserToken {
        user: row.get("user_name"),
        token_hash: row.get("token_hash"),
        role: parse_field("role", row.get::<&str, _>("role"))?,
        created_at_ms: row.get("created_at_ms"),
        groups: groups_from_json(row.get("groups_json"))?,
    })
}

fn session_from_row(row: &PgRow) -> SessionRecord {
    SessionRecord {
        id: row.get("id"),
        user: row.get("user_name"),
        connection: row.get("connection"),
        agent: row.get("agent"),
        replica: row.get("replica"),
        started_at_ms: row.get("started_at_ms"),
        ended_at_ms: row.get("ended_at_ms"),
        bytes_up: row.get::<i64, _>("bytes_up") as u64,
        bytes_down: row.get::<i64, _>("bytes_down") as u64,
        outcome: row.get("outcome"),
    }
}

/// Counters are u64 in the model and BIGINT in Postgres.
fn as_bigint(field: &'static str, value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Invalid {
        field,
        reason: format!("{value} is too large"),
    })
}

#[async_trait]
impl PolicyStore for PostgresStore {
    async fn create_connection(&self, c: &Connection) -> StoreResult<()> {
        validate_name("connection name", &c.name)?;
        validate_name("agent name", &c.agent)?;
        let policy = c.policy.as_ref().map(|p| p.to_string());
        sqlx::query(
            "INSERT INTO connections (name, kind, target, agent, created_at_ms, database_name, credential, tls, policy_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.name)
        .bind(c.kind.as_str())
        .bind(&c.target)
        .bind(&c.agent)
        .bind(c.created_at_ms)
        .bind(&c.database)
        .bind(&c.credential)
        .bind(&c.tls)
        .bind(policy)
        .execute(&self.pool)
        .await
        .map_err(insert_error("connection", &c.name))?;
        Ok(())
    }

    async fn connection(&self, name: &str) -> StoreResult<Option<Connection>> {
        sqlx::query("SELECT * FROM connections WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(connection_from_row)
            .transpose()
    }

    async fn connections(&self) -> StoreResult<Vec<Connection>> {
        sqlx::query("SELECT * FROM connections ORDER BY name COLLATE \"C\"")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(connection_from_row)
            .collect()
    }

    async fn delete_connection(&self, name: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM connections WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(result.rows_affected() > 0)
    }

    async fn create_agent(&self, agent: &Agent) -> StoreResult<()> {
        validate_name("agent name", &agent.name)?;
        sqlx::query("INSERT INTO agents (name, token_hash, created_at_ms) VALUES ($1, $2, $3)")
            .bind(&agent.name)
            .bind(&agent.token_hash)
            .bind(agent.created_at_ms)
            .execute(&self.pool)
            .await
            .map_err(insert_error("agent", &agent.name))?;
        Ok(())
    }

    async fn agent_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<Agent>> {
        Ok(sqlx::query("SELECT * FROM agents WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(agent_from_row))
    }

    async fn agents(&self) -> StoreResult<Vec<Agent>> {
        Ok(
            sqlx::query("SELECT * FROM agents ORDER BY name COLLATE \"C\"")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?
                .iter()
                .map(agent_from_row)
                .collect(),
        )
    }

    async fn delete_agent(&self, name: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM agents WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(result.rows_affected() > 0)
    }

    async fn create_user_token(&self, token: &UserToken) -> StoreResult<()> {
        validate_name("user name", &token.user)?;
        sqlx::query(
            "INSERT INTO user_tokens (token_hash, user_name, role, created_at_ms, groups_json) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.token_hash)
        .bind(&token.user)
        .bind(token.role.as_str())
        .bind(token.created_at_ms)
        .bind(groups_to_json(&token.groups)?)
        .execute(&self.pool)
        .await
        .map_err(insert_error("token", &token.user))?;
        Ok(())
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<UserToken>> {
        sqlx::query("SELECT * FROM user_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(user_token_from_row)
            .transpose()
    }

    async fn user_tokens(&self) -> StoreResult<Vec<UserToken>> {
        sqlx::query(
            "SELECT * FROM user_tokens ORDER BY user_name COLLATE \"C\", created_at_ms, token_hash",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(user_token_from_row)
        .collect()
    }

    async fn record_session_start(&self, s: &SessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user_name, connection, agent, replica, started_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.user)
        .bind(&s.connection)
        .bind(&s.agent)
        .bind(&s.replica)
        .bind(s.started_at_ms)
        .execute(&self.pool)
        .await
        .map_err(insert_error("session", &s.id))?;
        Ok(())
    }

    async fn record_session_end(&self, end: &SessionEnd) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sessions SET ended_at_ms = $1, bytes_up = $2, bytes_down = $3, outcome = $4 WHERE id = $5",
        )
        .bind(end.ended_at_ms)
        .bind(as_bigint("bytes_up", end.bytes_up)?)
        .bind(as_bigint("bytes_down", end.bytes_down)?)
        .bind(&end.outcome)
        .bind(&end.id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn sessions(&self, limit: u32) -> StoreResult<Vec<SessionRecord>> {
        Ok(
            sqlx::query("SELECT * FROM sessions ORDER BY started_at_ms DESC, id LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?
                .iter()
                .map(session_from_row)
                .collect(),
        )
    }

    async fn document(&self, kind: &str, key: &str) -> StoreResult<Option<Document>> {
        documents::get(&self.pool, kind, key).await
    }

    async fn documents(&self, kind: &str) -> StoreResult<Vec<Document>> {
        documents::list(&self.pool, kind).await
    }

    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        body: &serde_json::Value,
        expected: u64,
    ) -> StoreResult<u64> {
        documents::put(&self.pool, kind, key, body, expected).await
    }

    async fn delete_document(&self, kind: &str, key: &str, expected: u64) -> StoreResult<bool> {
        documents::delete(&self.pool, kind, key, expected).await
    }
}

#[async_trait]
impl AuditSink for PostgresStore {
    async fn record(&self, e: &AuditEvent) -> StoreResult<()> {
        sql_audit::insert::<sqlx::Postgres>(std::slice::from_ref(e))
            .build()
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// One transaction (one commit) for the whole batch.
    async fn record_batch(&self, events: &[AuditEvent]) -> StoreResult<()> {
        sql_audit::write_batch(&self.pool, events)
            .await
            .map_err(backend)
    }

    async fn events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        // Unset filters match everything; the prefix is compared as text, not
        // as a LIKE pattern, so `_` and `%` in it are literal.
        Ok(sqlx::query(
            "SELECT * FROM audit_events \
             WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR session_id = $2) \
             AND ($3::text IS NULL OR target = $3) \
             AND ($4::text IS NULL OR left(action, length($4)) = $4) \
             AND ($6::bigint IS NULL OR at_ms >= $6) AND ($7::bigint IS NULL OR at_ms < $7) \
             ORDER BY seq DESC LIMIT $5",
        )
        .bind(&query.actor)
        .bind(&query.session_id)
        .bind(&query.target)
        .bind(&query.action_prefix)
        .bind(i64::from(query.limit))
        .bind(query.since_ms)
        .bind(query.until_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(|row| AuditEvent {
            at_ms: row.get("at_ms"),
            actor: row.get("actor"),
            action: row.get("action"),
            target: row.get("target"),
            outcome: row.get("outcome"),
            detail: row.get("detail"),
            session_id: row.get("session_id"),
        })
        .collect())
    }
}
