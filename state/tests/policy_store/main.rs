//! The policy store and audit sink contract on all three adapters, each on a
//! real backend: SQLite in a temporary file, a throwaway database on the local
//! PostgreSQL (`postern_testkit::postgres`), and moto's DynamoDB-API server,
//! started by the test on a free port.

mod concurrency;
mod contract;
mod documents;

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_state::StoreError;
use postern_state::dynamodb::{DynamoConfig, DynamoStore};
use postern_state::postgres::PostgresStore;
use postern_state::sqlite::SqliteStore;
use postern_state::testing::{MotoServer, free_port};
use postern_testkit::postgres::Database;

fn pg_url(db: &Database) -> String {
    format!(
        "postgres://postgres@{}:{}/{}?sslmode=disable",
        db.host, db.port, db.name
    )
}

fn moto_config(moto: &MotoServer, table: &str) -> DynamoConfig {
    let mut config = DynamoConfig::new(table, "us-east-1");
    config.endpoint = Some(moto.endpoint());
    config.create_table = true;
    config.static_credentials("testing", "testing");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("policy.db"))
        .await
        .unwrap();
    contract::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_meets_the_contract() {
    let db = Database::create("policy_contract");
    let store = PostgresStore::connect(&pg_url(&db)).await.unwrap();
    contract::run_all(Arc::new(store)).await;
    // What the store wrote is plain SQL anyone can read.
    assert_eq!(
        db.sql("select count(*) from sessions where outcome like 'outcome-%'")
            .trim(),
        "40"
    );
}

/// Replicas starting at once on a fresh database: every one migrates or
/// waits, each migration runs once, and a later start changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_starting_at_once_migrate_once() {
    let db = Database::create("policy_migrate");
    let url = pg_url(&db);
    let starts = (0..6).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PostgresStore::connect(&url).await })
    });
    let stores: Vec<PostgresStore> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let latest = PostgresStore::latest_schema_version();
    for store in &stores {
        assert_eq!(store.schema_version().await.unwrap(), latest);
    }
    let versions =
        db.sql("select string_agg(version::text, ',' order by version) from postern_schema");
    let expected: Vec<String> = (1..=latest).map(|v| v.to_string()).collect();
    assert_eq!(versions.trim(), expected.join(","));
    drop(stores);
    let again = PostgresStore::connect(&url).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), latest);
    assert_eq!(
        db.sql("select count(*) from postern_schema").trim(),
        latest.to_string()
    );
}

#[tokio::test]
async fn postgres_unreachable_is_unavailable_and_bad_urls_invalid() {
    let started = Instant::now();
    let url = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/postern",
        free_port()
    );
    let err = PostgresStore::connect(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!format!("{err:?}{err}").contains("hunter2"), "{err:?}");

    let err = PostgresStore::connect("postgres://postgres:hunter2@127.0.0.1:port/x")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "postgres URL",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!format!("{err:?}{err}").contains("hunter2"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_meets_the_contract() {
    let moto = MotoServer::start();
    let store = DynamoStore::connect(moto_config(&moto, "postern-contract"))
        .await
        .unwrap();
    contract::run_all(Arc::new(store)).await;
}

/// Replicas starting at once create the table once; without `create_table` a
/// missing table is an error that says what to do; nothing listening is
/// `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_table_creation_and_failures() {
    let moto = MotoServer::start();
    let starts = (0..4).map(|_| {
        let config = moto_config(&moto, "postern-replicas");
        tokio::spawn(async move { DynamoStore::connect(config).await })
    });
    let stores: Vec<DynamoStore> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    use postern_state::PolicyStore;
    stores[0]
        .create_connection(&contract::tcp("shared"))
        .await
        .unwrap();
    assert_eq!(
        stores[3].connection("shared").await.unwrap(),
        Some(contract::tcp("shared"))
    );

    let mut config = moto_config(&moto, "postern-missing");
    config.create_table = false;
    let err = DynamoStore::connect(config).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(err.to_string().contains("create_table=true"), "{err}");

    let mut config = moto_config(&moto, "postern-nowhere");
    config.endpoint = Some(format!("http://127.0.0.1:{}", free_port()));
    config.attempt_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let err = DynamoStore::connect(config).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
