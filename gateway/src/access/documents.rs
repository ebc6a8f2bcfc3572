//! Access records as versioned store documents: typed reads and
//! compare-and-set writes, and the snapshot decisions are made over.

use postern_state::{PolicyStore, StoreError, StoreResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{AccessRule, ConnectionAccess, Grant, PolicySnapshot};

/// Document kinds, one per record type.
pub const RULE: &str = "access_rule";
pub const CONNECTION_ACCESS: &str = "connection_access";
pub const REVIEW: &str = "review";
/// Keyed by the review that granted it.
pub const GRANT: &str = "grant";

/// A record and the version it was read at (write it back with that version).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

fn decode<T: DeserializeOwned>(kind: &str, body: serde_json::Value) -> StoreResult<T> {
    serde_json::from_value(body).map_err(|e| StoreError::Invalid {
        field: "policy document",
        reason: format!("{kind}: {e}"),
    })
}

pub async fn get<T: DeserializeOwned>(
    store: &dyn PolicyStore,
    kind: &str,
    key: &str,
) -> StoreResult<Option<Versioned<T>>> {
    store
        .document(kind, key)
        .await?
        .map(|doc| {
            Ok(Versioned {
                value: decode(kind, doc.body)?,
                version: doc.version,
            })
        })
        .transpose()
}

pub async fn list<T: DeserializeOwned>(
    store: &dyn PolicyStore,
    kind: &str,
) -> StoreResult<Vec<Versioned<T>>> {
    store
        .documents(kind)
        .await?
        .into_iter()
        .map(|doc| {
            Ok(Versioned {
                value: decode(kind, doc.body)?,
                version: doc.version,
            })
        })
        .collect()
}

/// Writes `value` if the stored one is still at `expected` (0: new).
pub async fn put<T: Serialize>(
    store: &dyn PolicyStore,
    kind: &str,
    key: &str,
    value: &T,
    expected: u64,
) -> StoreResult<u64> {
    let body = serde_json::to_value(value).map_err(|e| StoreError::Invalid {
        field: "policy document",
        reason: e.to_string(),
    })?;
    store.put_document(kind, key, &body, expected).await
}

/// Creates or replaces a rule whatever its version (bootstrap and tests;
/// admins go through the API, which compares versions).
pub async fn replace_rule(store: &dyn PolicyStore, rule: &AccessRule) -> StoreResult<u64> {
    let current = store
        .document(RULE, &rule.name)
        .await?
        .map_or(0, |d| d.version);
    put(store, RULE, &rule.name, rule, current).await
}

/// Everything access decisions read, in three queries. Expired grants are
/// left out.
pub async fn load_snapshot(store: &dyn PolicyStore, now_ms: i64) -> StoreResult<PolicySnapshot> {
    let (rules, access, grants) = futures::try_join!(
        list::<AccessRule>(store, RULE),
        store.documents(CONNECTION_ACCESS),
        list::<Grant>(store, GRANT),
    )?;
    let access = access
        .into_iter()
        .map(|doc| {
            Ok((
                doc.key,
                decode::<ConnectionAccess>(CONNECTION_ACCESS, doc.body)?,
            ))
        })
        .collect::<StoreResult<_>>()?;
    Ok(PolicySnapshot {
        rules: rules.into_iter().map(|r| r.value).collect(),
        access,
        grants: grants
            .into_iter()
            .map(|g| g.value)
            .filter(|g| g.expires_at_ms > now_ms)
            .collect(),
    })
}
