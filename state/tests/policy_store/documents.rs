//! Versioned documents: compare-and-set on every adapter, alone and raced.

use futures::future::join_all;
use postern_state::*;
use serde_json::json;

use super::contract::{Shared, Store};

pub async fn run_all(store: Shared) {
    eprintln!("contract: documents");
    documents_round_trip_and_refuse_stale_writes(&*store).await;
    eprintln!("contract: concurrent document updates");
    concurrent_updates_of_one_document_lose_nothing(store.clone()).await;
    concurrent_writes_from_one_version_have_one_winner(store).await;
}

fn conflict(err: StoreError) -> (u64, u64) {
    match err {
        StoreError::Conflict {
            expected, actual, ..
        } => (expected, actual),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn documents_round_trip_and_refuse_stale_writes(store: &dyn Store) {
    assert_eq!(store.documents("access_rule").await.unwrap(), vec![]);
    assert_eq!(store.document("access_rule", "dba").await.unwrap(), None);
    let v1 = json!({"groups": ["dba"], "connections": ["prod-*"], "n": 1});
    assert_eq!(
        store
            .put_document("access_rule", "dba", &v1, 0)
            .await
            .unwrap(),
        1
    );
    store
        .put_document("access_rule", "devs", &json!({"n": 0}), 0)
        .await
        .unwrap();
    // The same key under another kind is another document.
    store
        .put_document("review", "dba", &json!("other kind"), 0)
        .await
        .unwrap();
    let doc = store.document("access_rule", "dba").await.unwrap().unwrap();
    assert_eq!(
        (doc.kind.as_str(), doc.key.as_str(), doc.version),
        ("access_rule", "dba", 1)
    );
    assert_eq!(doc.body, v1);
    assert!(doc.updated_at_ms > 1_600_000_000_000, "{doc:?}");

    let v2 = json!({"groups": ["dba", "oncall"], "nested": {"a": [1, 2, null]}, "s": "ü \"q\""});
    assert_eq!(
        store
            .put_document("access_rule", "dba", &v2, 1)
            .await
            .unwrap(),
        2
    );
    // A writer that read version 1 loses, and is told what is there now.
    let stale = store
        .put_document("access_rule", "dba", &v1, 1)
        .await
        .unwrap_err();
    assert_eq!(conflict(stale), (1, 2));
    // Creating what exists is a conflict too; so is updating what does not.
    let exists = store
        .put_document("access_rule", "dba", &v1, 0)
        .await
        .unwrap_err();
    assert_eq!(conflict(exists), (0, 2));
    let missing = store
        .put_document("access_rule", "nope", &v1, 5)
        .await
        .unwrap_err();
    assert_eq!(conflict(missing), (5, 0));
    assert_eq!(
        store
            .document("access_rule", "dba")
            .await
            .unwrap()
            .unwrap()
            .body,
        v2
    );

    let keys: Vec<(String, u64)> = store
        .documents("access_rule")
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.key, d.version))
        .collect();
    assert_eq!(keys, [("dba".to_owned(), 2), ("devs".to_owned(), 1)]);

    let stale_delete = store
        .delete_document("access_rule", "dba", 1)
        .await
        .unwrap_err();
    assert_eq!(conflict(stale_delete), (1, 2));
    assert!(
        store
            .delete_document("access_rule", "dba", 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_document("access_rule", "dba", 2)
            .await
            .unwrap()
    );
    assert_eq!(store.document("access_rule", "dba").await.unwrap(), None);
    // Deleted, it can be created again from scratch.
    assert_eq!(
        store
            .put_document("access_rule", "dba", &v1, 0)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.document("review", "dba").await.unwrap().unwrap().body,
        json!("other kind")
    );

    for bad in ["", "a b", "x\n", &"k".repeat(201)] {
        assert!(
            matches!(
                store.put_document("access_rule", bad, &v1, 0).await,
                Err(StoreError::Invalid { .. })
            ),
            "{bad:?}"
        );
    }
    // Grant keys hold a person and a connection.
    store
        .put_document("grant", "r-1/alice@example.com", &json!({}), 0)
        .await
        .unwrap();
}

const TASKS: usize = 12;

/// Every task adds itself to one document by read, modify, compare-and-set,
/// retrying on conflict, as concurrent admins editing one rule do: no
/// addition is lost.
async fn concurrent_updates_of_one_document_lose_nothing(store: Shared) {
    store
        .put_document("access_rule", "contested", &json!({"members": []}), 0)
        .await
        .unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks = (0..TASKS).map(|i| {
        let store = store.clone();
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            let mut conflicts = 0;
            loop {
                let doc = store
                    .document("access_rule", "contested")
                    .await
                    .unwrap()
                    .unwrap();
                let mut body = doc.body.clone();
                body["members"].as_array_mut().unwrap().push(json!(i));
                match store
                    .put_document("access_rule", "contested", &body, doc.version)
                    .await
                {
                    Ok(version) => return (version, conflicts),
                    Err(StoreError::Conflict { .. }) => conflicts += 1,
                    Err(e) => panic!("task {i}: {e}"),
                }
            }
        })
    });
    let results: Vec<(u64, u32)> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let mut versions: Vec<u64> = results.iter().map(|(v, _)| *v).collect();
    versions.sort();
    // Each write made exactly one new version.
    assert_eq!(versions, (2..=TASKS as u64 + 1).collect::<Vec<_>>());
    let doc = store
        .document("access_rule", "contested")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.version, TASKS as u64 + 1);
    let mut members: Vec<u64> = doc.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_u64().unwrap())
        .collect();
    members.sort();
    assert_eq!(members, (0..TASKS as u64).collect::<Vec<_>>());
}

/// Writers that all read the same version (two approvers deciding one
/// review at once): exactly one wins.
async fn concurrent_writes_from_one_version_have_one_winner(store: Shared) {
    for expected in [0, 1] {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks = (0..TASKS).map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .put_document("review", "r-race", &json!({"decided_by": i}), expected)
                    .await
            })
        });
        let results: Vec<StoreResult<u64>> = join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let winners: Vec<usize> = (0..TASKS).filter(|i| results[*i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "from version {expected}: {results:?}");
        for result in results {
            if let Err(e) = result {
                assert_eq!(conflict(e), (expected, expected + 1));
            }
        }
        let doc = store.document("review", "r-race").await.unwrap().unwrap();
        assert_eq!(doc.body, json!({"decided_by": winners[0]}));
    }
}
