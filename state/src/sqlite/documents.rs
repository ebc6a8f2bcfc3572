//! Versioned documents on SQLite: compare-and-set by `version` in one statement.

use sqlx::{Row, SqlitePool};

use super::{backend, is_unique_violation};
use crate::cas::{lost_write, missed_delete};
use crate::model::{Document, now_ms, validate_document_key};
use crate::{StoreError, StoreResult};

fn from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Document> {
    let body: &str = row.get("body");
    Ok(Document {
        kind: row.get("kind"),
        key: row.get("key"),
        version: row.get::<i64, _>("version") as u64,
        body: serde_json::from_str(body).map_err(|e| StoreError::Invalid {
            field: "document body",
            reason: e.to_string(),
        })?,
        updated_at_ms: row.get("updated_at_ms"),
    })
}

pub(super) async fn get(pool: &SqlitePool, kind: &str, key: &str) -> StoreResult<Option<Document>> {
    sqlx::query("SELECT * FROM documents WHERE kind = ? AND key = ?")
        .bind(kind)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub(super) async fn list(pool: &SqlitePool, kind: &str) -> StoreResult<Vec<Document>> {
    sqlx::query("SELECT * FROM documents WHERE kind = ? ORDER BY key")
        .bind(kind)
        .fetch_all(pool)
        .await
        .map_err(backend)?
        .iter()
        .map(from_row)
        .collect()
}

async fn conflict(pool: &SqlitePool, kind: &str, key: &str, expected: u64) -> StoreError {
    lost_write(kind, key, expected, get(pool, kind, key).await)
}

pub(super) async fn put(
    pool: &SqlitePool,
    kind: &str,
    key: &str,
    body: &serde_json::Value,
    expected: u64,
) -> StoreResult<u64> {
    validate_document_key("document kind", kind)?;
    validate_document_key("document key", key)?;
    let body = body.to_string();
    let result = if expected == 0 {
        sqlx::query(
            "INSERT INTO documents (kind, key, version, body, updated_at_ms) VALUES (?, ?, 1, ?, ?)",
        )
        .bind(kind)
        .bind(key)
        .bind(&body)
        .bind(now_ms())
        .execute(pool)
        .await
    } else {
        sqlx::query(
            "UPDATE documents SET version = version + 1, body = ?, updated_at_ms = ? \
             WHERE kind = ? AND key = ? AND version = ?",
        )
        .bind(&body)
        .bind(now_ms())
        .bind(kind)
        .bind(key)
        .bind(expected as i64)
        .execute(pool)
        .await
    };
    match result {
        Ok(done) if done.rows_affected() == 1 => Ok(expected + 1),
        Ok(_) => Err(conflict(pool, kind, key, expected).await),
        Err(e) if is_unique_violation(&e) => Err(conflict(pool, kind, key, expected).await),
        Err(e) => Err(backend(e)),
    }
}

pub(super) async fn delete(
    pool: &SqlitePool,
    kind: &str,
    key: &str,
    expected: u64,
) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM documents WHERE kind = ? AND key = ? AND version = ?")
        .bind(kind)
        .bind(key)
        .bind(expected as i64)
        .execute(pool)
        .await
        .map_err(backend)?;
    if done.rows_affected() == 1 {
        return Ok(true);
    }
    missed_delete(kind, key, expected, get(pool, kind, key).await?)
}
