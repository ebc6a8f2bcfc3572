//! The Postgres schema: migrations applied in order at start, each recorded in
//! `postern_schema`. An applied migration is never edited, only followed.
//!
//! Replicas starting at once serialise on a transaction-scoped advisory lock,
//! so each migration runs exactly once and a replica that waited sees the
//! others' work; the lock goes with the transaction, even if the replica dies.

use sqlx::{PgPool, Row};

use super::backend;
use crate::StoreResult;

/// The advisory lock key: "postern" as ASCII, so it stays clear of other users'.
pub(super) const MIGRATION_LOCK: i64 = 0x0070_6f73_7465_726e;

pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE connections (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    agent TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    database_name TEXT,
    credential TEXT,
    tls TEXT,
    policy_json TEXT
);
CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE user_tokens (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    connection TEXT NOT NULL,
    agent TEXT NOT NULL,
    replica TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT,
    bytes_up BIGINT NOT NULL DEFAULT 0,
    bytes_down BIGINT NOT NULL DEFAULT 0,
    outcome TEXT
);
CREATE INDEX sessions_by_start ON sessions (started_at_ms DESC, id);
CREATE TABLE audit_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    session_id TEXT
);
CREATE INDEX audit_by_session ON audit_events (session_id, seq);
CREATE INDEX audit_by_actor ON audit_events (actor, seq);
CREATE INDEX audit_by_target ON audit_events (target, seq);
"#,
    // Groups on API tokens; versioned policy documents; audit by time.
    r#"
ALTER TABLE user_tokens ADD COLUMN groups_json TEXT NOT NULL DEFAULT '[]';
CREATE TABLE documents (
    kind TEXT NOT NULL,
    doc_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, doc_key)
);
CREATE INDEX audit_by_time ON audit_events (at_ms);
"#,
];

/// Applies the migrations this database has not seen yet; returns the schema
/// version it is at afterwards.
pub(super) async fn migrate(pool: &PgPool) -> StoreResult<i64> {
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS postern_schema (\
             version BIGINT PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    let applied: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM postern_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?
        .get(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        sqlx::raw_sql(*migration)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO postern_schema (version) VALUES ($1)")
            .bind(index as i64 + 1)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok((MIGRATIONS.len() as i64).max(applied))
}
