//! Versioned documents on Postgres: compare-and-set by `version` in one statement.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::backend;
use crate::cas::{lost_write, missed_delete};
use crate::model::{Document, now_ms, validate_document_key};
use crate::{StoreError, StoreResult};

fn from_row(row: &PgRow) -> StoreResult<Document> {
    let body: &str = row.get("body");
    Ok(Document {
        kind: row.get("kind"),
        key: row.get("doc_key"),
        version: row.get::<i64, _>("version") as u64,
        body: serde_json::from_str(body).map_err(|e| StoreError::Invalid {
            field: "document body",
            reason: e.to_string(),
        })?,
        updated_at_ms: row.get("updated_at_ms"),
    })
}

fn version_param(expected: u64) -> StoreResult<i64> {
    i64::try_from(expected).map_err(|_| StoreError::Invalid {
        field: "document version",
        reason: format!("{expected} is out of range"),
    })
}

pub(super) async fn get(pool: &PgPool, kind: &str, key: &str) -> StoreResult<Option<Document>> {
    sqlx::query("SELECT * FROM documents WHERE kind = $1 AND doc_key = $2")
        .bind(kind)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub(super) async fn list(pool: &PgPool, kind: &str) -> StoreResult<Vec<Document>> {
    sqlx::query("SELECT * FROM documents WHERE kind = $1 ORDER BY doc_key COLLATE \"C\"")
        .bind(kind)
        .fetch_all(pool)
        .await
        .map_err(backend)?
        .iter()
        .map(from_row)
        .collect()
}

async fn conflict(pool: &PgPool, kind: &str, key: &str, expected: u64) -> StoreError {
    lost_write(kind, key, expected, get(pool, kind, key).await)
}

pub(super) async fn put(
    pool: &PgPool,
    kind: &str,
    key: &str,
    body: &serde_json::Value,
    expected: u64,
) -> StoreResult<u64> {
    validate_document_key("document kind", kind)?;
    validate_document_key("document key", key)?;
    let body = body.to_string();
    let done = if expected == 0 {
        sqlx::query(
            "INSERT INTO documents (kind, doc_key, version, body, updated_at_ms) \
             VALUES ($1, $2, 1, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(kind)
        .bind(key)
        .bind(&body)
        .bind(now_ms())
        .execute(pool)
        .await
    } else {
        sqlx::query(
            "UPDATE documents SET version = version + 1, body = $1, updated_at_ms = $2 \
             WHERE kind = $3 AND doc_key = $4 AND version = $5",
        )
        .bind(&body)
        .bind(now_ms())
        .bind(kind)
        .bind(key)
        .bind(version_param(expected)?)
        .execute(pool)
        .await
    }
    .map_err(backend)?;
    if done.rows_affected() == 1 {
        Ok(expected + 1)
    } else {
        Err(conflict(pool, kind, key, expected).await)
    }
}

pub(super) async fn delete(
    pool: &PgPool,
    kind: &str,
    key: &str,
    expected: u64,
) -> StoreResult<bool> {
    let done =
        sqlx::query("DELETE FROM documents WHERE kind = $1 AND doc_key = $2 AND version = $3")
            .bind(kind)
            .bind(key)
            .bind(version_param(expected)?)
            .execute(pool)
            .await
            .map_err(backend)?;
    if done.rows_affected() == 1 {
        return Ok(true);
    }
    missed_delete(kind, key, expected, get(pool, kind, key).await?)
}
