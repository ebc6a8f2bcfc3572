//! Embedded SQLite policy store and audit sink, created and migrated on open.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::model::*;
use crate::{AuditSink, PolicyStore, StoreError, StoreResult, sql_audit};

/// Schema migrations, applied in order; an applied one is never edited, only followed.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE connections (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    agent TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE user_tokens (
    token_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    connection TEXT NOT NULL,
    agent TEXT NOT NULL,
    replica TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    bytes_up INTEGER NOT NULL DEFAULT 0,
    bytes_down INTEGER NOT NULL DEFAULT 0,
    outcome TEXT
);
CREATE INDEX sessions_by_start ON sessions (started_at_ms DESC);
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE audit_events ADD COLUMN session_id TEXT;
CREATE INDEX audit_by_session ON audit_events (session_id, seq);
CREATE INDEX audit_by_actor ON audit_events (actor, seq);
"#,
    // Layer 7 settings of protocol-aware connections; NULL on tcp ones.
    r#"
ALTER TABLE connections ADD COLUMN database_name TEXT;
ALTER TABLE connections ADD COLUMN credential TEXT;
ALTER TABLE connections ADD COLUMN tls TEXT;
ALTER TABLE connections ADD COLUMN policy_json TEXT;
"#,
    // Groups on API tokens; versioned policy documents; audit by time.
    r#"
ALTER TABLE user_tokens ADD COLUMN groups_json TEXT NOT NULL DEFAULT '[]';
CREATE TABLE documents (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX audit_by_time ON audit_events (at_ms);
"#,
];

pub struct SqliteStore {
    pool: SqlitePool,
}

fn backend(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(err))
        }
        other => StoreError::Backend(Box::new(other)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create {}: {source}", dir.display())]
struct CreateDirError {
    dir: std::path::PathBuf,
    source: std::io::Error,
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| {
                StoreError::Unavailable(Box::new(CreateDirError {
                    dir: parent.to_owned(),
                    source,
                }))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        Self::connect(options, 4).await
    }

    /// A private in-memory database (tests, throwaway runs).
    pub async fn in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(backend)?;
        // One connection: each in-memory connection would otherwise be its own database.
        Self::connect(options, 1).await
    }

    async fn connect(options: SqliteConnectOptions, connections: u32) -> StoreResult<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(backend)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let applied: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?
            .get(0);
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            sqlx::raw_sql(*migration)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(index as i64 + 1)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }
}

fn parse_field<T: FromStr<Err = String>>(field: &'static str, value: &str) -> StoreResult<T> {
    value
        .parse()
        .map_err(|reason| StoreError::Invalid { field, reason })
}

fn connection_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Connection> {
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

fn agent_from_row(row: &sqlx::sqlite::SqliteRow) -> Agent {
    Agent {
        name: row.get("name"),
        token_hash: row.get("token_hash"),
        created_at_ms: row.get("created_at_ms"),
    }
}

fn user_token_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<UserToken> {
    Ok(UserToken {
        user: row.get("user"),
        token_hash: row.get("token_hash"),
        role: parse_field("role", row.get::<&str, _>("role"))?,
        created_at_ms: row.get("created_at_ms"),
        groups: crate::model::groups_from_json(row.get("groups_json"))?,
    })
}

fn session_from_row(row: &sqlx::sqlite::SqliteRow) -> SessionRecord {
    SessionRecord {
        id: row.get("id"),
        user: row.get("user"),
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

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn create_connection(&self, c: &Connection) -> StoreResult<()> {
        validate_name("connection name", &c.name)?;
        validate_name("agent name", &c.agent)?;
        let policy = c.policy.as_ref().map(|p| p.to_string());
        sqlx::query(
            "INSERT INTO connections (name, kind, target, agent, created_at_ms, database_name, credential, tls, policy_json) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists {
                    kind: "connection",
                    name: c.name.clone(),
                }
            } else {
                backend(e)
            }
        })?;
        Ok(())
    }

    async fn connection(&self, name: &str) -> StoreResult<Option<Connection>> {
        sqlx::query("SELECT * FROM connections WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(connection_from_row)
            .transpose()
    }

    async fn connections(&self) -> StoreResult<Vec<Connection>> {
        sqlx::query("SELECT * FROM connections ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(connection_from_row)
            .collect()
    }

    async fn delete_connection(&self, name: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM connections WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(result.rows_affected() > 0)
    }

    async fn create_agent(&self, agent: &Agent) -> StoreResult<()> {
        validate_name("agent name", &agent.name)?;
        sqlx::query("INSERT INTO agents (name, token_hash, created_at_ms) VALUES (?, ?, ?)")
            .bind(&agent.name)
            .bind(&agent.token_hash)
            .bind(agent.created_at_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists {
                        kind: "agent",
                        name: agent.name.clone(),
                    }
                } else {
                    backend(e)
                }
            })?;
        Ok(())
    }

    async fn agent_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<Agent>> {
        Ok(sqlx::query("SELECT * FROM agents WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(agent_from_row))
    }

    async fn agents(&self) -> StoreResult<Vec<Agent>> {
        Ok(sqlx::query("SELECT * FROM agents ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(agent_from_row)
            .collect())
    }

    async fn delete_agent(&self, name: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM agents WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(result.rows_affected() > 0)
    }

    async fn create_user_token(&self, token: &UserToken) -> StoreResult<()> {
        validate_name("user name", &token.user)?;
        sqlx::query(
            "INSERT INTO user_tokens (token_hash, user, role, created_at_ms, groups_json) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&token.token_hash)
        .bind(&token.user)
        .bind(token.role.as_str())
        .bind(token.created_at_ms)
        .bind(crate::model::groups_to_json(&token.groups)?)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists {
                    kind: "token",
                    name: token.user.clone(),
                }
            } else {
                backend(e)
            }
        })?;
        Ok(())
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<UserToken>> {
        sqlx::query("SELECT * FROM user_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(user_token_from_row)
            .transpose()
    }

    async fn user_tokens(&self) -> StoreResult<Vec<UserToken>> {
        sqlx::query("SELECT * FROM user_tokens ORDER BY user, created_at_ms")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(user_token_from_row)
            .collect()
    }

    async fn record_session_start(&self, s: &SessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user, connection, agent, replica, started_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.user)
        .bind(&s.connection)
        .bind(&s.agent)
        .bind(&s.replica)
        .bind(s.started_at_ms)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn record_session_end(&self, end: &SessionEnd) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sessions SET ended_at_ms = ?, bytes_up = ?, bytes_down = ?, outcome = ? WHERE id = ?",
        )
        .bind(end.ended_at_ms)
        .bind(end.bytes_up as i64)
        .bind(end.bytes_down as i64)
        .bind(&end.outcome)
        .bind(&end.id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn sessions(&self, limit: u32) -> StoreResult<Vec<SessionRecord>> {
        Ok(
            sqlx::query("SELECT * FROM sessions ORDER BY started_at_ms DESC, id LIMIT ?")
                .bind(limit as i64)
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
impl AuditSink for SqliteStore {
    async fn record(&self, e: &AuditEvent) -> StoreResult<()> {
        sql_audit::insert::<sqlx::Sqlite>(std::slice::from_ref(e))
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
        // Unset filters match everything: `? IS NULL OR column = ?`.
        let prefix = query.action_prefix.as_ref().map(|p| {
            format!(
                "{}%",
                p.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        });
        Ok(sqlx::query(
            "SELECT * FROM audit_events \
             WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR session_id = ?2) \
             AND (?3 IS NULL OR target = ?3) AND (?4 IS NULL OR action LIKE ?4 ESCAPE '\\') \
             AND (?6 IS NULL OR at_ms >= ?6) AND (?7 IS NULL OR at_ms < ?7) \
             ORDER BY seq DESC LIMIT ?5",
        )
        .bind(&query.actor)
        .bind(&query.session_id)
        .bind(&query.target)
        .bind(prefix)
        .bind(query.limit as i64)
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

mod documents;
#[cfg(test)]
mod tests;
