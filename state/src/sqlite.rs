//! Embedded SQLite policy store and audit sink, created and migrated on open.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::model::*;
use crate::{AuditSink, PolicyStore, StoreError, StoreResult};

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
    Ok(Connection {
        name: row.get("name"),
        kind: parse_field("connection kind", row.get::<&str, _>("kind"))?,
        target: row.get("target"),
        agent: row.get("agent"),
        created_at_ms: row.get("created_at_ms"),
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
        sqlx::query(
            "INSERT INTO connections (name, kind, target, agent, created_at_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&c.name)
        .bind(c.kind.as_str())
        .bind(&c.target)
        .bind(&c.agent)
        .bind(c.created_at_ms)
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
            "INSERT INTO user_tokens (token_hash, user, role, created_at_ms) VALUES (?, ?, ?, ?)",
        )
        .bind(&token.token_hash)
        .bind(&token.user)
        .bind(token.role.as_str())
        .bind(token.created_at_ms)
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
}

#[async_trait]
impl AuditSink for SqliteStore {
    async fn record(&self, e: &AuditEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_events (at_ms, actor, action, target, outcome, detail, session_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.outcome)
        .bind(&e.detail)
        .bind(&e.session_id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
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
             ORDER BY seq DESC LIMIT ?5",
        )
        .bind(&query.actor)
        .bind(&query.session_id)
        .bind(&query.target)
        .bind(prefix)
        .bind(query.limit as i64)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(name: &str) -> Connection {
        Connection {
            name: name.into(),
            kind: ConnectionKind::Tcp,
            target: "127.0.0.1:5432".into(),
            agent: "agent-1".into(),
            created_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn connections_crud_and_duplicates() {
        let store = SqliteStore::in_memory().await.unwrap();
        store.create_connection(&connection("pg")).await.unwrap();
        let err = store
            .create_connection(&connection("pg"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::AlreadyExists {
                    kind: "connection",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            store.connection("pg").await.unwrap(),
            Some(connection("pg"))
        );
        assert_eq!(store.connections().await.unwrap().len(), 1);
        assert!(store.delete_connection("pg").await.unwrap());
        assert!(!store.delete_connection("pg").await.unwrap());
        assert_eq!(store.connection("pg").await.unwrap(), None);
        let err = store
            .create_connection(&connection("bad name"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("connection name"), "{err}");
    }

    #[tokio::test]
    async fn agents_and_tokens_are_found_by_hash_only() {
        let store = SqliteStore::in_memory().await.unwrap();
        let agent = Agent {
            name: "a1".into(),
            token_hash: "h1".into(),
            created_at_ms: 1,
        };
        store.create_agent(&agent).await.unwrap();
        assert!(store.create_agent(&agent).await.is_err());
        assert_eq!(store.agent_by_token_hash("h1").await.unwrap(), Some(agent));
        assert_eq!(store.agent_by_token_hash("h2").await.unwrap(), None);
        let token = UserToken {
            user: "alice".into(),
            token_hash: "u1".into(),
            role: Role::Admin,
            created_at_ms: 2,
        };
        store.create_user_token(&token).await.unwrap();
        assert_eq!(store.user_by_token_hash("u1").await.unwrap(), Some(token));
        assert_eq!(store.user_tokens().await.unwrap().len(), 1);
        assert!(store.delete_agent("a1").await.unwrap());
    }

    #[tokio::test]
    async fn sessions_and_audit_are_recorded() {
        let store = SqliteStore::in_memory().await.unwrap();
        let record = SessionRecord {
            id: "s1".into(),
            user: "alice".into(),
            connection: "pg".into(),
            agent: "a1".into(),
            replica: "r1".into(),
            started_at_ms: 10,
            ended_at_ms: None,
            bytes_up: 0,
            bytes_down: 0,
            outcome: None,
        };
        store.record_session_start(&record).await.unwrap();
        store
            .record_session_end(&SessionEnd {
                id: "s1".into(),
                ended_at_ms: 20,
                bytes_up: 5,
                bytes_down: 7,
                outcome: "ok".into(),
            })
            .await
            .unwrap();
        let sessions = store.sessions(10).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(
            (
                sessions[0].bytes_up,
                sessions[0].bytes_down,
                sessions[0].outcome.as_deref()
            ),
            (5, 7, Some("ok"))
        );
        let event = AuditEvent {
            at_ms: 1,
            actor: "alice".into(),
            action: "connection.create".into(),
            target: "pg".into(),
            outcome: "ok".into(),
            detail: String::new(),
            session_id: None,
        };
        store.record(&event).await.unwrap();
        let all = |limit| AuditQuery {
            limit,
            ..AuditQuery::default()
        };
        assert_eq!(store.events(&all(5)).await.unwrap(), vec![event.clone()]);

        let statement = |actor: &str, session: &str, n: i64| AuditEvent {
            at_ms: n,
            actor: actor.into(),
            action: "sql.statement".into(),
            target: "pg".into(),
            outcome: "ok".into(),
            detail: format!("statement {n}"),
            session_id: Some(session.into()),
        };
        for (n, (actor, session)) in [
            ("alice", "s1"),
            ("bob", "s2"),
            ("alice", "s1"),
            ("alice", "s3"),
        ]
        .into_iter()
        .enumerate()
        {
            store
                .record(&statement(actor, session, n as i64 + 2))
                .await
                .unwrap();
        }
        let details = |events: Vec<AuditEvent>| -> Vec<String> {
            events.into_iter().map(|e| e.detail).collect()
        };
        let cases: Vec<(AuditQuery, Vec<&str>)> = vec![
            (
                AuditQuery {
                    session_id: Some("s1".into()),
                    limit: 10,
                    ..AuditQuery::default()
                },
                vec!["statement 4", "statement 2"],
            ),
            (
                AuditQuery {
                    actor: Some("alice".into()),
                    action_prefix: Some("sql.".into()),
                    limit: 10,
                    ..AuditQuery::default()
                },
                vec!["statement 5", "statement 4", "statement 2"],
            ),
            (
                AuditQuery {
                    actor: Some("alice".into()),
                    limit: 10,
                    ..AuditQuery::default()
                },
                vec!["statement 5", "statement 4", "statement 2", ""],
            ),
            (
                AuditQuery {
                    action_prefix: Some("sql_".into()),
                    limit: 10,
                    ..AuditQuery::default()
                },
                vec![],
            ),
            (
                AuditQuery {
                    target: Some("pg".into()),
                    limit: 2,
                    ..AuditQuery::default()
                },
                vec!["statement 5", "statement 4"],
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(
                details(store.events(&query).await.unwrap()),
                expected,
                "{query:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_file_database_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("postern.db");
        {
            let store = SqliteStore::open(&path).await.unwrap();
            store.create_connection(&connection("pg")).await.unwrap();
        }
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.connections().await.unwrap(), vec![connection("pg")]);
    }
}
