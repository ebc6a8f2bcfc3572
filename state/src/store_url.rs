//! Choosing the policy store and audit sink by one string, as the gateway's
//! `POSTERN_POLICY_STORE` does: `sqlite:PATH`, `postgres://…` (or
//! `postgresql://…`), or `dynamodb://TABLE[?region=…][&endpoint=…][&create_table=true]`
//! (the region defaulting to `AWS_REGION`, then `AWS_DEFAULT_REGION`).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::dynamodb::credentials::{EnvLookup, process_env};
use crate::dynamodb::{DynamoConfig, DynamoStore};
use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::{AuditSink, PolicyStore, StoreResult};

/// A parsed store location. `Debug` hides a Postgres password.
#[derive(Clone)]
pub enum PolicyStoreUrl {
    Sqlite(PathBuf),
    Postgres(String),
    DynamoDb(DynamoConfig),
}

/// One opened store, as both of its roles.
#[derive(Clone)]
pub struct OpenStore {
    pub policy: Arc<dyn PolicyStore>,
    pub audit: Arc<dyn AuditSink>,
}

fn both<T: PolicyStore + AuditSink>(store: T) -> OpenStore {
    let store = Arc::new(store);
    OpenStore {
        policy: store.clone(),
        audit: store,
    }
}

impl PolicyStoreUrl {
    /// Parses without connecting; the error says what is wrong, never echoing
    /// a Postgres URL (it may hold a password). A DynamoDB URL without a
    /// region takes the process environment's `AWS_REGION`/`AWS_DEFAULT_REGION`.
    pub fn parse(value: &str) -> Result<Self, String> {
        Self::parse_with_env(value, &process_env)
    }

    /// [`PolicyStoreUrl::parse`] with the region fallback read from `env`.
    pub fn parse_with_env(value: &str, env: EnvLookup<'_>) -> Result<Self, String> {
        if let Some(path) = value.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("sqlite: needs a path (sqlite:/var/lib/postern/postern.db)".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            sqlx::postgres::PgConnectOptions::from_str(value)
                .map_err(|e| format!("not a valid postgres:// URL: {e}"))?;
            return Ok(Self::Postgres(value.to_owned()));
        }
        if value.starts_with("dynamodb://") {
            return DynamoConfig::from_url_with_env(value, env)
                .map(Self::DynamoDb)
                .map_err(|e| e.to_string());
        }
        Err(
            "expected sqlite:PATH, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE or \
             dynamodb://TABLE[?region=REGION][&endpoint=URL][&create_table=true]"
                .into(),
        )
    }

    /// Connects (migrating, or creating the table when asked to).
    pub async fn open(&self) -> StoreResult<OpenStore> {
        Ok(match self {
            Self::Sqlite(path) => both(SqliteStore::open(path).await?),
            Self::Postgres(url) => both(PostgresStore::connect(url).await?),
            Self::DynamoDb(config) => both(DynamoStore::connect(config.clone()).await?),
        })
    }
}

impl std::fmt::Debug for PolicyStoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(url) => {
                let shown = match url::Url::parse(url) {
                    Ok(mut parsed) => {
                        if parsed.password().is_some() {
                            let _ = parsed.set_password(Some("redacted"));
                        }
                        parsed.to_string()
                    }
                    Err(_) => "<unparsed>".into(),
                };
                f.debug_tuple("Postgres").field(&shown).finish()
            }
            Self::DynamoDb(config) => f.debug_tuple("DynamoDb").field(config).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_store_and_bad_ones_say_why() {
        assert!(matches!(
            PolicyStoreUrl::parse("sqlite:/var/lib/postern.db"),
            Ok(PolicyStoreUrl::Sqlite(p)) if p == std::path::Path::new("/var/lib/postern.db")
        ));
        let pg =
            PolicyStoreUrl::parse("postgres://postern:hunter2@db.internal:5432/postern").unwrap();
        let debug = format!("{pg:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("db.internal"),
            "{debug}"
        );
        assert!(matches!(
            PolicyStoreUrl::parse("dynamodb://postern?region=eu-west-1&create_table=true"),
            Ok(PolicyStoreUrl::DynamoDb(c)) if c.table == "postern" && c.create_table
        ));
        let ecs = |name: &str| (name == "AWS_REGION").then(|| "eu-north-1".to_owned());
        assert!(matches!(
            PolicyStoreUrl::parse_with_env("dynamodb://postern", &ecs),
            Ok(PolicyStoreUrl::DynamoDb(c)) if c.region == "eu-north-1"
        ));
        for (value, why) in [
            ("sqlite:", "needs a path"),
            ("mysql://x", "expected sqlite:PATH"),
            (
                "postgres://u:hunter2@h:port/d",
                "not a valid postgres:// URL",
            ),
            ("dynamodb://postern", "region is required"),
        ] {
            let err = PolicyStoreUrl::parse_with_env(value, &|_| None).unwrap_err();
            assert!(err.contains(why), "{value}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
